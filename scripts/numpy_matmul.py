#!/usr/bin/env python3
"""numpy_matmul.py: fp32 GEMM speed of numpy's BLAS on the matmul benchmark shapes.

The CPU-BLAS baseline for BenchmarkMatmul (shaders/matmul_test.go): for each
shape M x N x K and each layout (NN: A(M,K)·B(K,N), NT: A(M,K)·B(N,K)ᵀ,
TN: A(K,M)ᵀ·B(K,N), transposes passed to sgemm as views, not copies) it
prints one JSON line {"op": "numpy_matmul", "shape": ..., "layout": ...,
"gflops": ...} with the median of several timed products after a warm-up.
Install libopenblas0-openmp for a fair figure (Debian's python3-numpy alone
uses the reference BLAS).
"""
import json
import statistics
import sys
import time

import numpy as np

SHAPES = [(1024, 1024, 1024), (4096, 512, 2048)]  # M, N, K
RUNS = 7


def operands(layout, m, n, k, rng):
    a = rng.standard_normal((k, m) if layout == "TN" else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if layout == "NT" else (k, n), dtype=np.float32)
    a = a.T if layout == "TN" else a
    b = b.T if layout == "NT" else b
    return a, b


def main():
    rng = np.random.default_rng(0)
    for m, n, k in SHAPES:
        for layout in ("NN", "NT", "TN"):
            a, b = operands(layout, m, n, k, rng)
            out = np.empty((m, n), dtype=np.float32)
            np.matmul(a, b, out=out)  # warm-up
            times = []
            for _ in range(RUNS):
                t0 = time.perf_counter()
                np.matmul(a, b, out=out)
                times.append(time.perf_counter() - t0)
            sec = statistics.median(times)
            print(json.dumps({"op": "numpy_matmul", "shape": [m, n, k], "layout": layout,
                              "gflops": round(2.0 * m * n * k / sec / 1e9, 2)}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
