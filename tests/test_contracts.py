"""One contract per kind, checked for every member (issue 11).

- Heads follow scikit-learn (``check_estimator`` in tests/heads/test_heads.py); this file
  checks that every exported head is covered there, and gives ZeroShotClassifier (which
  needs an encoder) the contract checks it can take.
- Detectors follow one documented novelty contract (PyOD's, see
  ``embedlab.detect.base.NoveltyDetector``); ``check_detector`` checks it for every
  exported detector.
- Every bad input or hyperparameter raises ``ValidationError`` (also a ``ValueError``).
"""

from __future__ import annotations

import inspect
import pickle

import numpy as np
import pytest
from sklearn.base import OutlierMixin, clone
from sklearn.exceptions import NotFittedError

import embedlab.detect as detect_pkg
import embedlab.heads as heads_pkg
from embedlab.core.errors import InputTypeError, ValidationError
from embedlab.core.metrics import auroc
from embedlab.detect import (
    EnergyDetector,
    KNNDistanceDetector,
    MahalanobisDetector,
    MaxCosineDetector,
    MaxProbDetector,
    NoveltyDetector,
)
from embedlab.heads import EmbeddingClassifier, PrototypeClassifier, ZeroShotClassifier

DETECTORS = [
    MaxCosineDetector(),
    KNNDistanceDetector(n_neighbors=3),
    MahalanobisDetector(),
    MahalanobisDetector(relative=True),
    MahalanobisDetector(low_variance_components=4),
    MaxProbDetector(),
    MaxProbDetector(head=PrototypeClassifier()),
    EnergyDetector(),
]


def _exported(pkg, base):
    return {
        obj
        for name in pkg.__all__
        if inspect.isclass(obj := getattr(pkg, name)) and issubclass(obj, base) and obj is not base
    }


def _data(seed=0, k=4, n_per=60, d=12):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 3
    X = np.vstack([c + rng.normal(size=(n_per, d)) for c in centers]).astype(np.float32)
    y = np.repeat(np.array([f"c{i}" for i in range(k)]), n_per)
    novel = (rng.normal(size=(80, d)) * 3 + rng.normal(size=d) * 4).astype(np.float32)
    return X, y, novel


def test_every_detector_is_checked():
    assert {type(d) for d in DETECTORS} == _exported(detect_pkg, NoveltyDetector)


def test_every_head_is_checked():
    from tests.heads.test_heads import HEADS

    covered = {type(h) for h in HEADS} | {ZeroShotClassifier}  # ZeroShot: below
    assert covered == _exported(heads_pkg, EmbeddingClassifier)


@pytest.mark.parametrize("det", DETECTORS, ids=repr)
def test_detector_contract(det):
    X, y, novel = _data()
    Xt, _, _ = _data(seed=0)
    assert not isinstance(det, OutlierMixin)  # not scikit-learn's (opposite) convention
    est = clone(det)
    assert repr(est.get_params()) == repr(det.get_params())
    with pytest.raises(NotFittedError):
        est.decision_function(X)
    assert est.fit(X, y) is est
    s_in, s_out = est.decision_function(Xt), est.decision_function(novel)
    assert s_in.dtype == np.float32 and s_in.shape == (len(Xt),)
    assert auroc(s_in, s_out) > 0.9  # higher = more novel
    assert isinstance(est.threshold_, float)
    pred = est.predict(np.vstack([Xt, novel]))
    assert pred.dtype.kind == "i" and set(np.unique(pred)) <= {0, 1}
    np.testing.assert_array_equal(
        pred, (est.decision_function(np.vstack([Xt, novel])) > est.threshold_).astype(int)
    )
    est.calibrate(Xt, target_fpr=0.1)
    assert est.predict(Xt).mean() <= 0.1 + 1e-9
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.decision_function(novel), est.decision_function(novel))
    assert not hasattr(est, "score_samples")  # removed (CHANGELOG.md): higher = more normal there


@pytest.mark.parametrize("det", DETECTORS, ids=repr)
def test_detector_bad_input_is_a_validation_error(det):
    X, y, _ = _data()
    # Hyperparameters are checked first, before the data is even looked at.
    with pytest.raises(ValidationError, match="target_fpr"):
        clone(det).set_params(target_fpr=1.5).fit(None, None)
    with pytest.raises(ValidationError, match="calibration_split"):
        clone(det).set_params(calibration_split=-0.1).fit(X, y)
    est = clone(det).fit(X, y)
    for bad, match in (
        (X[:, :3], "features"),
        (np.full((2, X.shape[1]), np.nan, np.float32), "NaN"),
        (np.zeros((0, X.shape[1]), np.float32), "0 sample"),
    ):
        with pytest.raises(ValidationError, match=match) as info:
            est.decision_function(bad)
        assert isinstance(info.value, ValueError)
        assert str(info.value).startswith(type(det).__name__)  # one message style
    with pytest.raises(InputTypeError) as info:
        est.decision_function({"not": "an array"})
    assert isinstance(info.value, (TypeError, ValidationError))


def test_knn_detector_checks_its_own_hyperparameters_first():
    with pytest.raises(ValidationError, match="n_neighbors"):
        KNNDistanceDetector(n_neighbors=0).fit(None)


def test_zero_shot_contract(fake_encoder):
    X, y, _ = _data(d=fake_encoder.dim)
    zs = ZeroShotClassifier(encoder=fake_encoder, description_weight=0.0)
    assert clone(zs).get_params()["description_weight"] == 0.0
    with pytest.raises(NotFittedError):
        zs.predict(X)
    assert zs.fit(X, y) is zs
    pred = zs.predict(X)
    assert set(pred) <= set(zs.classes_)
    proba = zs.predict_proba(X)
    assert proba.shape == (len(X), len(zs.classes_))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(zs)).predict(X), pred)
    with pytest.raises(ValidationError, match="NaN"):
        zs.predict(np.full((1, X.shape[1]), np.nan, np.float32))


def test_open_set_classifier_label_rule():
    from embedlab.models.openset import OpenSetClassifier

    X, y, novel = _data()
    clf = OpenSetClassifier(head="prototype", detector="max-cosine", target_fpr=0.1).fit(X, y)
    pred = clf.predict(np.vstack([X, novel]))
    # The documented rule: a class of classes_, or oos_label (never in classes_).
    assert clf.oos_label not in set(clf.classes_)
    assert set(pred) <= set(clf.classes_) | {clf.oos_label}
    assert (pred[len(X) :] == clf.oos_label).mean() > 0.5
    np.testing.assert_array_equal(clf.novelty_score(novel), clf.detector_.decision_function(novel))
    with pytest.raises(ValidationError, match="OpenSetClassifier"):
        clf.predict(X[:, :3])
