"""Encoding throughput on CLINC150 utterances: embedlab's encoder beside sentence-transformers.

Usage: .venv/bin/python benchmarks/encode_clinc150.py [--n 5000] [--repeats 2]

In one process and on the same texts (the first N CLINC150 train utterances), alternating
runs: sentence-transformers ``SentenceTransformer.encode`` (the anchor), embedlab's
``SentenceTransformerEncoder`` with the cache off (cold), and the same with every text
already cached (warm). Prints texts/s, the ratio to the anchor and the max abs difference of
the vectors. Reads ../shared/data/clinc150/data_full.json.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time

import numpy as np
import torch

from embedlab.data.datasets import load_clinc150
from embedlab.encoders import EmbeddingCache, SentenceTransformerEncoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()

    texts = load_clinc150("train").texts[: args.n]
    anchor_enc = SentenceTransformerEncoder(cache=False, batch_size=args.batch_size)
    model = anchor_enc.model  # shared weights: both paths run the same network
    cold = SentenceTransformerEncoder(cache=False, batch_size=args.batch_size)
    cold._model = model
    warm = SentenceTransformerEncoder(
        cache=EmbeddingCache(tempfile.mkdtemp()), batch_size=args.batch_size
    )
    warm._model = model
    ref = warm.encode(texts[:64])  # warm-up (and fills part of the warm cache)
    warm.encode(texts)  # fill the cache fully

    runs = {
        "sentence-transformers encode": lambda: model.encode(
            texts, batch_size=args.batch_size, show_progress_bar=False, convert_to_numpy=True
        ),
        "embedlab (cache off)": lambda: cold.encode(texts, progress=False),
        "embedlab (all cached)": lambda: warm.encode(texts, progress=False),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    outputs: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            outputs[name] = np.asarray(fn())
            times[name].append(time.perf_counter() - t0)
    anchor = "sentence-transformers encode"
    base = len(texts) / statistics.median(times[anchor])
    print(
        f"machine: {platform.processor() or platform.machine()}, torch threads "
        f"{torch.get_num_threads()}, {len(texts)} CLINC150 train utterances, "
        f"batch {args.batch_size}, median of {args.repeats}"
    )
    print(f"{'run':32s} {'texts/s':>10s} {'vs anchor':>10s} {'max |diff|':>11s}")
    for name in runs:
        rate = len(texts) / statistics.median(times[name])
        diff = float(np.abs(outputs[name] - outputs[anchor]).max())
        print(f"{name:32s} {rate:10,.0f} {rate / base:9.2f}x {diff:11.2e}")
    assert np.allclose(ref, outputs[anchor][:64], atol=1e-5)


if __name__ == "__main__":
    main()
