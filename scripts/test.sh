#!/usr/bin/env bash
# The whole test suite: builds once, starts a throwaway PostgreSQL, runs every test on SQLite and on PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
source scripts/postgres.sh

require_swift
start_postgres
trap stop_postgres EXIT

swift build --build-tests

status=0
echo "== tests on SQLite ==" >&2
INTEGRATOR_TEST_DATABASE=sqlite swift test --skip-build || status=1
echo "== tests on PostgreSQL ==" >&2
INTEGRATOR_TEST_DATABASE=postgres swift test --skip-build || status=1
exit $status
