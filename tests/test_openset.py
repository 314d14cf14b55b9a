import numpy as np
import pytest

from embedlab.core.errors import ValidationError
from embedlab.detect import MaxCosineDetector
from embedlab.heads import PrototypeClassifier
from embedlab.models.openset import OpenSetClassifier
from embedlab.models.selection import select_head_and_detector


def data(seed=0, k=6, n_per=40, d=24):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 3
    X = np.vstack([c + rng.normal(size=(n_per, d)) for c in centers]).astype(np.float32)
    y = np.repeat([f"intent{i}" for i in range(k)], n_per).astype(object)
    oos = (rng.normal(size=(60, d)) * 3).astype(np.float32)
    return X, y, oos


def test_auto_fit_predict():
    X, y, oos = data()
    Xa = np.vstack([X, oos[:20]])
    ya = np.concatenate([y, ["oos"] * 20])
    clf = OpenSetClassifier(time_budget=30, target_fpr=0.05).fit(Xa, ya)
    assert "oos" not in clf.classes_ and len(clf.classes_) == 6
    assert clf.selection_["head"] in clf.selection_["head_scores"]
    assert clf.n_oos_train_ == 20
    Xt, yt, oos_t = data(seed=0)
    assert (clf.predict(Xt) == yt).mean() > 0.85
    assert (clf.predict(oos_t[20:]) == "oos").mean() > 0.8
    d = clf.predict_details(Xt[:4])
    assert list(d.columns()) == [
        "label",
        "confidence",
        "novelty",
        "out_of_scope",
        "oos_pvalue",
        "top1_label",
        "top1_confidence",
        "top2_label",
        "top2_confidence",
        "top3_label",
        "top3_confidence",
    ]
    assert (d.top_confidences[:, 0] >= d.top_confidences[:, 1]).all()


def test_named_and_given_components():
    X, y, _ = data()
    clf = OpenSetClassifier(head="linear", detector="relative-mahalanobis").fit(X, y)
    assert clf.selection_ is None and clf.head_name_ == "linear"
    clf = OpenSetClassifier(head=PrototypeClassifier(), detector=MaxCosineDetector()).fit(X, y)
    assert clf.detector_name_ == "MaxCosineDetector"


def test_target_fpr_is_respected_on_fresh_in_scope():
    X, y, _ = data(n_per=200)
    clf = OpenSetClassifier(head="prototype", detector="max-cosine", target_fpr=0.1).fit(X, y)
    Xt, _, _ = data(seed=0, n_per=200)
    rng = np.random.default_rng(9)
    fresh = Xt + 0.01 * rng.normal(size=Xt.shape).astype(np.float32)
    assert 0.03 <= (clf.predict(fresh) == "oos").mean() <= 0.2


def test_bad_training_data():
    X, y, _ = data()
    with pytest.raises(ValidationError, match="every training row is labelled 'oos'"):
        OpenSetClassifier().fit(X, ["oos"] * len(X))
    with pytest.raises(ValidationError, match="only one in-scope class"):
        OpenSetClassifier().fit(X, ["a"] * len(X))
    with pytest.raises(ValidationError, match="unknown head 'svm'"):
        OpenSetClassifier(head="svm", detector="knn").fit(X, y)
    with pytest.raises(ValidationError, match="unknown detector"):
        OpenSetClassifier(head="linear", detector="isolation").fit(X, y)
    clf = OpenSetClassifier(head="prototype", detector="max-cosine").fit(X, y)
    with pytest.raises(ValueError, match="features"):
        clf.predict(X[:, :3])


def test_single_example_classes_fall_back():
    X, y, _ = data()
    X2 = np.vstack([X, X[:1] + 5])
    y2 = np.concatenate([y, ["lonely"]])
    clf = OpenSetClassifier(time_budget=20).fit(X2, y2)
    assert "lonely" in clf.classes_


def test_selection_respects_time_budget():
    X, y, _ = data()
    sel = select_head_and_detector(X, y, time_budget=0.0, n_folds=3)
    assert sel.folds == 1  # stops after the first fold
    assert list(sel.head_scores) == ["prototype"]  # the first candidate only
    assert list(sel.detector_scores) == ["max-cosine"]
    assert "head:linear" in sel.skipped
