"""Encoding speed of every backend beside sentence-transformers, with the quality each keeps.

Usage: .venv/bin/python benchmarks/encode_speed.py [--n 5000] [--repeats 3] [--no-quality]

In one process, on the same CLINC150 utterances (the first --n of train, cache off):
sentence-transformers `SentenceTransformer.encode` (torch; its ONNX backend too when
`optimum` is installed) and embedlab's torch, onnx and onnx-int8 backends (full model and
layer 3), in alternating rounds; the median round is reported as sentences/s and as a
ratio to sentence-transformers torch, with mean / minimum cosine to the torch fp32
vectors. Then long inputs (passages of ≈128 and ≈256 tokens) and single-sentence latency
(median of 200 calls). With quality on, each embedlab backend encodes CLINC150 and fits
the frozen default pipeline (automatic head + detector, no adaptation) on train +
oos_train, scored on test + oos_test: accuracy (rejections count as errors) and OOS AUROC.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from embedlab.data.datasets import load_clinc150
from embedlab.encoders import SentenceTransformerEncoder

BACKENDS = ("torch", "onnx", "onnx-int8")


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.einsum("ij,ij->i", a, b)


def passages(texts: list[str], words: int, n: int) -> list[str]:
    out = []
    for s in range(n):
        chunk, i = [], s
        while sum(len(t.split()) for t in chunk) < words:
            chunk.append(texts[i % len(texts)])
            i += 13
        out.append(". ".join(chunk))
    return out


def rounds(runners: dict, texts: list[str], repeats: int) -> dict[str, float]:
    """Median seconds per runner over alternating rounds (after one warm-up each)."""
    times: dict[str, list[float]] = {k: [] for k in runners}
    for fn in runners.values():
        fn(texts[:64])
    for _ in range(repeats):
        for name, fn in runners.items():
            t0 = time.perf_counter()
            fn(texts)
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-quality", action="store_true")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    texts = load_clinc150("train").texts[: args.n]
    base = SentenceTransformerEncoder(cache=False, backend="torch")
    st = base.model
    runners = {"sentence-transformers torch": lambda t: st.encode(t, batch_size=32)}
    try:
        from sentence_transformers import SentenceTransformer

        st_onnx = SentenceTransformer(str(base.model_path), backend="onnx", local_files_only=True)
        runners["sentence-transformers onnx"] = lambda t: st_onnx.encode(t, batch_size=32)
    except Exception as exc:  # optimum missing or no exported model: say so and go on
        print(f"(sentence-transformers onnx backend unavailable: {str(exc).splitlines()[0]})")
    encoders = {}
    for layer in (None, 3):
        for b in BACKENDS:
            enc = SentenceTransformerEncoder(cache=False, backend=b, layer=layer)
            enc._model = st
            if b != "torch":
                enc.onnx_backend().ensure_exported()
            name = f"embedlab {b}" + (f" layer {layer}" if layer else "")
            encoders[name] = enc
            runners[name] = lambda t, e=enc: e._forward(list(t))
    auto = SentenceTransformerEncoder(cache=False)
    auto._model = st
    print(f"backend auto resolves to: {auto.resolved_backend}")

    ref = {None: np.asarray(st.encode(texts, batch_size=32)), 3: None}
    ref[3] = encoders["embedlab torch layer 3"]._forward(list(texts))
    secs = rounds(runners, texts, args.repeats)
    anchor = len(texts) / secs["sentence-transformers torch"]
    print(f"\n{len(texts)} CLINC150 train utterances, median of {args.repeats} alternating rounds")
    print(
        "| encoder | sentences/s | × ST torch | mean cos | min cos | "
        "min cos alone vs in batch (first 300) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, s in secs.items():
        rate = len(texts) / s
        cos_txt = " | "
        if name in encoders:
            layer = 3 if "layer 3" in name else None
            batched = encoders[name]._forward(list(texts))
            c = cosine(batched, ref[layer])
            # Batch invariance: a text's vector must not depend on its batch neighbours.
            alone = np.concatenate([encoders[name]._forward([t]) for t in texts[:300]])
            inv = cosine(alone, batched[:300]).min()
            cos_txt = f"{c.mean():.5f} | {c.min():.5f} | {inv:.6f}"
        else:
            cos_txt = "1 | 1 | —" if name.endswith("torch") else "— | — | —"
        print(f"| {name} | {rate:,.0f} | {rate / anchor:.2f} | {cos_txt} |")

    print("\nLong inputs (sentences/s; 200 passages each)")
    print("| encoder | ≈128 tokens | ≈256 tokens |")
    print("|---|---:|---:|")
    long_runners = {k: v for k, v in runners.items() if "layer" not in k}
    res = {w: rounds(long_runners, passages(texts, w, 200), 2) for w in (90, 180)}
    for name in long_runners:
        print(f"| {name} | {200 / res[90][name]:,.1f} | {200 / res[180][name]:,.1f} |")

    print("\nSingle-sentence latency (median of 200 calls, ms)")
    for name, fn in long_runners.items():
        one = [texts[i : i + 1] for i in range(200)]
        fn(one[0])
        lat = []
        for t in one:
            t0 = time.perf_counter()
            fn(t)
            lat.append(1000 * (time.perf_counter() - t0))
        print(f"- {name}: {statistics.median(lat):.2f} ms")

    if args.no_quality:
        return
    from embedlab.core.metrics import evaluate_open_set
    from embedlab.models.openset import OpenSetClassifier

    train = load_clinc150("train", "oos_train")
    test = load_clinc150("test", "oos_test")
    print("\nCLINC150, frozen default pipeline (auto head + detector, no adaptation)")
    print("| backend | accuracy | head accuracy | OOS AUROC |")
    print("|---|---:|---:|---:|")
    for b in BACKENDS:
        enc = encoders[f"embedlab {b}"]
        clf = OpenSetClassifier().fit(enc._forward(train.texts), np.asarray(train.labels))
        d = clf.predict_details(enc._forward(test.texts))
        m = evaluate_open_set(
            np.asarray(test.labels), d.labels, d.novelty, "oos", d.top_labels[:, 0]
        )
        print(
            f"| {b} | {100 * m['accuracy']:.2f}% | {100 * m['head_accuracy']:.2f}% | "
            f"{100 * m['oos_auroc']:.2f}% |",
            flush=True,
        )


if __name__ == "__main__":
    main()
