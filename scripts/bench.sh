#!/usr/bin/env bash
# Prints the figures BENCHMARKS.md records, in one run on this machine:
# every kernel at the d512 shapes (step-gpu bench --json), the same matmul
# sizes through numpy/OpenBLAS for a same-run ratio, and the training
# step's share of the matmul kernel's speed at the d256 and d512 shapes
# (bench --op share: the matmuls and the step measured in one process).
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o step-gpu ./cli/step-gpu
echo "# $(date -u +%F) $(uname -m), $(nproc) cores"
./step-gpu devices | head -2
./step-gpu bench --preset d512 --reps 5 --json
if /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
  /usr/bin/python3 scripts/numpy_matmul.py
else
  echo '{"op":"numpy_matmul","note":"numpy missing: apt-get install python3-numpy libopenblas0-openmp"}'
fi
for preset in d256 d512; do
  ./step-gpu bench --preset "$preset" --op share --reps 3 --json
done
