#!/usr/bin/env bash
# Starts a fleet on this machine — PostgreSQL, RabbitMQ, one `serve`, two `beat`, three `worker` on 127.0.0.1 from the
# release build — and stops it all on Ctrl-C. `--no-build` uses the release binary as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/fleet-lib.sh

[ "${1:-}" = "--no-build" ] || build_fleet_binary
trap 'echo "stopping the fleet" >&2; stop_fleet' EXIT
trap 'exit 0' INT TERM
start_fleet
cat >&2 <<INFO

Fleet up (logs in $FLEET_DIR/logs):
  API        $FLEET_URL  (admin token: $FLEET_TOKEN)
  database   $FLEET_DATABASE_URL
  RabbitMQ   $AMQP_TEST_URL
  processes  ${FLEET_MEMBERS[*]}
Try: INTEGRATOR_DATABASE_URL='$FLEET_DATABASE_URL' INTEGRATOR_BROKER_URL='$AMQP_TEST_URL' INTEGRATOR_SECRET_KEY=… $FLEET_BINARY status
Ctrl-C stops everything.
INFO
while true; do
    for member in "${FLEET_MEMBERS[@]}"; do
        if ! kill -0 "${FLEET_PIDS[$member]}" 2>/dev/null; then
            echo "$member exited; its last lines:" >&2
            tail -5 "$FLEET_DIR/logs/$member.log" >&2
            exit 1
        fi
    done
    sleep 2
done
