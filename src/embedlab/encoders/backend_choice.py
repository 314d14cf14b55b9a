"""Choosing the encoder backend: ``auto`` = the fastest ONNX graph that passes a quality
check against torch.

Candidates are tried fastest first — ``onnx-int8``, then ``onnx`` (fp32) — and the first
whose vectors of a fixed probe set (the packaged demo utterances plus passages of about
128 and 256 tokens) keep mean cosine ≥ 0.99 and minimum cosine ≥ 0.95 to the torch
float32 vectors is used; torch when none passes. Only what is needed is exported: the
int8 graph, and the fp32 one only if int8 fails. The torch reference vectors come from
the export's own child process, so resolving ``auto`` never imports torch here. The
verdict is remembered per (model fingerprint, layer) in
``<onnx cache>/<fingerprint>-layer<k>-choice.json`` and re-made when a graph changes.
(Throughput is not re-measured per machine: on every CPU measured, int8 beat fp32 and
fp32 beat torch — docs/benchmarks.md; ``--backend`` / ``$EMBEDLAB_BACKEND`` pick one.)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.core.errors import EncoderError

__all__ = ["MIN_COSINE", "MIN_MEAN_COSINE", "probe_texts", "resolve_backend"]

log = logging.getLogger("embedlab")

MIN_MEAN_COSINE = 0.99
MIN_COSINE = 0.95
CHOICE_VERSION = 4  # 4: fastest-first, no timing rounds
CANDIDATES = ("onnx-int8", "onnx")


def probe_texts() -> list[str]:
    """The fixed probe set: 280 short demo utterances and 20 long passages built from them."""
    from embedlab.data.datasets import load_demo

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
    best = verdict["chosen"]
    log.info(
        "backend auto: %s (%s)",
        best,
        ", ".join(
            f"{k}: cos mean {verdict[k]['mean_cos']:.4f} min {verdict[k]['min_cos']:.4f}"
            for k in CANDIDATES
            if isinstance(verdict.get(k), dict)
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

    from embedlab.encoders.onnx_backend import system_graph_dir
    from embedlab.store.atomic import atomic_write_bytes

    path = _verdict_path(encoder)
    cached = _read_verdict(path, encoder)
    system = system_graph_dir()
    if cached is None and system is not None:  # one made at install time (make)
        cached = _read_verdict(system / path.name, encoder)
    if cached is not None:
        return cached
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock", timeout=900):
            cached = _read_verdict(path, encoder)
            if cached is not None:
                return cached
            log.warning(
                "backend auto: checking the ONNX graph against torch on %d probe texts "
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
    if verdict.get("version") != CHOICE_VERSION or verdict.get("chosen") not in (
        *CANDIDATES,
        "torch",
    ):
        return None
    for kind in CANDIDATES:  # every graph the verdict judged must be the one on disk
        entry = verdict.get(kind)
        if entry is None:
            continue
        runner = encoder.onnx_backend(kind)
        if not isinstance(entry, dict) or entry.get("graph_sha256") != runner.recorded_sha256():
            return None
    return verdict


def measure_backends(encoder: Any, texts: list[str] | None = None) -> dict[str, Any]:
    """Try the candidates fastest first; the first that keeps the cosine thresholds to the
    torch fp32 vectors of the probe set is ``chosen`` (torch when none does)."""
    import tempfile

    texts = texts or probe_texts()
    verdict: dict[str, Any] = {"version": CHOICE_VERSION, "probe_texts": len(texts)}
    ref: np.ndarray | None = None
    with tempfile.TemporaryDirectory(prefix="embedlab-probe-") as tmp:
        ref_file = Path(tmp) / "reference.npy"
        for kind in CANDIDATES:
            runner = encoder.onnx_backend(kind)
            try:
                runner.ensure_exported(reference=(texts, ref_file) if ref is None else None)
                vecs = runner.embed(texts)
            except Exception as exc:  # an export or run failure disqualifies the backend
                raise EncoderError(f"{kind}: {exc}") from None
            if ref is None:
                ref = np.load(ref_file) if ref_file.is_file() else encoder.torch_reference(texts)
            cos = np.einsum("ij,ij->i", vecs / np.linalg.norm(vecs, axis=1, keepdims=True), ref)
            passed = bool(cos.mean() >= MIN_MEAN_COSINE and cos.min() >= MIN_COSINE)
            verdict[kind] = {
                "mean_cos": float(cos.mean()),
                "min_cos": float(cos.min()),
                "passed": passed,
                "graph_sha256": runner.recorded_sha256(),
            }
            if passed:
                verdict["chosen"] = kind
                return verdict
    verdict["chosen"] = "torch"
    return verdict
