"""Detectors: separation and calibration on known answers (the shared contract is in
tests/test_contracts.py)."""

import numpy as np
import pytest

from embedlab.core.errors import ValidationError
from embedlab.core.metrics import auroc
from embedlab.detect import (
    EnergyDetector,
    KNNDistanceDetector,
    MahalanobisDetector,
    MaxCosineDetector,
    MaxProbDetector,
    calibrated_threshold,
)
from embedlab.heads import PrototypeClassifier

DETECTORS = [
    MaxCosineDetector(),
    KNNDistanceDetector(),
    KNNDistanceDetector(n_neighbors=5),
    MahalanobisDetector(),
    MahalanobisDetector(relative=True),
    MahalanobisDetector(low_variance_components=8),
    MaxProbDetector(),
    MaxProbDetector(head=PrototypeClassifier()),
    EnergyDetector(),
]


def clusters(seed=0, n_per=60, k=4, d=16):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 3
    X = np.vstack([c + rng.normal(size=(n_per, d)) for c in centers]).astype(np.float32)
    y = np.repeat(np.arange(k), n_per).astype(str)
    novel = (rng.normal(size=(80, d)) * 3 + rng.normal(size=d) * 3).astype(np.float32)
    return X, y, novel, centers


@pytest.mark.parametrize("det", DETECTORS, ids=repr)
def test_contract_and_separation(det):
    X, y, _, _ = clusters()
    Xt, _, novel_t, _ = clusters(seed=0)
    det.fit(X, y)
    s_in, s_out = det.decision_function(Xt), det.decision_function(novel_t)
    assert s_in.dtype == np.float32 and s_in.shape == (len(Xt),)
    assert auroc(s_in, s_out) > 0.9
    assert isinstance(det.threshold_, float)
    pred = det.predict(novel_t)
    np.testing.assert_array_equal(pred, det.decision_function(novel_t) > det.threshold_)


@pytest.mark.parametrize("det", DETECTORS[:6], ids=repr)
def test_calibration_hits_target_fpr_on_fresh_data(det):
    X, y, _, centers = clusters(n_per=300)
    rng = np.random.default_rng(5)
    fresh = np.vstack([c + rng.normal(size=(300, 16)) for c in centers]).astype(np.float32)
    det.set_params(target_fpr=0.1).fit(X, y)
    rate = det.predict(fresh).mean()
    assert 0.04 <= rate <= 0.18, rate
    det.calibrate(fresh, target_fpr=0.05)
    assert det.predict(fresh).mean() <= 0.05


def test_calibrated_threshold_is_the_conformal_rank():
    s = np.arange(99, dtype=float)  # n = 99: (n+1)(1-0.05) = 95 -> the 95th smallest
    t = calibrated_threshold(s, 0.05)
    assert t == 94.0 and (s > t).sum() == 4
    with pytest.warns(UserWarning, match="at least 49"):
        assert calibrated_threshold(s[:10], 0.02) == float("inf")
    with pytest.raises(ValidationError, match=r"\(0, 1\)"):
        calibrated_threshold(s, 1.0)
    with pytest.raises(ValidationError, match="at least one"):
        calibrated_threshold([], 0.1)
    with pytest.raises(ValidationError, match="NaN"):
        calibrated_threshold([0.1, np.nan, 0.3], 0.1)


@pytest.mark.parametrize("det", DETECTORS[:3], ids=repr)
def test_p_value_agrees_with_predict(det):
    X, y, novel, _ = clusters()
    det.set_params(target_fpr=0.1).fit(X, y)
    rows = np.vstack([X[:50], novel])
    p = det.p_value(rows)
    assert ((p <= 0.1) == det.predict(rows).astype(bool)).all()
    assert det.calibration_method_ == "split-conformal"
    assert len(det.calibration_scores_) == int(0.2 * len(X))


def test_mahalanobis_known_distances():
    # Two classes with known shared covariance diag(4, 1): score = min squared distance.
    rng = np.random.default_rng(0)
    cov = np.diag([4.0, 1.0])
    a = rng.multivariate_normal([0, 0], cov, 5000)
    b = rng.multivariate_normal([20, 0], cov, 5000)
    X = np.vstack([a, b]).astype(np.float32)
    y = np.repeat(["a", "b"], 5000)
    det = MahalanobisDetector(normalize=False, shrinkage=0.0, calibration_split=0).fit(X, y)
    s = det.decision_function(np.array([[2.0, 0.0], [0.0, 2.0], [20.0, 3.0]], dtype=np.float32))
    np.testing.assert_allclose(s, [1.0, 4.0, 9.0], rtol=0.06)


def test_relative_mahalanobis_discounts_shared_directions():
    X, y, _, _ = clusters()
    plain = MahalanobisDetector().fit(X, y)
    rel = MahalanobisDetector(relative=True).fit(X, y)
    assert rel.decision_function(X).mean() < plain.decision_function(X).mean()


def test_max_cosine_known_answer():
    X = np.array([[1, 0], [1, 0.01], [0, 1], [0.01, 1]], dtype=np.float32)
    det = MaxCosineDetector(calibration_split=0).fit(X, ["a", "a", "b", "b"])
    s = det.decision_function(np.array([[1, 1]], dtype=np.float32))
    assert s[0] == pytest.approx(1 - np.cos(np.pi / 4), abs=0.01)


def test_detectors_without_labels():
    X, _, novel, _ = clusters()
    for det in (MaxCosineDetector(), KNNDistanceDetector(), MahalanobisDetector()):
        det.fit(X)
        assert det.decision_function(novel).mean() > det.decision_function(X).mean()
    with pytest.raises(ValueError, match="needs class labels"):
        MaxProbDetector().fit(X)


def test_bad_input():
    X, y, _, _ = clusters()
    det = MaxCosineDetector().fit(X, y)
    with pytest.raises(ValueError, match="features"):
        det.decision_function(X[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        det.decision_function(np.full((1, 16), np.nan, dtype=np.float32))
    with pytest.raises(ValidationError, match="target_fpr"):
        MaxCosineDetector(target_fpr=1.5).fit(X, y)
    with pytest.raises(Exception, match="not fitted"):
        KNNDistanceDetector().decision_function(X)
