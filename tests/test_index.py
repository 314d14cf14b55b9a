"""Index: exactness of flat search, recall of the approximate kinds, persistence, errors."""

import numpy as np
import pytest

from embedlab.compress.index import Index
from embedlab.core.errors import StoreError, ValidationError
from embedlab.data.embedding_set import EmbeddingSet


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(50, 64))
    X = (centers[rng.integers(0, 50, 3000)] + 0.5 * rng.normal(size=(3000, 64))).astype(np.float32)
    Q = (centers[rng.integers(0, 50, 100)] + 0.5 * rng.normal(size=(100, 64))).astype(np.float32)
    return X, Q


def exact(X, Q, k):
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    V = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    return np.argsort(-(V @ U.T), axis=1)[:, :k]


def recall(ids, truth):
    return np.mean(
        [len(set(a) & set(map(str, b))) / len(b) for a, b in zip(ids, truth, strict=True)]
    )


def test_flat_is_exact(data):
    X, Q = data
    index = Index("flat", 64).add(X)
    ids, scores = index.search(Q, 10)
    truth = exact(X, Q, 10)
    assert recall(ids, truth) == 1.0
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
    assert scores.max() <= 1.0 + 1e-5


@pytest.mark.parametrize(
    ("spec", "minimum"),
    [
        ("hnsw16", 0.9),
        ("sq8", 0.9),
        ("pq16x4", 0.2),
        ("ivf16,pq16x4", 0.2),
        ("binary,rescore10", 0.8),
        ("dim16,rerank10", 0.8),
    ],
)
def test_approximate_recall(data, spec, minimum):
    # ivf16,pq16x4 keeps 8 bytes per 64-d vector: far from exact, far above chance (0.003).
    X, Q = data
    index = Index(spec, 64).add(X, ids=[f"doc{i}" for i in range(len(X))])
    ids, _ = index.search(Q, 10)
    truth = [[f"doc{j}" for j in row] for row in exact(X, Q, 10)]
    assert recall(ids, truth) >= minimum


@pytest.mark.parametrize(
    "spec", ["flat", "sq8", "pq8x4", "hnsw16", "ivf16,pq16x4", "binary,rescore4", "dim16,rerank4"]
)
def test_save_load_same_results(data, tmp_path, spec):
    X, Q = data
    index = Index(spec, 64, encoder={"name": "fake", "fingerprint": "f"}).add(X)
    a = index.search(Q, 5)
    loaded = Index.load(index.save(tmp_path / "idx"))
    b = loaded.search(Q, 5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-6)
    assert loaded.encoder == {"name": "fake", "fingerprint": "f"} and len(loaded) == 3000


def test_bytes_per_vector():
    assert Index("flat", 384).bytes_per_vector() == 1536
    assert Index("binary,rescore10", 384).bytes_per_vector() == 48
    assert Index("ivf64,pq16", 384).bytes_per_vector() == 16
    assert Index("ivf64,pq16x4", 384).bytes_per_vector() == 8
    assert Index("dim64,rerank10", 384).bytes_per_vector() == 256
    assert Index("sq8", 384).bytes_per_vector() == 384
    assert Index("pq48", 384).bytes_per_vector() == 48


def test_fewer_vectors_than_k_are_padded():
    index = Index("flat", 4).add(np.eye(4, dtype=np.float32)[:2], ids=["a", "b"])
    ids, scores = index.search(np.eye(4, dtype=np.float32)[:1], 3)
    assert ids.tolist() == [["a", "b", ""]] and scores[0, 2] == -np.inf


def test_errors(data, tmp_path):
    X, Q = data
    with pytest.raises(ValidationError, match=r"unknown index spec 'annoy'; use one of: flat"):
        Index("annoy", 64)
    with pytest.raises(ValidationError, match="dim128 exceeds"):
        Index("dim128,rerank4", 64)
    with pytest.raises(ValidationError, match="pq7: the number of sub-vectors must divide"):
        Index("ivf4,pq7", 64)
    with pytest.raises(ValidationError, match="must divide the dimension 64"):
        Index("pq5", 64)
    with pytest.raises(ValidationError, match="needs at least 16 vectors"):
        Index("pq8x4", 64).add(X[:10])
    with pytest.raises(ValidationError, match="empty"):
        Index("flat", 64).search(Q, 3)
    index = Index("flat", 64).add(X)
    with pytest.raises(ValidationError, match="dimension 32, expected 64"):
        index.search(Q[:, :32], 3)
    with pytest.raises(ValidationError, match="needs at least 256 vectors"):
        Index("ivf16,pq16", 64).add(X[:100])
    with pytest.raises(
        ValidationError, match="x20 is out of range: the bits per code must be 1..16"
    ):
        Index("ivf16,pq16x20", 64)
    path = index.save(tmp_path / "i")
    data_bytes = bytearray((path / "ids.npy").read_bytes())
    data_bytes[-1] ^= 1
    (path / "ids.npy").write_bytes(bytes(data_bytes))
    with pytest.raises(StoreError, match="checksum mismatch for ids.npy"):
        Index.load(path)
    with pytest.raises(StoreError, match="no index at"):
        Index.load(tmp_path / "nope")


@pytest.mark.parametrize(
    "spec, says",
    [
        ("hnsw0", "hnsw0 is out of range"),  # aborted inside FAISS (rc 134)
        ("hnsw1", "hnsw1 is out of range"),  # segfaulted (rc 139)
        ("dim0,rerank10", "dim0 is out of range"),  # built a 0-byte index
        ("dim64,rerank0", "rerank0 is out of range"),  # AssertionError traceback
        ("binary,rescore0", "rescore0 is out of range"),
        ("dim65,rerank2", "dim65 exceeds the vectors' dimension 64"),
        ("ivf0,pq8", "ivf0 is out of range"),
        ("pq0", "pq0 is out of range"),
        ("hnsw" + "9" * 30, "is out of range"),
    ],
)
def test_every_number_of_a_spec_is_checked_before_faiss(tmp_path, spec, says):
    """Each bad number stops `embedlab index` with one line, before FAISS sees it."""
    from typer.testing import CliRunner

    from embedlab.cli import app

    space = tmp_path / "space"
    EmbeddingSet(np.eye(64, dtype=np.float32), ids=[str(i) for i in range(64)]).save(space)
    res = CliRunner().invoke(app, ["index", str(space), "-o", str(tmp_path / "i"), "--spec", spec])
    assert res.exit_code == 2 and says in res.output, res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) <= 2
    assert not (tmp_path / "i").exists()


def test_index_search_allow_mask_is_exact_for_a_flat_index():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 16)).astype(np.float32)
    index = Index("flat", 16).add(X)
    allow = rng.random(500) < 0.05
    Q = rng.standard_normal((7, 16)).astype(np.float32)
    ids, scores = index.search(Q, 10, allow=allow)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    sims = np.where(allow, (Q / np.linalg.norm(Q, axis=1, keepdims=True)) @ Xn.T, -np.inf)
    np.testing.assert_array_equal(ids.astype(int), np.argsort(-sims, axis=1)[:, :10])
    few = np.zeros(500, dtype=bool)
    few[[3, 9]] = True
    ids, scores = index.search(Q, 5, allow=few)
    assert set(ids[:, :2].ravel()) == {"3", "9"} and (ids[:, 2:] == "").all()
    assert np.isinf(scores[:, 2:]).all()
    with pytest.raises(Exception, match="one boolean per stored vector"):
        index.search(Q, 5, allow=few[:10])


def test_a_transform_prefix_before_an_index(data, tmp_path):
    """One grammar: transform steps may come before the index; they are fitted on the first
    vectors, saved with the index and applied to the queries."""
    from embedlab.compress.transforms import TransformChain

    X, Q = data
    index = Index("center,pca16,flat", 64).add(X, ids=[f"r{i}" for i in range(len(X))])
    assert index.dim == 64 and index.chain.spec == "center,pca16" and index.bytes_per_vector() == 64

    def unit(A):  # the index works on unit rows, before and after its transform
        return A / np.linalg.norm(A, axis=1, keepdims=True)

    chain = TransformChain("center,pca16").fit(unit(X))
    exact = Index("flat", 16).add(
        chain.float_vectors(unit(X)), ids=[f"r{i}" for i in range(len(X))]
    )
    Zq = chain.float_vectors(unit(Q))
    want, _ = exact.search(Zq / np.linalg.norm(Zq, axis=1, keepdims=True), 5)
    got, _ = index.search(Q, 5)
    np.testing.assert_array_equal(got, want)
    assert Index("whiten,hnsw16", 64).add(X).search(Q, 1)[0].shape == (len(Q), 1)
    back = Index.load(index.save(tmp_path / "i"))
    np.testing.assert_array_equal(back.search(Q, 5)[0], got)
    flat = Index("norm,dim32,rerank4", 64)  # dimD,rerankR stays the shortlist index
    assert flat.kind == "shortlist" and flat.chain.spec == "norm"
    with pytest.warns(FutureWarning, match="'int8' is now spelled 'sq8'"):
        assert Index("int8", 64).kind == "sq8"
    with pytest.raises(ValidationError, match="pca128 exceeds the vectors' dimension 64"):
        Index("pca128,flat", 64)
