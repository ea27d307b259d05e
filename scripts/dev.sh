#!/usr/bin/env bash
# Builds and runs `integrator dev` on the embedded defaults (SQLite, SQL queue). Extra arguments go to `dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

require_swift
swift build --product integrator
exec .build/debug/integrator dev "$@"
