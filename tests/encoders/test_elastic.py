"""Elastic encoding: any layer 1..L, first-last averaging, Matryoshka truncation."""

import numpy as np
import pytest
import torch

from embedlab.core.errors import EncoderError
from embedlab.encoders import EmbeddingCache, SentenceTransformerEncoder, default_model_path

TEXTS = ["book a flight to paris tomorrow", "play some jazz", "what's my balance"]


def reference_layers(texts):
    """Mean-pooled, normalised hidden states of every layer from a clean transformers model."""
    from transformers import AutoModel, AutoTokenizer

    path = str(default_model_path())
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    feats = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    mask = feats["attention_mask"].unsqueeze(-1).float()
    with torch.inference_mode():
        hidden = model(**feats, output_hidden_states=True).hidden_states
    pooled = [(h * mask).sum(1) / mask.sum(1) for h in hidden]
    return [p.numpy() for p in pooled]


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def refs():
    return reference_layers(TEXTS)


def elastic(st_encoder_uncached, **kw):
    enc = SentenceTransformerEncoder(cache=False, **kw)
    enc._model = st_encoder_uncached.model
    return enc


@pytest.mark.parametrize("layer", [1, 3, 6])
def test_layer_matches_hidden_state(st_encoder_uncached, refs, layer):
    vecs = elastic(st_encoder_uncached, layer=layer).encode(TEXTS)
    np.testing.assert_allclose(vecs, unit(refs[layer]), atol=1e-5)


def test_last_layer_equals_the_default_encoder(st_encoder_uncached):
    np.testing.assert_allclose(
        elastic(st_encoder_uncached, layer=6).encode(TEXTS),
        st_encoder_uncached.encode(TEXTS),
        atol=1e-5,
    )


def test_dim_truncates_then_renormalises(st_encoder_uncached, refs):
    enc = elastic(st_encoder_uncached, layer=4, dim=64)
    vecs = enc.encode(TEXTS)
    assert vecs.shape == (3, 64) and enc.dim == 64
    np.testing.assert_allclose(vecs, unit(refs[4][:, :64]), atol=1e-5)
    assert enc.spec["layer"] == 4 and enc.spec["truncate_dim"] == 64 and enc.spec["dim"] == 64


def test_first_last_average(st_encoder_uncached, refs):
    vecs = elastic(st_encoder_uncached, first_last_average=True).encode(TEXTS)
    np.testing.assert_allclose(vecs, unit((refs[1] + refs[6]) / 2), atol=1e-5)


def test_cache_keeps_layers_apart(tmp_path, st_encoder_uncached):
    cache = EmbeddingCache(tmp_path)
    full = SentenceTransformerEncoder(cache=cache)
    full._model = st_encoder_uncached.model
    low = SentenceTransformerEncoder(cache=cache, layer=2)
    low._model = st_encoder_uncached.model
    a, b = full.encode(TEXTS), low.encode(TEXTS)
    assert low.last_stats["cached"] == 0  # layer 2 did not reuse the last layer's vectors
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(low.encode(TEXTS), b)
    assert low.last_stats["cached"] == 3


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"layer": 0}, r"layer 0 is out of range: this model has layers 1..6"),
        ({"layer": 7}, r"layers 1..6"),
        ({"dim": 500}, r"dim 500 is out of range: this model's vectors have 1..384"),
        ({"dim": 0}, r"1..384"),
    ],
)
@pytest.mark.slow
def test_out_of_range(kw, message):
    with pytest.raises(EncoderError, match=message):
        SentenceTransformerEncoder(cache=False, **kw)


@pytest.mark.slow
def test_adaptation_refuses_elastic_encoders(tmp_path):
    from embedlab.core.errors import ValidationError
    from embedlab.models.adapt import adapt_encoder

    with pytest.raises(ValidationError, match="without layer / dim"):
        adapt_encoder(
            SentenceTransformerEncoder(cache=False, layer=3), ["a", "b"], ["x", "y"], tmp_path / "m"
        )


def test_encode_layers_matches_every_hidden_state_in_one_pass(st_encoder_uncached, refs):
    texts = [*TEXTS, TEXTS[0]]  # a repeated text is encoded once and returned twice
    enc = SentenceTransformerEncoder()
    enc._model = st_encoder_uncached.model
    out = enc.encode_layers(texts)
    assert sorted(out) == [1, 2, 3, 4, 5, 6]
    for k, vecs in out.items():
        assert vecs.shape == (4, 384) and vecs.dtype == np.float32
        np.testing.assert_allclose(vecs[:3], unit(refs[k]), atol=1e-5)
        np.testing.assert_array_equal(vecs[3], vecs[0])
    # Each layer is cached under the elastic encoder's key: layer 2 needs no model now.
    again = SentenceTransformerEncoder(layer=2)
    np.testing.assert_array_equal(again.encode(TEXTS), out[2][:3])
    assert again.last_stats["cached"] == 3 and again._model is None
    # The last layer of this (mean-pooled, normalising) model is its plain output.
    plain = SentenceTransformerEncoder()
    np.testing.assert_array_equal(plain.encode(TEXTS), out[6][:3])
    assert plain.last_stats["cached"] == 3 and plain._model is None


def test_encode_layers_rejects_layers_out_of_range(st_encoder_uncached):
    enc = elastic(st_encoder_uncached)
    with pytest.raises(EncoderError, match=r"layers 1\.\.6"):
        enc.encode_layers(TEXTS, [0, 2])
    assert sorted(enc.encode_layers(TEXTS, [5, 2])) == [2, 5]
