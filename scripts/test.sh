#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh) and runs every test. GPU tests run
# real WGSL on the best adapter present; with STEP_GPU_REQUIRE=1 (set here)
# a missing adapter fails the run instead of skipping GPU tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export STEP_GPU_REQUIRE=1
go vet ./...
# -p 1: one test binary at a time, so two packages never compile large
# kernels on the CPU adapter at once (a compile runs inside a submission,
# and a submission over 5 s crashes lavapipe: WEBGPU.md).
go test -p 1 -count=1 -timeout 30m ./...
