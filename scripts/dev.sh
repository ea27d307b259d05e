#!/usr/bin/env bash
# Builds and runs `integrator dev` on the embedded defaults (SQLite, SQL queue). Extra arguments go to `dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

require_swift
# The RabbitMQ client library is linked into every build, even when the embedded SQL queue is used.
ensure_packages librabbitmq-dev pkg-config
swift build --product integrator
exec .build/debug/integrator dev "$@"
