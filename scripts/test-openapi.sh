#!/usr/bin/env bash
# The OpenAPI document against a live server: starts `integrator dev` on a free port in a temporary folder, validates
# GET /api/v1/schema with openapi-spec-validator, and runs schemathesis over every operation with the API token.
# Fails on any 5xx, any answer the document does not describe (status, content type, headers, body schema) and any
# wrong method that is not a 405 with Allow.
#
#   scripts/test-openapi.sh [path/to/integrator]     (default: the debug build, $(swift build --show-bin-path)/integrator)
#
# OPENAPI_MAX_EXAMPLES (default 15) bounds the cases per operation and phase; about three minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

binary=${1:-$(swift build --show-bin-path)/integrator}
if [ ! -x "$binary" ]; then
    echo "no integrator binary at $binary; build it first (swift build)" >&2
    exit 1
fi
max_examples=${OPENAPI_MAX_EXAMPLES:-15}

ensure_packages python3 python3-venv
# A virtual environment of its own, kept between runs: pip installs there, never into the system's Python.
venv=${OPENAPI_VENV:-${TMPDIR:-/tmp}/integrator-openapi-venv}
[ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "openapi-spec-validator>=0.7,<1" "schemathesis>=4.3,<5"

work=$(mktemp -d)
port=$(free_port)
token=$(python3 -c 'import secrets; print("openapi-" + secrets.token_hex(24))')
dev_pid=""
stop_dev() {
    if [ -n "$dev_pid" ]; then
        kill "$dev_pid" 2>/dev/null || true
        wait "$dev_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap stop_dev EXIT

# The chat buffer refuses messages (503) until a webhook URL is set; one is given so POST /api/message is exercised
# past that. Nothing listens there: flushes fail and retry in the background, which the API never waits for.
(
    cd "$work"
    export INTEGRATOR_API_TOKEN="$token" WEBHOOK_URL="http://127.0.0.1:9/chat-buffer"
    exec "$binary" dev --port "$port" --database-url "sqlite://$work/integrator.sqlite" --data-directory "$work/data" \
        --log-level error
) >"$work/dev.log" 2>&1 &
dev_pid=$!

base="http://127.0.0.1:$port"
for _ in $(seq 1 120); do
    if python3 -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "$base/health" 2>/dev/null; then
        break
    fi
    if ! kill -0 "$dev_pid" 2>/dev/null; then
        echo "integrator dev exited:" >&2
        cat "$work/dev.log" >&2
        exit 1
    fi
    sleep 0.5
done
python3 -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=5)" "$base/health"

echo "== openapi-spec-validator ==" >&2
python3 -c "import urllib.request, sys; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())" \
    "$base/api/v1/schema" >"$work/openapi.json"
"$venv/bin/openapi-spec-validator" "$work/openapi.json"

echo "== schemathesis over every operation ==" >&2
status=0
# No operation is excluded. Checks: server errors; answers that break the document (status code, content type,
# headers, body schema); wrong methods (405 with Allow); and operations that answer without the token they document
# (ignored_auth). Left out: the acceptance checks (positive_data_acceptance, negative_data_rejection), which judge the
# generator's guesses about validation a schema cannot express (an id that names no row, a cron expression); and the
# checks that read DELETE as "gone for good" and POST as "there to stay" (use_after_free,
# ensure_resource_availability): DELETE /api/v1/tasks/{id} revokes a run that stays readable, DELETE …/state resets
# cursors, a message's deliveries outlive it, and a message due now fires at once and is gone.
# The stateful phase follows the document's links (create, then read, change and delete what was created); it gets
# more scenarios than the other phases' per-operation cases, as each scenario is a whole sequence.
cat >"$work/schemathesis.toml" <<TOML
[phases.stateful]
max-steps = 8

[phases.stateful.generation]
max-examples = $((max_examples * 6))
TOML
# From the temporary folder, where schemathesis keeps its example database. One worker: with two, Python 3.11's ast
# module (which Hypothesis calls from each worker thread) now and then fails with "AST constructor recursion depth
# mismatch", a fault of the tool, not of the API.
(cd "$work" && "$venv/bin/schemathesis" --no-color --config-file "$work/schemathesis.toml" run "$base/api/v1/schema" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,unsupported_method,ignored_auth \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "$max_examples" \
    --workers 1 \
    --request-timeout 30 \
    --suppress-health-check all) \
    || status=$?

if ! kill -0 "$dev_pid" 2>/dev/null; then
    echo "integrator dev died during the run; the end of its log:" >&2
    tail -60 "$work/dev.log" >&2
    status=1
fi
if grep -q "request failed" "$work/dev.log"; then
    echo "the server logged failed requests:" >&2
    grep "request failed" "$work/dev.log" | head -20 >&2
    status=1
fi
exit $status
