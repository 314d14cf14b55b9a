"""The packaged all-MiniLM-L6-v2 encoder: loading, encoding, caching, bad input."""

import logging

import numpy as np
import pytest

from embedlab.core.errors import EncoderError
from embedlab.encoders import EmbeddingCache, SentenceTransformerEncoder, check_texts

TEXTS = ["book me a flight to paris", "what's the weather tomorrow", "play some jazz"]


@pytest.mark.slow
def test_spec_without_loading_the_model():
    enc = SentenceTransformerEncoder(cache=False)
    spec = enc.spec
    assert spec["name"] == "all-MiniLM-L6-v2" and spec["dim"] == 384
    assert spec["pooling"] == "mean" and spec["normalize"] is True
    assert spec["max_seq_length"] == 256
    assert len(spec["fingerprint"]) == 32
    assert enc._model is None


def test_encode_matches_sentence_transformers(st_encoder_uncached):
    vecs = st_encoder_uncached.encode(TEXTS)
    assert vecs.dtype == np.float32 and vecs.shape == (3, 384)
    ref = st_encoder_uncached.model.encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(vecs, ref, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    # Meaning survives: the flight query is closer to another travel request than to jazz.
    other = st_encoder_uncached.encode(["reserve a plane ticket to rome"])[0]
    assert other @ vecs[0] > other @ vecs[2]


def test_output_order_and_duplicates(st_encoder_uncached):
    texts = ["b", "a much longer text about something else entirely", "b"]
    vecs = st_encoder_uncached.encode(texts)
    assert st_encoder_uncached.last_stats["encoded"] == 2  # the repeated text runs once
    single = np.stack([st_encoder_uncached.encode([t])[0] for t in texts])
    np.testing.assert_allclose(vecs, single, atol=1e-5)
    np.testing.assert_array_equal(vecs[0], vecs[2])


def test_second_encode_does_not_call_the_model(tmp_path, st_encoder_uncached, monkeypatch):
    cache = EmbeddingCache(tmp_path)
    first = SentenceTransformerEncoder(cache=cache)
    first._model = st_encoder_uncached.model  # reuse the loaded weights
    v1 = first.encode(TEXTS)
    assert first.last_stats["encoded"] == 3 and first.last_stats["cached"] == 0

    second = SentenceTransformerEncoder(cache=cache)

    def no_model(*args, **kwargs):
        raise AssertionError("the model ran although every text was cached")

    monkeypatch.setattr(second, "_forward", no_model)
    v2 = second.encode(TEXTS)
    np.testing.assert_array_equal(v1, v2)
    assert second.last_stats == {**second.last_stats, "encoded": 0, "cached": 3}
    assert second._model is None  # not even loaded


def test_partial_cache_hit_encodes_only_new_texts(tmp_path, st_encoder_uncached):
    enc = SentenceTransformerEncoder(cache=EmbeddingCache(tmp_path))
    enc._model = st_encoder_uncached.model
    enc.encode(TEXTS[:2])
    vecs = enc.encode(TEXTS)
    assert enc.last_stats["cached"] == 2 and enc.last_stats["encoded"] == 1
    np.testing.assert_allclose(vecs, st_encoder_uncached.encode(TEXTS), atol=1e-5)


def test_cache_key_depends_on_model(tmp_path, st_encoder_uncached):
    enc = SentenceTransformerEncoder(cache=EmbeddingCache(tmp_path))
    enc._model = st_encoder_uncached.model
    enc.encode(TEXTS)
    cache = EmbeddingCache(tmp_path)
    assert cache.get_many("st:another-model:len256", [b"x"], dim=384) == {}
    assert cache.count() == 3


def test_normalize_flag(st_encoder_uncached):
    enc = SentenceTransformerEncoder(cache=False, normalize=True)
    enc._model = st_encoder_uncached.model
    np.testing.assert_allclose(np.linalg.norm(enc.encode(TEXTS), axis=1), 1.0, atol=1e-6)


def test_long_text_is_cut_with_a_warning(st_encoder_uncached, caplog):
    enc = SentenceTransformerEncoder(cache=False, max_chars=1000)
    enc._model = st_encoder_uncached.model
    with caplog.at_level(logging.WARNING, logger="embedlab"):
        vec = enc.encode(["word " * 100_000])
    assert vec.shape == (1, 384) and np.isfinite(vec).all()
    assert "1 text(s) longer than 1000 characters were cut" in caplog.text


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (["ok", ""], r"1 empty or whitespace-only text\(s\) at rows \[1\]"),
        (["ok", "  \n"], "rows \\[1\\]"),
        (["ok", 3], r"rows \[1\] are not"),
        ("a single string", "not a single string"),
        ([b"\xff"], "not valid UTF-8"),
    ],
)
def test_bad_texts(texts, message):
    with pytest.raises(EncoderError, match=message):
        check_texts(texts)


def test_bad_model_directory(tmp_path):
    with pytest.raises(EncoderError, match="does not exist"):
        SentenceTransformerEncoder(tmp_path / "nope")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    with pytest.raises(EncoderError, match="no modules.json"):
        SentenceTransformerEncoder(tmp_path / "m")


def test_unloadable_model_gives_clear_error(tmp_path):
    d = tmp_path / "broken"
    d.mkdir()
    (d / "modules.json").write_text(
        '[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]'
    )
    (d / "config.json").write_text('{"hidden_size": 8, "model_type": "bert"}')
    enc = SentenceTransformerEncoder(d, cache=False)
    assert enc.dim == 8
    with pytest.raises(EncoderError, match="cannot load a sentence-transformers model"):
        enc.encode(["hello"])


@pytest.mark.slow
def test_fingerprint_changes_with_weights(tmp_path):
    import shutil

    from embedlab.encoders import default_model_path, model_fingerprint

    copy = tmp_path / "copy"
    shutil.copytree(default_model_path(), copy)
    fp = model_fingerprint(copy)
    assert fp == model_fingerprint(default_model_path())
    cfg = copy / "config_sentence_transformers.json"
    cfg.write_text(cfg.read_text() + " ")
    assert model_fingerprint(copy) != fp


def test_reads_the_sentence_transformers_v6_model_layout(tmp_path):
    """Models saved by sentence-transformers >= 6 (e.g. adapted encoders) use new keys."""
    import json

    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "modules.json").write_text(
        json.dumps(
            [
                {"path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"},
                {"path": "1_Pooling", "type": "sentence_transformers.modules.pooling.Pooling"},
                {"path": "2_Normalize", "type": "sentence_transformers.modules.Normalize"},
            ]
        )
    )
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["BertModel"],
                "hidden_size": 384,
                "num_hidden_layers": 6,
                "max_position_embeddings": 512,
            }
        )
    )
    (tmp_path / "1_Pooling" / "config.json").write_text(
        json.dumps({"embedding_dimension": 384, "pooling_mode": "mean"})
    )
    (tmp_path / "sentence_bert_config.json").write_text(json.dumps({"transformer_task": "x"}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 256}))
    enc = SentenceTransformerEncoder(tmp_path, cache=False, layer=3)
    assert enc._config["pooling"] == "mean" and enc._config["max_seq_length"] == 256
    assert enc.dim == 384 and enc.layer == 3
