"""ONNX Runtime backends: agreement with torch, elastic layers, export cache, auto choice,
bad input."""

import json
import logging

import numpy as np
import pytest

from embedlab.core.errors import EncoderError
from embedlab.encoders import SentenceTransformerEncoder
from embedlab.encoders.backend_choice import (
    MIN_COSINE,
    MIN_MEAN_COSINE,
    probe_texts,
    resolve_backend,
)

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
pytestmark = pytest.mark.slow

TEXTS = [
    "book a flight to paris tomorrow morning",
    "play some jazz",
    "what's my checking account balance",
    "set an alarm for 7",
]


def encoder(st_encoder_uncached, backend, **kw):
    enc = SentenceTransformerEncoder(cache=False, backend=backend, **kw)
    enc._model = st_encoder_uncached.model  # exports trace the already-loaded model
    return enc


def cos(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.einsum("ij,ij->i", a, b)


@pytest.mark.parametrize("kw", [{}, {"layer": 2, "dim": 64}])  # truncated layer + Matryoshka dim
def test_onnx_fp32_matches_torch(st_encoder_uncached, kw):
    ref = encoder(st_encoder_uncached, "torch", **kw).encode(TEXTS)
    got = encoder(st_encoder_uncached, "onnx", **kw).encode(TEXTS)
    assert got.shape == ref.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=2e-5)


def test_onnx_int8_keeps_quality_on_the_probe_set(st_encoder_uncached):
    texts = probe_texts()
    assert len(texts) == 300
    ref = encoder(st_encoder_uncached, "torch").encode(texts)
    got = encoder(st_encoder_uncached, "onnx-int8").encode(texts)
    c = cos(got, ref)
    assert c.mean() >= MIN_MEAN_COSINE and c.min() >= MIN_COSINE


def test_exported_graph_is_reused_and_a_damaged_one_is_exported_again(st_encoder_uncached, caplog):
    enc = encoder(st_encoder_uncached, "onnx")
    runner = enc.onnx_backend()
    path = runner.ensure_exported()
    stamp = path.stat().st_mtime_ns
    assert runner.ensure_exported() == path and path.stat().st_mtime_ns == stamp  # reused
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")  # corrupted
    with caplog.at_level(logging.WARNING, logger="embedlab"):
        runner.ensure_exported()
    assert "stale or damaged" in caplog.text
    meta = json.loads(runner.meta_path.read_text())
    meta["fingerprint"] = "another-model"  # stale: made for other weights
    runner.meta_path.write_text(json.dumps(meta))
    assert not runner._fresh()
    runner.ensure_exported()
    assert runner._fresh()
    np.testing.assert_allclose(
        enc.encode(TEXTS[:2]), encoder(st_encoder_uncached, "torch").encode(TEXTS[:2]), atol=2e-5
    )


def test_long_texts_are_truncated_once_with_a_message(st_encoder_uncached, caplog):
    long = " ".join(["the quick brown fox jumps over the lazy dog"] * 200)
    enc = encoder(st_encoder_uncached, "onnx")
    with caplog.at_level(logging.WARNING, logger="embedlab"):
        got = enc.encode([long, "short one", long + " again"])
        enc.encode([long])
    assert caplog.text.count("truncated") == 1
    ref = encoder(st_encoder_uncached, "torch").encode([long, "short one", long + " again"])
    assert cos(got, ref).min() > 0.9999


def test_empty_and_non_text_input_is_refused(st_encoder_uncached):
    enc = encoder(st_encoder_uncached, "onnx")
    with pytest.raises(EncoderError, match="empty"):
        enc.encode(["fine", "   "])
    with pytest.raises(EncoderError, match="texts must be strings"):
        enc.encode(["fine", None])


def test_auto_picks_a_backend_that_passed_and_remembers_it(st_encoder_uncached):
    enc = encoder(st_encoder_uncached, "auto")
    chosen = enc.resolved_backend
    assert chosen in ("torch", "onnx", "onnx-int8")
    files = list(enc.onnx_backend("onnx").cache_dir.glob("*-layer6-choice.json"))
    assert len(files) == 1
    verdict = json.loads(files[0].read_text())
    assert verdict["chosen"] == chosen
    if chosen != "torch":
        assert verdict[chosen]["passed"]
        # Fastest first: a passing int8 graph means the fp32 one is never judged.
        if chosen == "onnx-int8":
            assert "onnx" not in verdict
    again = encoder(st_encoder_uncached, "auto")
    again._model = None  # a remembered verdict needs no torch model
    assert resolve_backend(again) == chosen and again._model is None


def test_unsupported_models_fall_back_or_fail_clearly(st_encoder_uncached, caplog):
    enc = encoder(st_encoder_uncached, "auto")
    enc._config = {**enc._config, "architecture": "GPT2LMHeadModel"}
    with caplog.at_level(logging.INFO, logger="embedlab"):
        assert enc.resolved_backend == "torch"
    assert "not a supported BERT-family model" in caplog.text
    explicit = encoder(st_encoder_uncached, "onnx")
    explicit._config = enc._config
    with pytest.raises(EncoderError, match="backend 'onnx' is unavailable"):
        explicit.encode(TEXTS)
    with pytest.raises(EncoderError, match="first-last layer averaging runs on torch only"):
        encoder(st_encoder_uncached, "onnx-int8", first_last_average=True).encode(TEXTS)
    with pytest.raises(EncoderError, match="unknown backend 'tensorrt'; choose one of: auto"):
        SentenceTransformerEncoder(cache=False, backend="tensorrt")


def test_cache_keys_keep_backends_apart(st_encoder_uncached, tmp_path):
    from embedlab.encoders import EmbeddingCache

    cache = EmbeddingCache(tmp_path)
    a = SentenceTransformerEncoder(cache=cache, backend="torch")
    b = SentenceTransformerEncoder(cache=cache, backend="onnx")
    for e in (a, b):
        e._model = st_encoder_uncached.model
    a.encode(TEXTS)
    b.encode(TEXTS)
    assert b.last_stats["cached"] == 0  # onnx vectors are not served from torch's entries
    assert b.spec["backend"] == "onnx"


def test_cli_encode_with_a_backend(tmp_path):
    from typer.testing import CliRunner

    from embedlab.cli import app

    data = tmp_path / "d.csv"
    data.write_text("text,label\nbook a flight,travel\nplay jazz,music\n")
    runner = CliRunner()
    res = runner.invoke(app, ["encode", str(data), "-o", str(tmp_path / "s"), "--backend", "onnx"])
    assert res.exit_code == 0, res.output
    assert "backend onnx" in res.output
    res = runner.invoke(app, ["encode", str(data), "-o", str(tmp_path / "t"), "--backend", "tpu"])
    assert res.exit_code == 2 and "unknown backend 'tpu'" in res.output


def test_sessions_per_core_give_the_single_session_answer(st_encoder_uncached):
    """Batches dealt to one session per core come back in order, each text's vector what
    one session gives; progress is reported per batch and adds up."""
    texts = probe_texts()
    vectors = {}
    for threads in (1, 3, 9):
        runner = encoder(st_encoder_uncached, "onnx-int8").onnx_backend()
        runner.threads = threads
        seen: list[int] = []
        vectors[threads] = runner.embed(texts, seen.append)
        assert len(runner._sessions) == min(threads, 4)  # at most 4 copies of the graph
        assert sum(seen) == len(texts) and len(seen) > len(runner._sessions)
    np.testing.assert_array_equal(vectors[1], vectors[3])
    np.testing.assert_array_equal(vectors[1], vectors[9])
