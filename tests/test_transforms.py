"""Transform spec strings: parsing, each step against a known answer, codes, persistence."""

import numpy as np
import pytest

from embedlab.compress.transforms import TransformChain, parse_spec
from embedlab.core.errors import ValidationError


@pytest.fixture
def X():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(32, 32))
    return (rng.normal(size=(2000, 32)) @ A + 3.0).astype(np.float32)


def test_parse_spec():
    layer, steps = parse_spec("layer4, center,whiten,dim16,sq8")
    assert layer == 4 and [s.token for s in steps] == ["center", "whiten", "dim16", "sq8"]
    with pytest.warns(FutureWarning, match="'int8' is now spelled 'sq8'"):  # the old spelling
        assert [s.token for s in parse_spec("dim16,int8")[1]] == ["dim16", "sq8"]
    assert [s.token for s in parse_spec("pq4x8")[1]] == ["pq4"]  # pqM is pqMx8


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("binary,whiten", r"'binary' turns vectors into codes, so 'whiten' cannot follow it"),
        ("center,blur", r"unknown token 'blur' in transform 'center,blur'; tokens are: layerK"),
        ("center,layer3", "must come first"),
        ("dim0", "dim0 is out of range"),
        ("", "empty transform"),
        ("sq8,pq8", "cannot follow"),
        ("center,hnsw32", "'hnsw32' in 'center,hnsw32' is an index token, not a transform"),
        ("pq8x4", "a transform's pq codes are 8 bits"),
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(ValidationError, match=message):
        parse_spec(spec)


def test_center_and_whiten(X):
    Z = TransformChain("center").fit_transform(X)
    np.testing.assert_allclose(Z.mean(0), 0, atol=1e-3)
    W = TransformChain("whiten").fit_transform(X)
    np.testing.assert_allclose(np.cov(W, rowvar=False), np.eye(32), atol=2e-3)


def test_pca_keeps_the_top_variance_subspace(X):
    from sklearn.decomposition import PCA

    Z = TransformChain("pca8").fit_transform(X)
    ref = PCA(8).fit(X)
    np.testing.assert_allclose(np.var(Z, axis=0, ddof=1), ref.explained_variance_, rtol=1e-3)


def test_dim_and_norm(X):
    Z = TransformChain("dim5,norm").fit_transform(X)
    np.testing.assert_allclose(
        Z, X[:, :5] / np.linalg.norm(X[:, :5], axis=1, keepdims=True), rtol=1e-5
    )


def test_int8_round_trip(X):
    chain = TransformChain("sq8").fit(X)
    codes = chain.transform(X)
    assert codes.dtype == np.int8 and codes.shape == X.shape
    err = np.abs(chain.decode(codes) - X)
    low, high = np.percentile(X, [0.1, 99.9], axis=0)
    inside = (X - low >= 0) & (high - X >= 0)  # values inside the calibrated range
    assert (err[inside] <= ((high - low) / 255).max() / 2 + 1e-4).all()
    assert chain.bytes_per_vector() == 32


def test_binary_signs(X):
    chain = TransformChain("center,binary").fit(X)
    codes = chain.transform(X)
    assert codes.dtype == np.uint8 and codes.shape == (2000, 4)
    centred = X - X.mean(0)
    np.testing.assert_array_equal(chain.decode(codes) > 0, centred > 0)
    assert chain.bytes_per_vector() == 4


def test_pq_reconstructs_better_than_the_mean(X):
    chain = TransformChain("pq8").fit(X)
    codes = chain.transform(X)
    assert codes.shape == (2000, 8) and chain.bytes_per_vector() == 8
    err = np.mean((chain.decode(codes) - X) ** 2)
    assert err < 0.3 * np.mean((X - X.mean(0)) ** 2)


def test_bytes_per_vector(X):
    assert TransformChain("center").fit(X).bytes_per_vector() == 128
    assert TransformChain("pca8").fit(X).bytes_per_vector() == 32
    assert TransformChain("dim16,binary").fit(X).bytes_per_vector() == 2


def test_fit_errors(X):
    with pytest.raises(ValidationError, match="asks for 64 dimensions; the input has 32"):
        TransformChain("dim64").fit(X)
    with pytest.raises(ValidationError, match="do not split into 5"):
        TransformChain("pq5").fit(X)
    with pytest.raises(ValidationError, match="not fitted"):
        TransformChain("center").transform(X)
    chain = TransformChain("center").fit(X)
    with pytest.raises(ValidationError, match="dimension 8, expected 32"):
        chain.transform(X[:, :8])


@pytest.mark.parametrize("spec", ["center,whiten,dim16,sq8", "pca16,norm", "pq4", "binary"])
def test_state_round_trip(X, spec):
    chain = TransformChain(spec).fit(X)
    config, arrays = chain.state()
    back = TransformChain.from_state(config, arrays)
    np.testing.assert_array_equal(back.transform(X[:50]), chain.transform(X[:50]))


def test_saved_state_survives_safetensors_byte_for_byte(tmp_path):
    from safetensors.numpy import load_file, save_file

    rng = np.random.default_rng(1)
    X = rng.standard_normal((400, 24)).astype(np.float32)
    chain = TransformChain("center,whiten,pca8,norm").fit(X)
    config, arrays = chain.state()
    save_file(arrays, str(tmp_path / "a.safetensors"))
    again = TransformChain.from_state(config, load_file(str(tmp_path / "a.safetensors")))
    np.testing.assert_array_equal(again.transform(X), chain.transform(X))


def test_from_state_refuses_missing_arrays():
    chain = TransformChain("center,pca4").fit(np.random.default_rng(0).random((50, 8)))
    config, arrays = chain.state()
    del arrays["step1.projection"]
    with pytest.raises(ValidationError, match="lacks its fitted arrays"):
        TransformChain.from_state(config, arrays)
