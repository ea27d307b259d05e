#!/usr/bin/env bash
# The whole test suite: builds once, starts a throwaway PostgreSQL and RabbitMQ, runs every test on SQLite and on PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
source scripts/postgres.sh
source scripts/rabbitmq.sh

require_swift
trap 'stop_postgres; stop_rabbitmq' EXIT
start_postgres
start_rabbitmq
# The RabbitMQ restart test drives the node through rabbitmqctl.
AMQP_TEST_CTL=$(printf '%q ' "${RMQ_CTL[@]}")
export AMQP_TEST_CTL

swift build --build-tests

echo "== deployment recipes ==" >&2
ensure_packages python3-yaml systemd
python3 scripts/check_deploy.py "$(swift build --show-bin-path)/integrator"
ensure_packages prometheus  # the metrics tests let Debian's Prometheus scrape real integrator processes
ensure_packages openssl  # the outbound TLS test makes a CA and runs `openssl s_server` with a certificate it signed

# Many tests start real servers, workers, beats and processes on the real clock. Left unbounded, Swift Testing starts
# all of them at once, and on two cores their timing goes (a lease runs out, a wait times out). This many run at a time.
TEST_WIDTH=${INTEGRATOR_TEST_WIDTH:-8}
run_suite() {
    "$(swift build --show-bin-path)/IntegratorPackageTests.xctest" --testing-library swift-testing \
        --experimental-maximum-parallelization-width "$TEST_WIDTH"
}

status=0
echo "== tests on SQLite ==" >&2
INTEGRATOR_TEST_DATABASE=sqlite run_suite || status=1
echo "== tests on PostgreSQL ==" >&2
INTEGRATOR_TEST_DATABASE=postgres run_suite || status=1
echo "== admin web UI in headless Chromium ==" >&2 && bash scripts/test-browser.sh || status=1
echo "== OpenAPI document: openapi-spec-validator and schemathesis against integrator dev ==" >&2
scripts/test-openapi.sh "$(swift build --show-bin-path)/integrator" || status=1
exit $status
