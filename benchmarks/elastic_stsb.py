"""STS-B dev Spearman and encode time for every (layer, dim) of the packaged MiniLM.

Usage: .venv/bin/python benchmarks/elastic_stsb.py [--repeats 2]

Anchor in the same process: sentence-transformers ``SentenceTransformer.encode`` of the
full model. For each layer k = 1..6, embedlab's ``SentenceTransformerEncoder(layer=k)``
encodes the unique dev sentences (cache off; alternating with the anchor, median time);
each dimension d is then the first d dimensions renormalised (the same vectors
``dim=d`` produces). Spearman is between pair cosine and the gold score.
Reads ../shared/data/stsb/sts-dev.csv (tab-separated, no header).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from embedlab.encoders import SentenceTransformerEncoder

DIMS = (32, 64, 128, 192, 256, 384)


def load_stsb(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    s1, s2, gold = [], [], []
    with open(path, encoding="utf-8", newline="") as fh:
        for row in csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            s1.append(row[5])
            s2.append(row[6])
            gold.append(float(row[4]))
    return s1, s2, np.asarray(gold)


def spearman(vecs: dict[str, np.ndarray], s1, s2, gold, d: int) -> float:
    a = np.stack([vecs[t][:d] for t in s1])
    b = np.stack([vecs[t][:d] for t in s2])
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    return float(spearmanr((a * b).sum(1), gold).statistic)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    root = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "stsb"
    s1, s2, gold = load_stsb(root / "sts-dev.csv")
    texts = sorted(set(s1) | set(s2), key=len)
    anchor = SentenceTransformerEncoder(cache=False)
    st = anchor.model
    encoders = {k: SentenceTransformerEncoder(cache=False, layer=k) for k in range(1, 7)}
    for enc in encoders.values():
        enc._model = st
    st.encode(texts[:64])  # warm-up
    times: dict[str, list[float]] = {"anchor": [], **{f"layer {k}": [] for k in encoders}}
    outs: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        outs["anchor"] = st.encode(texts, batch_size=64, convert_to_numpy=True)
        times["anchor"].append(time.perf_counter() - t0)
        for k, enc in encoders.items():
            t0 = time.perf_counter()
            outs[f"layer {k}"] = enc.encode(texts, progress=False)
            times[f"layer {k}"].append(time.perf_counter() - t0)
    base = statistics.median(times["anchor"])
    print(f"{len(s1)} STS-B dev pairs, {len(texts)} unique sentences, median of {args.repeats}")
    header = " | ".join(f"d={d}" for d in DIMS)
    print(f"| encoder | {header} | texts/s | time vs anchor |")
    print("|---|" + "---:|" * (len(DIMS) + 2))
    for name, vecs in outs.items():
        lookup = dict(zip(texts, vecs, strict=True))
        cells = " | ".join(f"{100 * spearman(lookup, s1, s2, gold, d):.2f}" for d in DIMS)
        t = statistics.median(times[name])
        label = "sentence-transformers (anchor)" if name == "anchor" else f"embedlab {name}"
        print(f"| {label} | {cells} | {len(texts) / t:,.0f} | {t / base:.2f} |")


if __name__ == "__main__":
    main()
