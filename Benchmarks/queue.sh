#!/usr/bin/env bash
# The queue benchmark: integrator's worker on the SQL queue (SQLite, PostgreSQL) and on RabbitMQ, then Celery 5 on
# RabbitMQ, one after another, on throwaway servers listening on 127.0.0.1 only. Ends with a table. See README.md here.
#
#   Benchmarks/queue.sh [--tasks N] [--concurrency C] [--publishers P] [--batch B] [--only sqlite,postgres,amqp,celery]
#                       [--modes concurrent,prefill] [--timeout SECONDS] [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
source scripts/lib.sh
source scripts/postgres.sh
source scripts/rabbitmq.sh

TASKS=10000
CONCURRENCY=64
PUBLISHERS=4
BATCH=1
CELERY_PROCESSES=2
TIMEOUT=900
ONLY="sqlite,postgres,amqp,celery"
MODES="concurrent,prefill"
BUILD=1
CELERY_VENV=${CELERY_VENV:-/tmp/integrator-bench-celery-venv}

usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --tasks) TASKS=$2; shift 2 ;;
        --concurrency) CONCURRENCY=$2; shift 2 ;;
        --publishers) PUBLISHERS=$2; shift 2 ;;
        --batch) BATCH=$2; shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        --modes) MODES=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) usage ;;
        *) echo "unknown argument: $1" >&2; usage ;;
    esac
done
want() { [[ ",$ONLY," == *",$1,"* ]]; }
modes() { tr ',' ' ' <<<"$MODES"; }
mode_flag() { [ "$1" = prefill ] && echo --prefill || true; }

WORK=$(mktemp -d /tmp/integrator-bench.XXXXXX)
RESULTS="$WORK/results.jsonl"
cleanup() {
    stop_rabbitmq
    stop_postgres
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '%s\n' "$*" >&2; }

# Appends the JSON object on standard input to the results, labelled.
add_result() {
    python3 -c 'import json, sys; d = json.loads(sys.stdin.read()); d["label"] = sys.argv[1]; print(json.dumps(d))' "$1" >>"$RESULTS"
}
add_failure() {
    python3 -c 'import json, sys; print(json.dumps({"label": sys.argv[1], "mode": sys.argv[2], "failed": sys.argv[3]}))' \
        "$1" "$2" "$3" >>"$RESULTS"
}

# run_integrator LABEL MODE DATABASE_URL BROKER_URL: one `integrator bench queue` run, in the work folder (no .env there).
run_integrator() {
    local label=$1 mode=$2 database=$3 broker=$4
    say "== $label, $mode: $TASKS tasks, worker concurrency $CONCURRENCY, $PUBLISHERS publishers, batch $BATCH =="
    local out="$WORK/run.json" err="$WORK/run.err" status=0
    (cd "$WORK" && INTEGRATOR_BROKER_URL="$broker" "$BIN" bench queue --tasks "$TASKS" --concurrency "$CONCURRENCY" \
        --publishers "$PUBLISHERS" --batch "$BATCH" --timeout "$TIMEOUT" --database-url "$database" --log-level warning --json \
        $(mode_flag "$mode")) \
        >"$out" 2>"$err" || status=$?
    [ -s "$err" ] && tail -n 20 "$err" >&2
    if [ "$status" -eq 0 ]; then
        cat "$out" >&2
        add_result "$label" <"$out"
    else
        say "$label: FAILED (exit $status); continuing"
        add_failure "$label" "$mode" "exit $status: $(tail -n 1 "$err" | cut -c1-200)"
    fi
}

# A new, empty database on the test cluster; prints its URL.
fresh_postgres_database() {
    local name="bench_$(date +%s)_$RANDOM"
    psql "$POSTGRES_TEST_URL" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE $name" >&2
    printf '%s/%s\n' "${POSTGRES_TEST_URL%/*}" "$name"
}

# A virtualenv with Celery 5 from PyPI under /tmp; fails when it cannot be had.
celery_venv() {
    if [ -x "$CELERY_VENV/bin/python" ] &&
        "$CELERY_VENV/bin/python" -c 'import celery, sys; sys.exit(celery.VERSION[0] != 5)' 2>/dev/null; then
        return 0
    fi
    rm -rf "$CELERY_VENV"
    python3 -m venv "$CELERY_VENV" >&2 || { ensure_packages python3-venv && python3 -m venv "$CELERY_VENV" >&2; } || return 1
    "$CELERY_VENV/bin/pip" install -q 'celery>=5,<6' >&2
}

say "Queue benchmark on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(date -u '+%Y-%m-%d %H:%M UTC')"
require_swift
BIN="$ROOT/.build-release/release/integrator"
if [ "$BUILD" -eq 1 ]; then
    say "Building the release binary into .build-release/ (slow the first time)..."
    nice -n 19 swift build -c release --product integrator --scratch-path .build-release >&2
fi
[ -x "$BIN" ] || { say "no release binary at $BIN; run without --no-build"; exit 1; }

if want sqlite; then
    for mode in $(modes); do
        run_integrator "integrator, SQL queue on SQLite" "$mode" "sqlite://$WORK/bench-$mode.sqlite" sql
    done
fi
if want postgres || want amqp; then
    start_postgres
fi
if want postgres; then
    for mode in $(modes); do
        run_integrator "integrator, SQL queue on PostgreSQL" "$mode" "$(fresh_postgres_database)" sql
    done
fi
if want amqp || want celery; then
    start_rabbitmq
fi
if want amqp; then
    # Task runs are recorded in PostgreSQL, messages travel through RabbitMQ: the production pairing.
    for mode in $(modes); do
        run_integrator "integrator, RabbitMQ (runs in PostgreSQL)" "$mode" "$(fresh_postgres_database)" "$AMQP_TEST_URL"
    done
fi
if want celery; then
    label="Celery, RabbitMQ (prefork -c $CELERY_PROCESSES)"
    if ! celery_venv; then
        say "pip could not install Celery 5 from PyPI (is PyPI reachable?); skipping Celery"
        add_failure "$label" "-" "Celery could not be installed from PyPI"
    else
        # rabbitmqctl for this node, to confirm that no message stayed unacknowledged.
        { printf '#!/usr/bin/env bash\nexec '; printf '%q ' "${RMQ_CTL[@]}"; printf '"$@"\n'; } >"$WORK/rabbitmqctl"
        chmod +x "$WORK/rabbitmqctl"
        for mode in $(modes); do
            say "== $label, $mode: $TASKS tasks, $PUBLISHERS publishing processes =="
            status=0
            "$CELERY_VENV/bin/python" Benchmarks/celery/bench_celery.py --broker-url "$AMQP_TEST_URL" --tasks "$TASKS" \
                --concurrency "$CELERY_PROCESSES" --publishers "$PUBLISHERS" --timeout "$TIMEOUT" \
                --rabbitmqctl "$WORK/rabbitmqctl" --workdir "$WORK/celery" --json $(mode_flag "$mode") \
                >"$WORK/run.json" || status=$?
            if [ "$status" -eq 0 ]; then
                cat "$WORK/run.json" >&2
                add_result "$label" <"$WORK/run.json"
            else
                say "$label: FAILED (exit $status); continuing"
                add_failure "$label" "$mode" "exit $status (see the messages above)"
            fi
        done
    fi
fi

echo
echo "Queue benchmark, $TASKS no-op tasks, $(nproc) cores, $(date -u '+%Y-%m-%d'):"
python3 - "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
header = ("system", "mode", "tasks", "publish/s", "drain/s", "p50 ms", "p99 ms", "peak MiB")
table = []
for row in rows:
    if "failed" in row:
        table.append((row["label"], row["mode"], "FAILED: " + row["failed"], "", "", "", "", ""))
        continue
    fmt = lambda key, digits=0: "" if row.get(key) is None else f"{row[key]:.{digits}f}"
    table.append((row["label"], row["mode"], str(row["tasks"]), fmt("publish_rate"), fmt("drain_rate"), fmt("latency_p50_ms"),
                  fmt("latency_p99_ms"), fmt("peak_rss_mib", 1)))
print("| " + " | ".join(header) + " |")
print("|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|")
for line in table:
    print("| " + " | ".join(line) + " |")
EOF
