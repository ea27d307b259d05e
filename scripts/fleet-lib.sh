# A fleet on one machine, as deploy/docker-compose.yml lays it out: PostgreSQL, RabbitMQ, one `serve`, two `beat` and
# three `worker` processes on 127.0.0.1, from the release build. Sourced by scripts/fleet.sh and Benchmarks/chaos.sh.
#
# After start_fleet: FLEET_DIR (logs in FLEET_DIR/logs), FLEET_URL (the API), FLEET_TOKEN (a static admin API token),
# FLEET_DATABASE_URL, and the environment every process shares exported. Processes are named serve, beat-1, beat-2,
# worker-1 … worker-3; kill_member and start_member act on one by name.

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/postgres.sh"
source "$(dirname "${BASH_SOURCE[0]}")/rabbitmq.sh"

FLEET_BINARY=${FLEET_BINARY:-.build/release/integrator}
# Name → command line after the binary. Mirrors the compose file: workers share `default`, one also takes `high`,
# one `low`.
declare -A FLEET_COMMANDS=(
    [serve]="serve"
    [beat-1]="beat"
    [beat-2]="beat"
    [worker-1]="worker --queues high,default --concurrency 64"
    [worker-2]="worker --queues default,low --concurrency 64"
    [worker-3]="worker --queues default --concurrency 64"
)
FLEET_MEMBERS=(serve beat-1 beat-2 worker-1 worker-2 worker-3)
declare -A FLEET_PIDS=()

build_fleet_binary() {
    require_swift
    ensure_packages librabbitmq-dev pkg-config
    swift build -c release --product integrator >&2
}

start_fleet() {
    [ -x "$FLEET_BINARY" ] || { echo "no release binary at $FLEET_BINARY (run without --no-build)" >&2; exit 1; }
    ensure_packages curl
    start_postgres
    start_rabbitmq
    FLEET_DIR=$(mktemp -d /tmp/integrator-fleet.XXXXXX)
    mkdir -p "$FLEET_DIR/logs"
    psql "$POSTGRES_TEST_URL" -qc "CREATE DATABASE integrator" >/dev/null
    FLEET_DATABASE_URL="${POSTGRES_TEST_URL%/postgres}/integrator"
    FLEET_PORT=${FLEET_PORT:-$(free_port)}
    FLEET_URL="http://127.0.0.1:$FLEET_PORT"
    FLEET_TOKEN=$(python3 -c 'import secrets; print("fleet-" + secrets.token_hex(16))')
    export INTEGRATOR_DATABASE_URL="$FLEET_DATABASE_URL" INTEGRATOR_BROKER_URL="$AMQP_TEST_URL"
    export INTEGRATOR_SECRET_KEY="${INTEGRATOR_SECRET_KEY:-$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')}"
    export INTEGRATOR_API_TOKEN="$FLEET_TOKEN" INTEGRATOR_HTTP_HOST=127.0.0.1 INTEGRATOR_HTTP_PORT="$FLEET_PORT"
    export LOG_LEVEL="${LOG_LEVEL:-notice}" LOG_FORMAT=text
    # Fake external APIs and receivers listen on 127.0.0.1 too.
    export INTEGRATOR_OUTBOUND_ALLOW_CIDRS="${INTEGRATOR_OUTBOUND_ALLOW_CIDRS:-127.0.0.0/8}"
    "$FLEET_BINARY" migrate >"$FLEET_DIR/logs/migrate.log" 2>&1 || { cat "$FLEET_DIR/logs/migrate.log" >&2; exit 1; }
    for member in "${FLEET_MEMBERS[@]}"; do start_member "$member"; done
    for _ in $(seq 1 120); do
        curl -fsS "$FLEET_URL/health" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    echo "the API did not answer on $FLEET_URL; its log:" >&2
    tail -20 "$FLEET_DIR/logs/serve.log" >&2
    exit 1
}

start_member() {
    local member=$1
    # shellcheck disable=SC2086 # the command line is split on purpose
    "$FLEET_BINARY" ${FLEET_COMMANDS[$member]} >>"$FLEET_DIR/logs/$member.log" 2>&1 &
    FLEET_PIDS[$member]=$!
}

# SIGKILLs one member: no shutdown, as a crashed machine would.
kill_member() {
    local member=$1
    kill -KILL "${FLEET_PIDS[$member]}" 2>/dev/null || true
    wait "${FLEET_PIDS[$member]}" 2>/dev/null || true
}

# True while the process runs (an exited child not yet waited for is a zombie, which kill -0 still finds).
member_alive() {
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [ "${state:0:1}" != Z ]
}

# SIGTERMs every member and gives them `grace` seconds (default 30) to shut down, as systemd's TimeoutStopSec would;
# those still running then are SIGKILLed and named, and the status is non-zero.
stop_members() {
    local grace=${1:-30} member stuck=()
    for member in "${!FLEET_PIDS[@]}"; do kill -TERM "${FLEET_PIDS[$member]}" 2>/dev/null || true; done
    local deadline=$(( $(date +%s) + grace ))
    for member in "${!FLEET_PIDS[@]}"; do
        while member_alive "${FLEET_PIDS[$member]}" && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.2; done
        if member_alive "${FLEET_PIDS[$member]}"; then
            stuck+=("$member")
            kill -KILL "${FLEET_PIDS[$member]}" 2>/dev/null || true
        fi
        wait "${FLEET_PIDS[$member]}" 2>/dev/null || true
    done
    FLEET_PIDS=()
    if [ ${#stuck[@]} -gt 0 ]; then
        echo "still running $grace s after SIGTERM, so SIGKILLed: ${stuck[*]}" >&2
        return 1
    fi
}

stop_fleet() {
    stop_members 30 || true
    stop_rabbitmq
    stop_postgres
}
