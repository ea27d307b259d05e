#!/usr/bin/env bash
# Builds the release binary as deploy/Dockerfile does (static Swift runtime) and checks the recipes against it,
# including that it links nothing the Dockerfile's runtime stage lacks.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
require_swift
ensure_packages python3-yaml systemd librabbitmq-dev
scratch=.build-static
swift build -c release --product integrator --static-swift-stdlib --scratch-path "$scratch"
binary="$(swift build -c release --static-swift-stdlib --scratch-path "$scratch" --show-bin-path)/integrator"
python3 scripts/check_deploy.py "$binary" --static-binary "$binary"
