"""Choosing the encoder backend: ``auto`` = the fastest one that passes a quality check.

The check runs once per (model fingerprint, layer) and is remembered in
``<onnx cache>/<fingerprint>-layer<k>-choice.json``: each candidate (``onnx-int8``,
``onnx``) encodes a fixed probe set — the packaged demo utterances plus passages of about
128 and 256 tokens — and must keep mean cosine ≥ 0.99 and minimum cosine ≥ 0.95 to the
torch float32 vectors. Among those that pass, the fastest on the probe's sentence-length
utterances (alternating rounds, best of 4) wins if it beats torch; otherwise torch is
used. A re-exported graph (new sha256) invalidates the verdict.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.errors import EncoderError

__all__ = ["MIN_COSINE", "MIN_MEAN_COSINE", "probe_texts", "resolve_backend"]

log = logging.getLogger("embedlab")

MIN_MEAN_COSINE = 0.99
MIN_COSINE = 0.95
CHOICE_VERSION = 3
TIMING_ROUNDS = 4
SHORT_PROBE = 280  # the demo utterances at the head of probe_texts()
CANDIDATES = ("onnx-int8", "onnx")


def probe_texts() -> list[str]:
    """The fixed probe set: 280 short demo utterances and 20 long passages built from them."""
    from embedlab.datasets import load_demo

    short = load_demo("train").texts + load_demo("test").texts
    long = []
    for words in (90, 180):  # ≈ 128 and ≈ 256 word pieces
        for start in range(10):
            passage, i = [], start
            while sum(len(t.split()) for t in passage) < words:
                passage.append(short[i % len(short)])
                i += 7
            long.append(". ".join(passage))
    return short + long


def onnx_problem(encoder: Any) -> str | None:
    """Why this encoder cannot run on ONNX Runtime, or None."""
    from embedlab.encoders.onnx_backend import unsupported

    if encoder.first_last_average:
        return "first-last layer averaging runs on torch only"
    return unsupported(encoder._config, Path(encoder.model_path))


def resolve_backend(encoder: Any) -> str:
    """The backend ``encoder`` should use; raises when an explicitly named one cannot run."""
    wanted = encoder.backend
    if wanted == "torch":
        return "torch"
    problem = onnx_problem(encoder)
    if wanted in CANDIDATES:
        if problem:
            raise EncoderError(
                f"backend {wanted!r} is unavailable: {problem}; use backend 'torch' or 'auto'"
            )
        return wanted
    if problem:
        log.warning("backend auto: using torch (%s)", problem)
        return "torch"
    try:
        verdict = _verdict(encoder)
    except EncoderError as exc:
        log.warning("backend auto: the ONNX backends failed (%s); using torch", exc)
        return "torch"
    passing = [k for k in CANDIDATES if verdict[k]["passed"]]
    best = max(passing, key=lambda k: verdict[k]["texts_per_s"], default="torch")
    if best != "torch" and verdict[best]["texts_per_s"] <= verdict["torch"]["texts_per_s"]:
        best = "torch"
    log.info(
        "backend auto: %s (%s)",
        best,
        ", ".join(
            f"{k}: {v['texts_per_s']:.0f}/s"
            + (f", cos mean {v['mean_cos']:.4f} min {v['min_cos']:.4f}" if k != "torch" else "")
            for k, v in verdict.items()
            if isinstance(v, dict)
        ),
    )
    return best


def _verdict_path(encoder: Any) -> Path:
    layer = encoder.layer or int(encoder._config["num_layers"])
    runner = encoder.onnx_backend("onnx")
    return runner.cache_dir / f"{encoder.fingerprint}-layer{layer}-choice.json"


def _verdict(encoder: Any) -> dict[str, Any]:
    """The remembered verdict, else a new one (saved where the cache can be written)."""
    from filelock import FileLock

    from embedlab.atomic import atomic_write_bytes

    path = _verdict_path(encoder)
    cached = _read_verdict(path, encoder)
    if cached is not None:
        return cached
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock", timeout=900):
            cached = _read_verdict(path, encoder)
            if cached is not None:
                return cached
            log.warning(
                "backend auto: checking the ONNX backends against torch on %d probe texts "
                "(once per model and layer; the verdict is remembered in %s)",
                len(probe_texts()),
                path.name,
            )
            verdict = measure_backends(encoder)
            atomic_write_bytes(path, json.dumps(verdict, indent=1).encode())
            return verdict
    except OSError as exc:
        log.warning(
            "backend auto: cannot save the backend check in %s (%s); it is made again next time",
            path.parent,
            exc.strerror or exc,
        )
        return measure_backends(encoder)


def _read_verdict(path: Path, encoder: Any) -> dict[str, Any] | None:
    try:
        verdict = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if verdict.get("version") != CHOICE_VERSION:
        return None
    for kind in CANDIDATES:
        runner = encoder.onnx_backend(kind)
        entry = verdict.get(kind)
        if not isinstance(entry, dict) or entry.get("graph_sha256") != runner.recorded_sha256():
            return None
    return verdict


def measure_backends(encoder: Any, texts: list[str] | None = None) -> dict[str, Any]:
    """Speed (texts/s, best of alternating rounds) and cosine to torch fp32 of each backend."""
    from embedlab.encoders.sentence_transformer import SentenceTransformerEncoder

    texts = texts or probe_texts()
    short = texts[:SHORT_PROBE] * 2  # speed is judged on sentence-length inputs
    torch_enc = SentenceTransformerEncoder(
        encoder.model_path, cache=False, layer=encoder.layer, backend="torch"
    )
    torch_enc._model = encoder.model
    ref = torch_enc._forward(texts)
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    runs: dict[str, Any] = {"torch": lambda: torch_enc._forward(short)}
    verdict: dict[str, Any] = {
        "version": CHOICE_VERSION,
        "probe_texts": len(texts),
        "speed_texts": len(short),
    }
    for kind in CANDIDATES:
        runner = encoder.onnx_backend(kind)
        try:
            runner.ensure_exported()
            vecs = runner.embed(texts)
        except Exception as exc:  # an export or run failure disqualifies the backend
            raise EncoderError(f"{kind}: {exc}") from None
        cos = np.einsum("ij,ij->i", vecs / np.linalg.norm(vecs, axis=1, keepdims=True), ref)
        verdict[kind] = {
            "mean_cos": float(cos.mean()),
            "min_cos": float(cos.min()),
            "passed": bool(cos.mean() >= MIN_MEAN_COSINE and cos.min() >= MIN_COSINE),
            "graph_sha256": runner.recorded_sha256(),
        }
        runs[kind] = lambda r=runner: r.embed(short)
    # Alternating rounds, best of each: no backend is timed right after another's threads.
    best = dict.fromkeys(runs, np.inf)
    for _ in range(TIMING_ROUNDS):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    verdict["torch"] = {"texts_per_s": len(short) / best["torch"]}
    for kind in CANDIDATES:
        verdict[kind]["texts_per_s"] = len(short) / best[kind]
    return verdict
