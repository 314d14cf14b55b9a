"""Heads: the scikit-learn contract, known answers, and bad input."""

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from embedlab.core.errors import ValidationError
from embedlab.heads import (
    GaussianClassifier,
    KNNClassifier,
    LinearClassifier,
    PrototypeClassifier,
    ZeroShotClassifier,
)

# Documented skip: float32 BLAS results depend on the batch shape at the 1e-7 level, so
# scores of a subset can differ from the same rows scored in a larger batch by ~1e-7,
# which check_methods_subset_invariance's rtol=1e-7 rejects. Predictions are unaffected.
FLOAT32 = {"check_methods_subset_invariance": "float32 scores vary by ~1e-7 with batch shape"}
HEADS = [
    PrototypeClassifier(),
    PrototypeClassifier(n_prototypes=2),
    KNNClassifier(n_neighbors=3),
    KNNClassifier(head=LinearClassifier()),
    LinearClassifier(),
    LinearClassifier(C="auto"),
    GaussianClassifier(),
    GaussianClassifier(covariance="diagonal"),
]


def _expected(est):
    return {} if isinstance(est, LinearClassifier) else FLOAT32


@parametrize_with_checks(HEADS, expected_failed_checks=_expected)
def test_sklearn_contract(estimator, check):
    check(estimator)


def blobs(n_per=30, d=16, k=4, seed=0, spread=0.3):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d))
    X = np.vstack([c + spread * rng.normal(size=(n_per, d)) for c in centers])
    y = np.repeat([f"c{i}" for i in range(k)], n_per)
    return X.astype(np.float32), y, centers


@pytest.mark.parametrize("head", [h for h in HEADS], ids=repr)
def test_separable_blobs_are_learned(head):
    X, y, _ = blobs()
    Xt, yt, _ = blobs(seed=0, n_per=10)
    head.fit(X, y)
    assert (head.predict(Xt) == yt).mean() >= 0.95
    proba = head.predict_proba(Xt)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert list(head.classes_) == ["c0", "c1", "c2", "c3"]


def test_prototype_known_answer():
    X = np.array([[1, 0], [0.8, 0.2], [0, 1], [0.2, 0.8]], dtype=np.float32)
    head = PrototypeClassifier().fit(X, ["a", "a", "b", "b"])
    # Mean of the unit rows (1, 0) and (0.970, 0.243), renormalised.
    m = np.array([1 + 0.8 / np.hypot(0.8, 0.2), 0.2 / np.hypot(0.8, 0.2)])
    m /= np.linalg.norm(m)
    np.testing.assert_allclose(head.prototypes_, [m, m[::-1]], atol=1e-6)
    assert head.predict([[1, 0.1], [0.1, 1]]).tolist() == ["a", "b"]
    # Cosine: scale does not matter.
    assert head.predict([[100, 10]]).tolist() == ["a"]


def test_prototype_invariant_to_row_order():
    X, y, _ = blobs()
    perm = np.random.default_rng(0).permutation(len(y))
    a = PrototypeClassifier().fit(X, y)
    b = PrototypeClassifier().fit(X[perm], y[perm])
    np.testing.assert_allclose(a.prototypes_, b.prototypes_, atol=1e-6)


def test_several_prototypes_capture_a_two_mode_class():
    # Class "a" has two modes; class "b" sits between them (cosine geometry).
    X = np.array(
        [[1, 0.05], [1, -0.05], [0.05, 1], [-0.05, 1], [0.7, 0.7], [0.72, 0.69]], dtype=np.float32
    )
    y = ["a", "a", "a", "a", "b", "b"]
    assert PrototypeClassifier(n_prototypes=1).fit(X, y).predict([[1, 0]]).tolist() == ["b"]
    assert PrototypeClassifier(n_prototypes=2).fit(X, y).predict([[1, 0]]).tolist() == ["a"]


def test_knn_interpolation_uses_the_head():
    X, y, _ = blobs()
    knn = KNNClassifier(n_neighbors=5).fit(X, y)
    mixed = KNNClassifier(n_neighbors=5, head=LinearClassifier(), lam=0.0).fit(X, y)
    np.testing.assert_allclose(mixed.predict_proba(X[:5]), mixed.head_.predict_proba(X[:5]))
    assert not np.allclose(knn.predict_proba(X[:5]), mixed.predict_proba(X[:5]))


def test_gaussian_lda_known_answer():
    # Elongated shared covariance: a point closer in Euclidean terms to class b's mean
    # but along the high-variance axis of class a belongs to a.
    rng = np.random.default_rng(0)
    cov = np.array([[9.0, 0.0], [0.0, 0.1]])
    a = rng.multivariate_normal([0, 0], cov, 400)
    b = rng.multivariate_normal([0, 1.5], cov, 400)
    X = np.vstack([a, b]).astype(np.float32)
    y = np.repeat(["a", "b"], 400)
    head = GaussianClassifier(normalize=False, shrinkage=0.0).fit(X, y)
    assert head.predict([[4.0, 0.1]]).tolist() == ["a"]
    D = head.mahalanobis(np.array([[0.0, 0.0]], dtype=np.float32))
    assert D[0, 1] == pytest.approx(1.5**2 / 0.1, rel=0.15)


def test_linear_auto_tunes():
    X, y, _ = blobs()
    head = LinearClassifier(C="auto").fit(X, y)
    assert head.C_ in head.Cs


@pytest.mark.parametrize(
    "head", [PrototypeClassifier(), LinearClassifier(), GaussianClassifier()], ids=repr
)
def test_bad_input(head):
    X, y, _ = blobs()
    with pytest.raises(ValidationError, match="at least 2 classes; got only class 'c0'"):
        head.fit(X[:10], y[:10])
    with pytest.raises(ValueError, match="NaN"):
        head.fit(np.where(np.arange(X.size).reshape(X.shape) == 3, np.nan, X), y)
    head.fit(X, y)
    with pytest.raises(ValueError, match="features"):
        head.predict(X[:, :5])


def test_one_example_classes_are_allowed():
    X = np.eye(4, dtype=np.float32)
    assert PrototypeClassifier().fit(X, list("abcd")).predict(X).tolist() == list("abcd")


class WordEncoder:
    """A tiny deterministic encoder: bag of words over a fixed vocabulary."""

    vocab = ("flight", "plane", "travel", "song", "music", "play", "weather", "rain")

    @property
    def dim(self):
        return len(self.vocab)

    @property
    def spec(self):
        return {"kind": "words", "fingerprint": "w"}

    def encode(self, texts, progress=None):
        return np.array(
            [[float(w in t.split()) + 0.01 for w in self.vocab] for t in texts], dtype=np.float32
        )


def test_zero_shot_without_labels():
    enc = WordEncoder()
    zs = ZeroShotClassifier(
        enc, descriptions={"travel": ["flight plane", "travel"], "music": "song music play"}
    ).fit()
    X = enc.encode(["book a plane", "play a song"])
    assert zs.predict(X).tolist() == ["travel", "music"]
    assert zs.predict_proba(X).shape == (2, 2)


def test_zero_shot_from_class_names_and_labels():
    enc = WordEncoder()
    X = enc.encode(["rain today", "rain", "play music", "music"])
    y = ["weather", "weather", "music", "music"]
    zs = ZeroShotClassifier(enc, description_weight=0.5).fit(X, y)
    assert list(zs.classes_) == ["music", "weather"]
    assert zs.predict(enc.encode(["weather rain"])).tolist() == ["weather"]
    with pytest.raises(ValidationError, match="at least 2 classes"):
        ZeroShotClassifier(enc, descriptions={"only": "one"}).fit()
    with pytest.raises(ValidationError, match="non-empty text"):
        ZeroShotClassifier(enc, descriptions={"a": [""], "b": "x"}).fit()
