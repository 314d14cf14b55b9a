"""Issue 13: self-training on unlabelled rows — per-class quotas, junk kept out by the
detector, guesses never calibrate the threshold, determinism, the pipeline and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from embedlab.core.errors import ValidationError
from embedlab.heads import PrototypeClassifier
from embedlab.models.openset import OpenSetClassifier
from embedlab.models.self_training import (
    SelfTraining,
    pseudo_labels,
    self_train_head,
    self_train_openset,
)


def test_pseudo_labels_take_the_most_confident_rows_of_each_class():
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.2, 0.8], [0.45, 0.55], [0.6, 0.4]])
    rows, idx = pseudo_labels(proba, quota=2)
    assert rows.tolist() == [0, 1, 3, 4] and idx.tolist() == [0, 0, 1, 1]
    rows, _ = pseudo_labels(proba, quota=2, allowed=np.array([False, True, True, True, True, True]))
    assert rows.tolist() == [1, 2, 3, 4]
    rows, _ = pseudo_labels(proba, quota=5, min_prob=0.75)
    assert rows.tolist() == [0, 1, 3]
    with pytest.raises(ValidationError):
        SelfTraining(rounds=0)
    with pytest.raises(ValidationError):
        SelfTraining(share=0.0)


@pytest.fixture(scope="module")
def few_labels():
    rng = np.random.default_rng(0)
    k, d = 6, 16
    centres = rng.normal(size=(k, d)) * 0.9
    pool_y = np.repeat(np.arange(k), 40)
    pool = (centres[pool_y] + 0.6 * rng.normal(size=(len(pool_y), d))).astype(np.float32)
    # one labelled row per class, drawn from the noisy edge of its class
    lab_y = np.arange(k)
    lab = (centres + 0.9 * rng.normal(size=(k, d))).astype(np.float32)
    test_y = np.repeat(np.arange(k), 50)
    test = (centres[test_y] + 0.6 * rng.normal(size=(len(test_y), d))).astype(np.float32)
    junk = (rng.normal(size=(30, d)) * 0.05 + 8.0 * rng.normal(size=(1, d))).astype(np.float32)
    names = np.array([f"c{i}" for i in range(k)], dtype=object)
    return lab, names[lab_y], pool, junk, test, names[test_y]


def test_self_training_a_head_helps_when_labels_are_few(few_labels):
    lab, y, pool, _, test, y_test = few_labels
    base = PrototypeClassifier().fit(lab, y)
    tuned, report = self_train_head(PrototypeClassifier(), lab, y, pool, SelfTraining(rounds=2))
    assert (tuned.predict(test) == y_test).mean() > (base.predict(test) == y_test).mean() + 0.03
    assert [r["round"] for r in report["rounds"]] == [1, 2]
    assert report["rounds"][1]["pseudo_labelled"] > report["rounds"][0]["pseudo_labelled"]


def test_self_training_an_open_set_model_keeps_junk_out(few_labels):
    lab, y, pool, junk, test, y_test = few_labels
    X = np.vstack([lab, lab + 0.01])  # two rows per class so the detector can hold one out
    yy = np.r_[y, y]
    # 2 held-out rows: the smallest rate they can promise is 1/3
    clf = OpenSetClassifier(head="prototype", detector="max-cosine", target_fpr=0.34).fit(X, yy)
    mixed = np.vstack([pool, junk])
    tuned, report = self_train_openset(clf, X, yy, mixed)
    again, _ = self_train_openset(clf, X, yy, mixed)
    np.testing.assert_array_equal(tuned.predict(test), again.predict(test))
    # the detector and its threshold stay as they were calibrated on labelled rows
    assert tuned.threshold_ == clf.threshold_ and tuned.detector_ is not clf.detector_
    assert report["rejected_in_pool"] >= len(junk)
    # the guesses are kept rows but never held out to calibrate the threshold
    n = len(yy)
    assert not tuned.train_held_[n:].any()
    np.testing.assert_array_equal(tuned.train_held_[:n], clf.train_held_)
    kept = tuned.train_X_[n:]
    assert not any(np.isclose(kept, j).all(axis=1).any() for j in junk), "junk taken"
    assert (tuned.predict(test, reject=False) == y_test).mean() >= (
        clf.predict(test, reject=False) == y_test
    ).mean()


@pytest.mark.slow
def test_pipeline_and_cli_fit_with_an_unlabelled_pool(fake_encoder, tmp_path):
    from embedlab.models.pipeline import Pipeline

    texts = [f"alpha {i}" for i in range(6)] + [f"beta {i}" for i in range(6)]
    labels = ["a"] * 6 + ["b"] * 6
    pool = [f"gamma {i}" for i in range(20)]
    pipe = Pipeline(encoder=fake_encoder, adapt=False).fit(texts, labels, unlabeled=pool)
    st = pipe.info["self_training"]
    assert st["pool"] == 20 and len(st["rounds"]) == 2
    assert pipe.info["selection"] is not None  # the first fit's selection is kept

    from embedlab.cli import app
    from embedlab.data.datasets import demo_path

    pool_csv = tmp_path / "pool.csv"
    pool_csv.write_text("text\nwhat's the weather tomorrow\nplay some jazz\nbook a flight\n")
    res = CliRunner().invoke(
        app,
        [
            "fit",
            str(demo_path("train")),
            "-o",
            str(tmp_path / "m"),
            "--no-adapt",
            "--no-cache",
            "--unlabeled",
            str(pool_csv),
            "--head",
            "prototype",
            "--detector",
            "max-cosine",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "self-training on 3 unlabelled rows" in res.output


def test_automatic_selection_with_two_classes_and_no_oos_rows():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(20, 8)).astype(np.float32)
    y = np.array(["a"] * 10 + ["b"] * 10, dtype=object)
    X[y == "b"] += 3
    clf = OpenSetClassifier().fit(X, y)
    assert clf.selection_["note"].startswith("detector not scored")
    assert clf.predict(X[:1], reject=False)[0] == "a"
