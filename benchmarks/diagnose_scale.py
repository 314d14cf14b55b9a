"""Diagnostics on N × 384 vectors: seconds per measure and in all (target: 100,000 rows ≤ 30 s).

Usage: .venv/bin/python benchmarks/diagnose_scale.py [--n 100000]

Vectors: 500 labelled clusters in 384-d with a power-law spectrum (as in
index_synthetic.py), L2-normalised. `embedlab.analysis.diagnose.diagnose` with its defaults
(silhouette on 5,000 rows; one exact FAISS kNN search of 10,000 query rows against all
rows, shared by label errors and near-duplicates; alignment / uniformity / isotropy on
200,000 random pairs).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from embedlab.analysis.diagnose import diagnose


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    d = 384
    scales = np.arange(1, d + 1, dtype=np.float32) ** -0.6
    centres = rng.standard_normal((500, d), dtype=np.float32) * scales
    y = rng.integers(0, 500, args.n)
    X = centres[y] + 0.5 * rng.standard_normal((args.n, d), dtype=np.float32) * scales
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    t0 = time.perf_counter()
    report = diagnose(X, y.astype(str))
    total = time.perf_counter() - t0
    print(f"{args.n:,} × {d}: {total:.1f} s in all")
    print("| measure | seconds | value |")
    print("|---|---:|---|")
    for name, secs in report["timings"].items():
        value = report.get(name, "10,000 query rows x all rows, k = 10")
        if isinstance(value, str):
            shown = value
        elif isinstance(value, float):
            shown = f"{value:.4g}"
        elif isinstance(value, list):
            shown = f"{len(value)} pairs"
        else:
            shown = ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in value.items()
                if not isinstance(v, list)
            )
        print(f"| {name} | {secs:.2f} | {shown} |")


if __name__ == "__main__":
    main()
