#!/usr/bin/env bash
# The chaos run: a fleet on this machine (scripts/fleet-lib.sh) under a mixed load (Benchmarks/chaos_load.py) while
# every 20 s a random worker or beat is SIGKILLed and restarted, RabbitMQ is restarted once and PostgreSQL once.
# Afterwards the load script checks that nothing was lost or done twice, and prints the figures. Exit status non-zero
# on any loss.
#
#   bash Benchmarks/chaos.sh [--seconds 300] [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/fleet-lib.sh

seconds=300
build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        *) echo "unknown argument: $1 (use --seconds N, --no-build)" >&2; exit 2 ;;
    esac
done

[ "$build" = 1 ] && build_fleet_binary
ensure_packages curl
trap 'stop_fleet' EXIT
start_fleet
echo "fleet up: $FLEET_URL, logs in $FLEET_DIR/logs; load for $seconds s" >&2

started="$FLEET_DIR/load-started"
python3 Benchmarks/chaos_load.py --api "$FLEET_URL" --token "$FLEET_TOKEN" --database-url "$FLEET_DATABASE_URL" \
    --seconds "$seconds" --started-file "$started" > "$FLEET_DIR/figures.json" &
load=$!

while [ ! -f "$started" ]; do
    kill -0 "$load" 2>/dev/null || break
    sleep 0.5
done
begin=$(date +%s)
kills=0
rabbit_restarted=0
postgres_restarted=0
victims=(beat-1 beat-2 worker-1 worker-2 worker-3)
while kill -0 "$load" 2>/dev/null && [ $(( $(date +%s) - begin )) -lt "$seconds" ]; do
    sleep 20
    kill -0 "$load" 2>/dev/null || break
    elapsed=$(( $(date +%s) - begin ))
    [ "$elapsed" -ge "$seconds" ] && break
    victim=${victims[$((RANDOM % ${#victims[@]}))]}
    echo "[$elapsed s] SIGKILL $victim, restarting it" >&2
    kill_member "$victim"
    kills=$((kills + 1))
    sleep 1
    start_member "$victim"
    if [ "$rabbit_restarted" = 0 ] && [ "$elapsed" -ge $((seconds / 3)) ]; then
        echo "[$elapsed s] restarting RabbitMQ" >&2
        pause_rabbitmq
        sleep 3
        resume_rabbitmq
        rabbit_restarted=1
    elif [ "$postgres_restarted" = 0 ] && [ "$elapsed" -ge $((2 * seconds / 3)) ]; then
        echo "[$elapsed s] restarting PostgreSQL" >&2
        "${PG_CTL[@]}" restart -m fast -w -t 60 >/dev/null
        postgres_restarted=1
    fi
done

status=0
wait "$load" || status=$?
cat "$FLEET_DIR/figures.json"
# A member that exited on its own (not one of the kills) is a failure too.
for member in "${FLEET_MEMBERS[@]}"; do
    if ! kill -0 "${FLEET_PIDS[$member]}" 2>/dev/null; then
        echo "CHAOS RUN FAILED: $member exited on its own; its last lines:" >&2
        tail -5 "$FLEET_DIR/logs/$member.log" >&2
        status=1
    fi
done
# Every member shuts down on SIGTERM, in-flight tasks included, within the grace a supervisor gives it.
if ! stop_members 30; then
    echo "CHAOS RUN FAILED: a member did not shut down on SIGTERM (its log says what it was waiting for)" >&2
    status=1
fi
if [ "$status" != 0 ]; then
    pg_dump "$FLEET_DATABASE_URL" > "$FLEET_DIR/database.sql" 2>/dev/null || true
    echo "for a post-mortem: logs and a dump of the database are in $FLEET_DIR" >&2
fi
echo "kills: $kills, RabbitMQ restarted: $rabbit_restarted, PostgreSQL restarted: $postgres_restarted" >&2
[ "$rabbit_restarted" = 1 ] && [ "$postgres_restarted" = 1 ] || { echo "CHAOS RUN INCOMPLETE: a restart did not happen" >&2; status=1; }
exit $status
