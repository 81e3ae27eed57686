#!/usr/bin/env bash
# The main job from a fresh machine: set up (a Vulkan driver, or Mesa's
# lavapipe CPU adapter when there is no GPU), build step-gpu, and pre-train
# a model on the built-in corpus (the Go standard library source). Extra
# arguments go to `step-gpu train` (e.g. --preset small, --data DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
go build -o step-gpu ./cli/step-gpu
exec ./step-gpu train "$@"
