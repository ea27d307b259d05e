#!/usr/bin/env bash
# The admin web UI in a real browser: starts `integrator dev` from the debug build (builds nothing) in a temporary
# folder with known users, and drives it in headless Chromium with Selenium. Screenshots go to .build/artifacts/admin/.
#   scripts/test-browser.sh [--update-docs]   # --update-docs also copies the README's two screenshots into docs/
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
require_swift

ensure_packages chromium chromium-driver python3-pip
python3 -c 'import selenium' 2>/dev/null || python3 -m pip install --quiet selenium

binary="$(swift build --show-bin-path)/integrator"
if [ ! -x "$binary" ]; then
    echo "no debug build at $binary; run swift build first" >&2
    exit 1
fi

artifacts="$PWD/.build/artifacts/admin"
rm -rf "$artifacts"
mkdir -p "$artifacts"
work="$(mktemp -d)"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

port="$(free_port)"
random() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }
export INTEGRATOR_SECRET_KEY="$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')"
export INTEGRATOR_API_TOKEN="$(random)"
export INTEGRATOR_DATABASE_URL="sqlite://$work/integrator.sqlite" INTEGRATOR_BROKER_URL=sql
admin_password="$(random)"
viewer_password="$(random)"

(
    cd "$work"
    "$binary" migrate >/dev/null
    printf '%s' "$admin_password" | "$binary" users create --username admin --role admin --password-stdin >/dev/null
    printf '%s' "$viewer_password" | "$binary" users create --username viewer --role viewer --password-stdin >/dev/null
)
(cd "$work" && exec "$binary" dev --port "$port" >"$artifacts/dev.log" 2>&1) &
server_pid=$!
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    sleep 0.2
done

status=0
python3 Tests/Browser/admin_test.py --url="http://127.0.0.1:$port" --admin-password="$admin_password" \
    --viewer-password="$viewer_password" --api-token="$INTEGRATOR_API_TOKEN" --artifacts="$artifacts" || status=$?
echo "admin screenshots: $artifacts" >&2
if [ "$status" -eq 0 ] && [ "${1:-}" = "--update-docs" ]; then
    cp "$artifacts"/*-dashboard-after-runs.png docs/admin-dashboard.png
    cp "$artifacts"/*-task-runs.png docs/admin-task-runs.png
    echo "updated docs/admin-dashboard.png and docs/admin-task-runs.png" >&2
fi
exit "$status"
