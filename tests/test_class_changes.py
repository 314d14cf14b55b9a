"""Issue 13: adding and removing classes without refitting — closed-form head updates equal
a fit on the new class set, TEEN for few-shot classes, threshold recalibration, lineage,
bad input, and the CLI."""

from __future__ import annotations

import json
import logging
import pickle

import numpy as np
import pytest
from sklearn.base import clone
from typer.testing import CliRunner

from embedlab.core.errors import ValidationError
from embedlab.heads import GaussianClassifier, PrototypeClassifier
from embedlab.heads.teen import Teen, teen_shift
from embedlab.models.openset import OpenSetClassifier

OLD = ["c0", "c2", "c3", "c5", "c7"]


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    d, k, n = 16, 8, 20
    centers = rng.normal(size=(k, d))
    y = np.repeat([f"c{i}" for i in range(k)], n).astype(object)
    X = (centers[np.repeat(np.arange(k), n)] + 0.5 * rng.normal(size=(k * n, d))).astype(np.float32)
    perm = rng.permutation(len(y))
    return X[perm], y[perm]


HEADS = [
    PrototypeClassifier(),
    PrototypeClassifier(n_prototypes=3),
    GaussianClassifier(),
    GaussianClassifier(shrinkage="oas"),
    GaussianClassifier(shrinkage=0.3),
    GaussianClassifier(covariance="diagonal"),
]
FITTED = ("prototypes_", "prototype_class_", "means_", "precision_", "variances_", "class_counts_")


def _same_head(a, b):
    assert [str(c) for c in a.classes_] == [str(c) for c in b.classes_]
    for name in FITTED:
        if hasattr(b, name):
            np.testing.assert_allclose(
                getattr(a, name), getattr(b, name), rtol=1e-4, atol=1e-5, err_msg=name
            )
    if hasattr(b, "shrinkage_"):
        assert a.shrinkage_ == pytest.approx(b.shrinkage_, rel=1e-6)


@pytest.mark.parametrize("head", HEADS, ids=lambda h: repr(h))
def test_incremental_head_equals_a_fit_on_the_union(blobs, head):
    X, y = blobs
    old = np.isin(y, OLD)
    full = clone(head).fit(X, y)
    # two steps: the classes arrive in two batches
    step = np.isin(y, ["c1", "c4"])
    inc = clone(head).fit(X[old], y[old]).add_classes(X[step], y[step])
    inc = inc.add_classes(X[~old & ~step], y[~old & ~step])
    _same_head(inc, full)
    np.testing.assert_allclose(inc.predict_proba(X), full.predict_proba(X), atol=1e-5)


@pytest.mark.parametrize("head", HEADS, ids=lambda h: repr(h))
def test_removing_classes_equals_a_fit_without_them(blobs, head):
    X, y = blobs
    old = np.isin(y, OLD)
    removed = clone(head).fit(X, y).remove_classes(["c1", "c4", "c6"], X[~old], y[~old])
    _same_head(removed, clone(head).fit(X[old], y[old]))


def test_head_bad_input(blobs):
    X, y = blobs
    head = GaussianClassifier().fit(X, y)
    with pytest.raises(ValidationError, match="classes of this model already"):
        head.add_classes(X[:3], ["c1", "c1", "new"])
    with pytest.raises(ValidationError, match="not classes"):
        head.remove_classes(["nope"], X[:1], ["nope"])
    with pytest.raises(ValidationError, match="at least 2"):
        head.remove_classes([f"c{i}" for i in range(7)], X, y)
    with pytest.raises(ValidationError, match="training rows"):
        head.remove_classes(["c1"])
    with pytest.raises(ValidationError, match="dimension|features"):
        head.add_classes(X[:3, :4], ["x", "x", "x"])


def test_teen_moves_few_shot_means_toward_similar_classes():
    base = np.eye(3, dtype=np.float32)
    new = np.array([[0.9, 0.1, 0.0]], dtype=np.float32)
    moved = teen_shift(new, base, Teen(alpha=0.5, tau=16))
    assert np.linalg.norm(moved[0] - base[0]) < np.linalg.norm(new[0] - base[0])
    assert np.allclose(teen_shift(new, base, Teen(alpha=1.0)), new)
    with pytest.raises(ValidationError):
        Teen(alpha=1.5)


def test_teen_auto_shifts_only_few_shot_classes(blobs):
    X, y = blobs
    old = np.isin(y, OLD)
    few = (y == "c1") & (np.cumsum(y == "c1") <= 3)
    many = y == "c4"
    rows = few | many
    head = PrototypeClassifier().fit(X[old], y[old])
    teen = head.add_classes(X[rows], y[rows], teen=Teen())
    plain = head.add_classes(X[rows], y[rows])
    assert teen.teen_classes_.tolist() == ["c1"]
    c1, c4 = list(teen.classes_).index("c1"), list(teen.classes_).index("c4")
    assert not np.allclose(teen.prototypes_[c1], plain.prototypes_[c1])
    np.testing.assert_allclose(teen.prototypes_[c4], plain.prototypes_[c4])
    # removal keeps the record consistent
    assert teen.remove_classes(["c1"]).teen_classes_.tolist() == []


@pytest.mark.parametrize("head", ["prototype", "gaussian", "linear"])
def test_openset_add_then_remove(blobs, head):
    X, y = blobs
    old = np.isin(y, OLD)
    clf = OpenSetClassifier(head=head, detector="mahalanobis", target_fpr=0.02).fit(X[old], y[old])
    before = pickle.dumps(clf)
    grown = clf.add_classes(X[~old], y[~old], teen=False)
    assert pickle.dumps(clf) == before, "add_classes must not change the model it starts from"
    full = OpenSetClassifier(head=head, detector="mahalanobis", target_fpr=0.02).fit(X, y)
    assert list(grown.classes_) == list(full.classes_)
    assert grown.update_["head_update"] == (
        "new classes' weights fitted, known ones kept" if head == "linear" else "closed form"
    )
    if head != "linear":
        np.testing.assert_allclose(grown.predict_proba(X), full.predict_proba(X), atol=1e-5)
    assert (grown.predict(X, reject=False) == full.predict(X, reject=False)).mean() > 0.99
    assert grown.train_X_.shape == X.shape
    # the threshold still holds the in-scope rejection target on its calibration scores
    scores = grown.detector_.calibration_scores_
    assert (scores > grown.threshold_).mean() <= grown.target_fpr + 1e-9
    shrunk = grown.remove_classes(["c1", "c4", "c6"])
    assert set(map(str, shrunk.classes_)) == set(OLD)
    assert not np.isin(shrunk.predict(X), ["c1", "c4", "c6"]).any()
    assert shrunk.train_X_.shape[0] == old.sum()
    again = pickle.loads(pickle.dumps(shrunk))
    np.testing.assert_array_equal(again.predict(X), shrunk.predict(X))


def test_linear_head_adds_classes_against_its_known_ones(blobs):
    from embedlab.heads import LinearClassifier

    X, y = blobs
    old = np.isin(y, OLD)
    head = LinearClassifier().fit(X[old], y[old])
    grown = head.add_classes(X[~old], y[~old], X_old=X[old])
    assert list(grown.classes_) == sorted(set(y))
    # the known classes' weights are kept as they were
    for c in OLD:
        i, j = list(head.classes_).index(c), list(grown.classes_).index(c)
        np.testing.assert_array_equal(grown.coef_[j], head.coef_[i])
    full = LinearClassifier().fit(X, y)
    assert (grown.predict(X) == y).mean() >= (full.predict(X) == y).mean() - 0.02
    assert (grown.remove_classes(["c1"]).predict(X) != "c1").all()
    with pytest.raises(ValidationError, match="X_old"):
        head.add_classes(X[~old], y[~old])
    # few-shot classes: weight vectors scaled to the known classes' mean norm
    few = (y == "c1") & (np.cumsum(y == "c1") <= 3)
    aligned = head.add_classes(X[few], y[few], X_old=X[old], teen=Teen())
    plain = head.add_classes(X[few], y[few], X_old=X[old])
    i = list(aligned.classes_).index("c1")
    target = np.linalg.norm(head.coef_, axis=1).mean()
    assert np.linalg.norm(aligned.coef_[i]) == pytest.approx(target, rel=1e-5)
    assert np.linalg.norm(plain.coef_[i]) < target
    assert aligned.teen_classes_.tolist() == ["c1"] and plain.teen_classes_.tolist() == []


@pytest.mark.parametrize("detector", ["energy", "max-prob"])
def test_head_based_detectors_update_in_place(blobs, detector):
    X, y = blobs
    old = np.isin(y, OLD)
    clf = OpenSetClassifier(head="linear", detector=detector, target_fpr=0.02).fit(X[old], y[old])
    assert clf.train_held_.any() and clf.calibration_method_ == "split-conformal"
    # the calibration head is the detector's own (same configuration, same rows): one fit
    assert clf.calibration_head_ is clf.detector_.head_
    grown = clf.add_classes(X[~old], y[~old])
    assert grown.update_["detector_update"] == "updated in place"
    assert list(grown.detector_.head_.classes_) == list(grown.classes_)
    assert grown.calibration_head_ is grown.detector_.head_
    # the deployed detector never saw the held-out rows: equal to one fitted without them
    rows, _labels, held, _ = grown.kept_rows()
    scores = grown.calibration_scores_
    assert len(scores) == held.sum()
    np.testing.assert_allclose(scores, grown.detector_.decision_function(rows[held]), rtol=1e-5)
    k = int(np.ceil((len(scores) + 1) * (1 - grown.target_fpr)))
    assert grown.threshold_ == (np.sort(scores)[k - 1] if k <= len(scores) else np.inf)
    shrunk = grown.remove_classes(["c1", "c4"])
    assert shrunk.update_["detector_update"] == "updated in place"
    assert len(shrunk.calibration_scores_) == shrunk.train_held_.sum()
    again = pickle.loads(pickle.dumps(shrunk))
    np.testing.assert_array_equal(again.predict(X), shrunk.predict(X))


def test_openset_add_is_deterministic_and_keeps_held_out_rows(blobs):
    X, y = blobs
    old = np.isin(y, OLD)
    held = np.zeros(len(y), dtype=bool)
    held[::5] = True
    clf = OpenSetClassifier(head="prototype", detector="max-cosine").fit(
        X[old], y[old], calibration_mask=held[old]
    )
    a = clf.add_classes(X[~old], y[~old])
    b = clf.add_classes(X[~old], y[~old])
    assert a.threshold_ == b.threshold_
    np.testing.assert_array_equal(a.train_held_, b.train_held_)
    # the same share of each added class as of the known ones is held out to recalibrate on
    new_held = a.train_held_[len(clf.train_held_) :]
    assert new_held.mean() == pytest.approx(clf.train_held_.mean(), abs=0.03)


def test_openset_bad_input(blobs, caplog):
    X, y = blobs
    clf = OpenSetClassifier(head="prototype", detector="max-cosine").fit(X, y)
    with pytest.raises(ValidationError, match="classes of this model already"):
        clf.add_classes(X[:2], ["c1", "c1"])
    with pytest.raises(ValidationError, match="no class to add"):
        clf.add_classes(X[:2], ["oos", "oos"])
    with pytest.raises(ValidationError, match="not classes of this model"):
        clf.remove_classes(["zzz"])
    with pytest.raises(ValidationError, match="would leave 1"):
        clf.remove_classes([f"c{i}" for i in range(1, 8)])
    with pytest.raises(ValidationError, match="at least one"):
        clf.remove_classes([])
    with caplog.at_level(logging.WARNING, logger="embedlab"):
        one = clf.add_classes(X[:1], ["solo"])
    assert "single example" in caplog.text and "solo" in one.classes_
    frugal = OpenSetClassifier(head="prototype", detector="max-cosine", keep_rows=False).fit(X, y)
    assert not hasattr(frugal, "train_X_")
    with pytest.raises(ValidationError, match="keep_rows=False"):
        frugal.add_classes(X[:2], ["a", "a"])
    with pytest.raises(ValidationError, match="teen must be"):
        clf.add_classes(X[:2], ["a", "a"], teen="maybe")


def test_oos_rows_given_to_add_classes_join_the_oos_examples(blobs):
    X, y = blobs
    old = np.isin(y, OLD)
    clf = OpenSetClassifier(head="prototype", detector="max-cosine").fit(X[old], y[old])
    labels = np.where(y[~old] == "c6", "oos", y[~old])
    grown = clf.add_classes(X[~old], labels)
    assert "c6" not in grown.classes_ and grown.n_oos_train_ == (y == "c6").sum()
    assert grown.update_["oos_rows"] == (y == "c6").sum()


# ---------------------------------------------------------------- pipeline and CLI


def _new_classes_csv(path):
    rows = [
        ("what is the wifi password", "wifi_password"),
        ("tell me the password for the wireless network", "wifi_password"),
        ("how do I get on the wifi here", "wifi_password"),
        ("what's the internet password", "wifi_password"),
        ("water the plants in the garden", "water_plants"),
        ("start the sprinklers", "water_plants"),
        ("turn on garden irrigation", "water_plants"),
        ("the lawn needs watering", "water_plants"),
    ]
    path.write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows))
    return path


def test_cli_add_and_remove_classes(quick_model, tmp_path):
    from embedlab.cli import app
    from embedlab.models.pipeline import Pipeline

    runner = CliRunner()
    data = _new_classes_csv(tmp_path / "new.csv")
    v2, v3 = tmp_path / "v2", tmp_path / "v3"
    res = runner.invoke(app, ["add-classes", str(quick_model), str(data), "-o", str(v2)])
    assert res.exit_code == 0, res.output
    assert "added 2 classes" in res.output and "version 2" in res.output
    assert "TEEN moved 2 few-shot classes" in res.output
    parent = Pipeline.load(quick_model)
    child = Pipeline.load(v2)
    assert set(child.classes_) == set(parent.classes_) | {"wifi_password", "water_plants"}
    lineage = child.info["lineage"]
    assert lineage["version"] == 2 and lineage["parent"] == parent.info["lineage"]["fingerprint"]
    assert lineage["history"][-1]["classes"] == ["water_plants", "wifi_password"]
    assert child.info["training"]["label_counts"]["wifi_password"] == 4
    pred = child.predict(["what is the password of the wifi", "switch on the sprinklers"])
    assert pred.tolist() == ["wifi_password", "water_plants"]

    res = runner.invoke(app, ["remove-classes", str(v2), "wifi_password", "-o", str(v3)])
    assert res.exit_code == 0, res.output
    grandchild = Pipeline.load(v3)
    assert "wifi_password" not in grandchild.classes_
    assert grandchild.info["lineage"]["version"] == 3
    assert grandchild.info["lineage"]["parent"] == lineage["fingerprint"]
    assert "wifi_password" not in grandchild.info["training"]["label_counts"]
    json.dumps(grandchild.info)  # stays plain JSON

    # bad input: clear one-line errors, nothing written
    res = runner.invoke(app, ["add-classes", str(v2), str(data), "-o", str(tmp_path / "x")])
    assert res.exit_code == 2 and "classes of this model already" in res.output
    res = runner.invoke(app, ["remove-classes", str(v2), "nope", "-o", str(tmp_path / "y")])
    assert res.exit_code == 2 and "not classes of this model" in res.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    res = runner.invoke(app, ["add-classes", str(v2), str(data), "-o", str(v2), "--force"])
    assert res.exit_code == 2
    res = runner.invoke(
        app, ["add-classes", str(v2), str(data), "-o", str(tmp_path / "t"), "--teen", "maybe"]
    )
    assert res.exit_code == 2 and "--teen must be auto, on or off" in res.output
    assert not (tmp_path / "t").exists()
