#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh) and runs every test. GPU tests run
# real WGSL on the best adapter present; with STEP_GPU_REQUIRE=1 (set here)
# a missing adapter fails the run instead of skipping GPU tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export STEP_GPU_REQUIRE=1
go vet ./...
go test -count=1 -timeout 30m ./...
