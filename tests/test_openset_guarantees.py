"""The open-set classifier's promises: a split-conformal threshold from the deployed
detector, p-values that agree with it, Mondrian thresholds, Benjamini-Hochberg over a
batch, APS prediction sets — kept through class changes and a bundle."""

import pickle
import warnings

import numpy as np
import pytest

from embedlab.core.conformal import conformal_threshold, p_values
from embedlab.core.errors import ValidationError
from embedlab.models.openset import OpenSetClassifier


def blobs(seed=0, k=6, n_per=150, d=16, spread=1.0, fresh=None):
    """Labelled clusters and novel rows; ``fresh``: the same clusters, other noise."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 2.2
    if fresh is not None:
        rng = np.random.default_rng([seed, fresh])
    y = np.repeat([f"c{i}" for i in range(k)], n_per).astype(object)
    X = (centers[np.repeat(np.arange(k), n_per)] + spread * rng.normal(size=(k * n_per, d))).astype(
        np.float32
    )
    novel = (rng.normal(size=(300, d)) * 2.2 + rng.normal(size=d) * 3).astype(np.float32)
    return X, y, novel


@pytest.mark.parametrize(
    ("head", "detector"), [("prototype", "max-cosine"), ("linear", "energy"), ("linear", "knn")]
)
def test_threshold_is_conformal_on_the_deployed_detector(head, detector):
    X, y, novel = blobs()
    clf = OpenSetClassifier(head=head, detector=detector, target_fpr=0.05).fit(X, y)
    rows, _labels, held, _ = clf.kept_rows()
    assert clf.calibration_method_ == "split-conformal" and held.sum() == len(
        clf.calibration_scores_
    )
    # the detector kept is the one whose scores calibrated it: rows it never saw
    np.testing.assert_allclose(
        clf.calibration_scores_, clf.detector_.decision_function(rows[held]), rtol=1e-6
    )
    assert clf.threshold_ == conformal_threshold(clf.calibration_scores_, 0.05)
    d = clf.predict_details(np.vstack([X[:100], novel]))
    np.testing.assert_array_equal(d.out_of_scope, d.p_value <= 0.05)
    np.testing.assert_allclose(clf.p_value(novel[:7]), d.p_value[100:107])
    assert d.out_of_scope[100:].mean() > 0.8


def test_realised_rate_is_at_most_the_target_over_refits():
    """Fresh in-scope rows from the same distribution are rejected at most target_fpr of the
    time, averaged over fits with different held-out draws (small n: 90 rows)."""
    rates = []
    for seed in range(12):
        X, y, _ = blobs(seed=seed, n_per=75)
        Xt, _, _ = blobs(seed=seed, n_per=400, fresh=1)
        clf = OpenSetClassifier(
            head="prototype", detector="max-cosine", target_fpr=0.05, random_state=seed
        ).fit(X, y)
        rates.append(clf.predict_details(Xt[::3]).out_of_scope.mean())
    assert np.mean(rates) <= 0.05 + 0.02, rates


def test_small_calibration_warns_with_the_achievable_rate():
    X, y, novel = blobs(n_per=20)  # 24 held-out rows: 2 % needs 49
    with pytest.warns(UserWarning, match=r"at least 49.*achievable rate is 0\.04"):
        clf = OpenSetClassifier(head="prototype", detector="max-cosine", target_fpr=0.02).fit(X, y)
    assert clf.threshold_ == float("inf") and not clf.predict_details(novel).out_of_scope.any()
    assert (clf.p_value(novel) >= 1 / 25).all()


def test_mondrian_thresholds_are_per_predicted_class():
    X, y, novel = blobs(n_per=300)
    clf = OpenSetClassifier(
        head="prototype", detector="max-cosine", target_fpr=0.1, calibration="mondrian"
    ).fit(X, y)
    assert clf.group_thresholds_.shape == (6,) and np.isfinite(clf.group_thresholds_).all()
    rows = np.vstack([X[::5], novel])
    d = clf.predict_details(rows)
    groups = np.argmax(clf.calibration_head_.predict_proba(rows), axis=1)
    expected = p_values(
        clf.calibration_scores_,
        d.novelty,
        calibration_groups=clf.calibration_groups_,
        groups=groups,
    )
    np.testing.assert_allclose(d.p_value, expected)
    np.testing.assert_array_equal(d.out_of_scope, d.p_value <= 0.1)
    with pytest.warns(UserWarning, match="classes have too few"):
        OpenSetClassifier(
            head="prototype", detector="max-cosine", target_fpr=0.01, calibration="mondrian"
        ).fit(X, y)
    with pytest.raises(ValidationError, match="calibration must be one of"):
        OpenSetClassifier(calibration="per-class").fit(X, y)


def test_fdr_rejects_the_benjamini_hochberg_set():
    X, y, novel = blobs()
    clf = OpenSetClassifier(head="prototype", detector="max-cosine", target_fpr=0.05).fit(X, y)
    batch = np.vstack([X[::4], novel[:50]])
    d = clf.predict_details(batch, fdr=0.1)
    p = d.p_value
    m = len(p)
    s = np.sort(p)
    k = np.flatnonzero(s <= 0.1 * np.arange(1, m + 1) / m)
    cut = s[k[-1]] if k.size else -1
    np.testing.assert_array_equal(d.out_of_scope, p <= cut)
    assert (d.labels[d.out_of_scope] == "oos").all()
    with pytest.raises(ValidationError, match="fdr"):
        clf.predict_details(batch, fdr=1.5)


def test_prediction_sets_cover_fresh_rows():
    X, y, _ = blobs(n_per=300, spread=2.6)  # overlapping classes: sets of several labels
    Xt, yt, _ = blobs(seed=0, n_per=300, spread=2.6, fresh=1)
    clf = OpenSetClassifier(head="linear", detector="energy", target_fpr=0.05).fit(X, y)
    d = clf.predict_details(Xt[1::2], sets=0.9)
    covered = np.array([lab in s for lab, s in zip(yt[1::2], d.prediction_sets, strict=True)])
    assert 0.85 <= covered.mean() <= 0.97, covered.mean()
    assert d.set_size.mean() > 1.0
    assert d.columns()["prediction_set"][0] == "|".join(d.prediction_sets[0])
    again = clf.predict_details(Xt[1::2][:10], sets=0.9)
    assert again.prediction_sets == d.prediction_sets[:10]  # per row, not per batch
    with pytest.raises(ValidationError, match="sets"):
        clf.predict_details(Xt[:3], sets=90)


def test_class_changes_keep_the_calibration_exchangeable():
    X, y, _novel = blobs(k=8, n_per=120)
    old = np.isin(y, [f"c{i}" for i in range(6)])
    for head, detector in [("prototype", "max-cosine"), ("linear", "energy"), ("linear", "knn")]:
        clf = OpenSetClassifier(head=head, detector=detector, target_fpr=0.05).fit(X[old], y[old])
        grown = clf.add_classes(X[~old], y[~old])
        rows, labels, held, _ = grown.kept_rows()
        np.testing.assert_allclose(
            grown.calibration_scores_, grown.detector_.decision_function(rows[held]), rtol=1e-5
        )
        assert grown.set_scores_.shape == (held.sum(),)
        assert grown.threshold_ == conformal_threshold(grown.calibration_scores_, 0.05)
        shrunk = grown.remove_classes(["c0"])
        rows, labels, held, _ = shrunk.kept_rows()
        assert (labels != "c0").all() and len(shrunk.calibration_scores_) == held.sum()
        np.testing.assert_allclose(
            shrunk.calibration_scores_, shrunk.detector_.decision_function(rows[held]), rtol=1e-5
        )


def test_calibrate_on_new_rows_and_refusals():
    X, y, _novel = blobs()
    Xv, yv, _ = blobs(seed=0, n_per=60, fresh=1)
    clf = OpenSetClassifier(head="prototype", detector="max-cosine", target_fpr=0.05).fit(X, y)
    clf.calibrate(Xv, yv)
    assert len(clf.calibration_scores_) == len(Xv) and clf.set_scores_.shape == (len(Xv),)
    clf.calibrate(Xv, target_fpr=0.1)
    assert clf.set_scores_ is None
    with pytest.raises(ValidationError, match="no labelled calibration rows"):
        clf.predict_details(Xv[:2], sets=0.9)
    with pytest.raises(ValidationError, match="one class"):
        clf.calibrate(Xv[yv == "c0"], yv[yv == "c0"])
    with pytest.raises(ValidationError, match="NaN"):
        clf.calibrate(np.full((3, X.shape[1]), np.nan, np.float32))
    with pytest.raises(ValidationError, match=r"\(0, 1\)"):
        OpenSetClassifier(target_fpr=0).fit(X, y)


def test_zero_shot_calibration_is_conformal():
    X, y, novel = blobs(n_per=100)
    names = np.unique(y)
    V = np.vstack([X[y == c].mean(0) for c in names])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning about too few rows at construction
        zs = OpenSetClassifier.from_prototypes(V, names, target_fpr=0.05)
    assert not zs.predict_details(novel).out_of_scope.any()
    zs.calibrate(X[::2])
    assert zs.threshold_ == conformal_threshold(zs.detector_.decision_function(X[::2]), 0.05)
    d = zs.predict_details(np.vstack([X[1::2], novel]))
    np.testing.assert_array_equal(d.out_of_scope, d.p_value <= 0.05)
    assert d.out_of_scope[: len(X[1::2])].mean() < 0.1


def test_pickle_keeps_the_calibration():
    X, y, novel = blobs()
    clf = OpenSetClassifier(head="linear", detector="energy", target_fpr=0.05).fit(X, y)
    again = pickle.loads(pickle.dumps(clf))
    a = clf.predict_details(novel, sets=0.8)
    b = again.predict_details(novel, sets=0.8)
    np.testing.assert_array_equal(a.p_value, b.p_value)
    assert a.prediction_sets == b.prediction_sets


def test_bundle_state_keeps_the_calibration_not_the_rows():
    """What a bundle stores of the calibration: scores, groups, set scores, the method and
    the calibration head — arrays and JSON, the same answers after a round trip."""
    from embedlab.models.multilabel import MultiLabelClassifier
    from embedlab.store.bundle import estimator_from_state, estimator_to_state

    X, y, novel = blobs()
    clf = OpenSetClassifier(
        head="linear", detector="knn", target_fpr=0.05, calibration="mondrian", keep_rows=False
    ).fit(X, y)
    arrays: dict = {}
    state = estimator_to_state(clf, "classifier", arrays)
    attrs = state["attributes"]
    assert attrs["calibration_method_"] == "split-conformal"
    for name in ("calibration_scores_", "calibration_groups_", "set_scores_"):
        assert "__array__" in attrs[name]
    assert "__estimator__" in attrs["calibration_head_"]
    assert not any(v.shape == X.shape for v in arrays.values())  # no rows kept
    again = estimator_from_state(state, arrays)
    a, b = clf.predict_details(novel, sets=0.9), again.predict_details(novel, sets=0.9)
    np.testing.assert_array_equal(a.p_value, b.p_value)
    np.testing.assert_array_equal(a.out_of_scope, b.out_of_scope)
    assert a.prediction_sets == b.prediction_sets
    Y = np.stack([y == "c0", y == "c1", (y == "c2") | (y == "c0")], axis=1)
    ml = MultiLabelClassifier(head="linear", keep_rows=False).fit(X, Y)
    arrays = {}
    ml_again = estimator_from_state(estimator_to_state(ml, "classifier", arrays), arrays)
    np.testing.assert_array_equal(ml.p_value(novel), ml_again.p_value(novel))


@pytest.mark.slow
def test_a_closed_set_model_rejects_nothing_and_saves_as_strict_json(st_encoder_uncached, tmp_path):
    import json

    from embedlab.models.pipeline import Pipeline

    words = ["alarm", "weather", "music", "timer"]
    texts = [f"{w} request number {i}" for w in words for i in range(12)]
    labels = [w for w in words for _ in range(12)]
    clf = OpenSetClassifier(head="prototype", detector="max-cosine")  # target_fpr="auto"
    pipe = Pipeline(st_encoder_uncached, clf, adapt=False).fit(texts, labels)
    assert pipe.classifier_.rate() is None and pipe.classifier_.threshold_ == float("inf")
    d = pipe.predict_details(["something else entirely", *texts[:3]])
    assert not d.out_of_scope.any() and ((d.p_value > 0) & (d.p_value <= 1)).all()
    pipe.save(tmp_path / "m")

    def refuse(constant):  # Infinity / NaN are not JSON
        raise ValueError(constant)

    json.loads((tmp_path / "m" / "bundle.json").read_text(), parse_constant=refuse)
    again = Pipeline.load(tmp_path / "m")
    assert again.classifier_.threshold_ == float("inf") and again.classifier_.rate() is None
    assert again.info["threshold"] is None
    # a rate given later turns rejection on, as the README says
    X = st_encoder_uncached.encode(texts[::4])
    again.classifier_.calibrate(X, target_fpr=0.25)
    assert again.classifier_.rate() == 0.25 and again.classifier_.threshold_ < float("inf")
