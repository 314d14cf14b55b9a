"""int8 recipes for the ONNX backend: per-tensor dynamic (the issue-5 recipe) vs per-token.

Usage: .venv/bin/python benchmarks/int8_quantisation.py [--n 3000] [--repeats 3]

Builds, from the same fused fp32 graph embedlab exports, (a) ONNX Runtime's dynamic
quantisation with one activation scale per tensor (feed-forward output projections kept
float — the recipe embedlab used before issue 10) and (b) embedlab's per-token recipe
(``onnx_export._quantise``) on that fused graph, and takes (c) the graph embedlab ships
now (attention and skip-LayerNorm left unfused, Q/K/V packed and quantised). On the first
--n CLINC150 training utterances, tokenised once and batched by length (128 rows), it
reports graph throughput (median of alternating rounds), mean / minimum cosine to fp32,
and the minimum cosine between a text encoded alone and inside its batch (first 300
texts, batches of 50) — the batch dependence issue 10 found.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from tokenizers import Tokenizer

    from embedlab.data.datasets import load_clinc150
    from embedlab.encoders import SentenceTransformerEncoder
    from embedlab.encoders.onnx_export import _quantise

    work = Path(tempfile.mkdtemp(prefix="embedlab-int8-bench-"))
    enc = SentenceTransformerEncoder(cache=False, backend="onnx")
    fp32 = enc.onnx_backend("onnx").ensure_exported()
    graph = onnx.load(str(fp32)).graph
    keep_float = [
        n.name
        for n in graph.node
        if n.op_type == "MatMul" and "output" in n.name and "attention" not in n.name
    ]
    per_tensor = work / "per-tensor.onnx"
    quantize_dynamic(
        str(fp32),
        str(per_tensor),
        weight_type=QuantType.QInt8,
        per_channel=True,
        nodes_to_exclude=keep_float,
        op_types_to_quantize=["MatMul"],
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    per_token = work / "per-token.onnx"
    _quantise(Path(fp32), per_token)
    shipped = enc.onnx_backend("onnx-int8").ensure_exported()
    graphs = {
        "fp32": fp32,
        "int8 per-tensor (issue 5)": per_tensor,
        "int8 per-token, fused attention (issue 10)": per_token,
        "int8 per-token, Q/K/V quantised, no skip-LayerNorm (shipped)": shipped,
    }

    tok = Tokenizer.from_file(str(Path(enc.model_path) / "tokenizer.json"))
    tok.no_padding()
    texts = load_clinc150("train").texts[: args.n]

    def feeds_for(batch_texts: list[str]) -> dict[str, np.ndarray]:
        encs = tok.encode_batch(batch_texts)
        width = max(len(e.ids) for e in encs)
        ids = np.zeros((len(encs), width), np.int64)
        mask = np.zeros_like(ids)
        for j, e in enumerate(encs):  # one batch's ragged rows
            ids[j, : len(e.ids)] = e.ids
            mask[j, : len(e.ids)] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}

    ordered = sorted(texts, key=len)
    batches = [feeds_for(ordered[i : i + 128]) for i in range(0, len(ordered), 128)]
    sessions = {}
    for name, path in graphs.items():
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2  # one session on both cores (embedlab runs two)
        opts.log_severity_level = 3
        sessions[name] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def run(name: str, items: list[str]) -> np.ndarray:
        return sessions[name].run(None, feeds_for(items))[0]

    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(args.repeats):
        for name, sess in sessions.items():
            t0 = time.perf_counter()
            for f in batches:
                sess.run(None, f)
            times[name].append(time.perf_counter() - t0)

    def cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.einsum("ij,ij->i", a, b) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))

    sample = texts[:300]
    ref = np.concatenate([run("fp32", sample[i : i + 50]) for i in range(0, 300, 50)])
    print(f"{len(texts)} CLINC150 train utterances, median of {args.repeats} alternating rounds")
    print("| graph | sentences/s | mean cos to fp32 | min cos to fp32 | min cos alone vs batch |")
    print("|---|---:|---:|---:|---:|")
    for name in sessions:
        batched = np.concatenate([run(name, sample[i : i + 50]) for i in range(0, 300, 50)])
        alone = np.concatenate([run(name, [t]) for t in sample])
        c = cos(batched, ref)
        rate = len(texts) / statistics.median(times[name])
        print(
            f"| {name} | {rate:,.0f} | {c.mean():.5f} | {c.min():.5f} | "
            f"{cos(alone, batched).min():.6f} |"
        )


if __name__ == "__main__":
    main()
