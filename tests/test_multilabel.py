"""Multi-label classification: label-cell parsing, per-label thresholds with known answers,
metrics, the three heads, the pipeline, the CLI, and every bad input the issue lists."""

from __future__ import annotations

import json
import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, hamming_loss
from typer.testing import CliRunner

from embedlab.cli import app
from embedlab.core.errors import ValidationError
from embedlab.core.vectors import unit_rows
from embedlab.models.multilabel import (
    MultiLabelClassifier,
    evaluate_multilabel,
    label_indicator,
    parse_label_sets,
    per_label_thresholds,
)
from embedlab.models.multilabel_scores import fit_ovr_logistic
from embedlab.models.pipeline import Pipeline

runner = CliRunner()


# ---------------------------------------------------------------- label cells
def test_label_cells_parse_into_sets():
    sets = parse_label_sets(["a, b", "b", "oos", "", ["c", "a"], "a,a", ("b",)])
    assert sets == [("a", "b"), ("b",), (), (), ("c", "a"), ("a",), ("b",)]
    assert parse_label_sets(["x|y"], sep="|") == [("x", "y")]
    with pytest.raises(ValidationError, match="separator must not be empty"):
        parse_label_sets(["a"], sep="")


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        (["a,b", "a,,b"], "row 2: 'a,,b' has an empty label"),
        (["a,"], "row 1"),
        ([",a"], "row 1"),
        (["a", "oos,b"], "row 2: 'oos,b' puts 'oos' beside other labels"),
    ],
)
def test_bad_label_cells_name_the_row(cells, message):
    with pytest.raises(ValidationError, match=message):
        parse_label_sets(cells)


def test_unknown_label_names_label_and_row():
    with pytest.raises(ValidationError, match=r"'c' \(row 2\)"):
        label_indicator([("a",), ("c", "b")], ["a", "b"])
    Y = label_indicator([("a",), ("b", "a"), ()], ["a", "b"])
    assert Y.tolist() == [[True, False], [True, True], [False, False]]


# ---------------------------------------------------------------- thresholds
def test_f1_threshold_known_answer():
    s = np.array([[0.9], [0.8], [0.7], [0.6], [0.1]])
    y = np.array([[1], [0], [1], [1], [0]], dtype=bool)
    # F1 at cuts after 1..5 rows: .5, .4, .667, .857, .75 -> cut after the 4th
    t, ok = per_label_thresholds(s, y)
    assert ok[0] and t[0] == pytest.approx(0.35)


def test_target_precision_known_answer():
    s = np.array([[0.9], [0.8], [0.7], [0.6], [0.1]])
    y = np.array([[1], [0], [1], [1], [0]], dtype=bool)
    # precision at cuts: 1, .5, .667, .75, .6
    t, _ = per_label_thresholds(s, y, target_precision=0.7)
    assert t[0] == pytest.approx(0.35)  # most recall with precision >= .7
    t, _ = per_label_thresholds(s, y, target_precision=0.8)
    assert t[0] == pytest.approx(0.85)  # only the first row qualifies
    # identical rows, half labelled a and half b: every score ties, precision is 0.5 at best
    X = np.ones((20, 4), dtype=np.float32)
    with pytest.warns(UserWarning, match="cannot reach precision 0.9"):
        clf = MultiLabelClassifier(head="prototype", target_precision=0.9, cv=2)
        clf.fit(X, [("a",)] * 10 + [("b",)] * 10)
    assert not clf.threshold_reached_.any() and clf.predict(X).sum() == 0


def test_ties_are_not_split_and_empty_labels_never_fire():
    s = np.array([[0.5, 0.3], [0.5, 0.2], [0.1, 0.1]])
    y = np.array([[1, 0], [0, 0], [0, 0]], dtype=bool)
    t, ok = per_label_thresholds(s, y)
    assert t[0] == pytest.approx(0.3)  # the two 0.5s stay together: cut below them
    assert not ok[1] and np.isinf(t[1])  # no positive row: never predicted
    t, ok = per_label_thresholds(s, y, target_precision=0.9)
    assert not ok[0] and np.isinf(t[0])  # 1/2 at best: unreachable


def test_thresholds_on_random_scores_match_brute_force():
    rng = np.random.default_rng(0)
    s = rng.random((200, 4))
    y = rng.random((200, 4)) < s * 0.6
    t, _ = per_label_thresholds(s, y)
    for j in range(4):
        best = max(f1_score(y[:, j], s[:, j] >= c, zero_division=0) for c in s[:, j])
        assert f1_score(y[:, j], s[:, j] >= t[j]) == pytest.approx(best)


# ---------------------------------------------------------------- metrics
def test_metrics_known_answers():
    Yt = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0]], dtype=bool)
    Yp = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=bool)
    m = evaluate_multilabel(Yt, Yp, ["a", "b", "c"])
    assert m["subset_accuracy"] == pytest.approx(2 / 3)
    assert m["hamming_loss"] == pytest.approx(hamming_loss(Yt, Yp)) == pytest.approx(1 / 9)
    assert m["micro_f1"] == pytest.approx(f1_score(Yt, Yp, average="micro"))
    assert m["macro_f1"] == pytest.approx((1 + 1 + 0) / 3)
    assert m["label_cardinality_true"] == pytest.approx(1.0)
    assert m["label_cardinality_predicted"] == pytest.approx(2 / 3)
    assert m["no_label_predicted"] == pytest.approx(1 / 3)
    assert m["per_label"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


# ---------------------------------------------------------------- classifier
def _toy(n_per=40, noise=0.35, seed=0):
    """Three labels at three corners; some rows carry two labels (between two corners),
    some none (far away)."""
    rng = np.random.default_rng(seed)
    centres = np.eye(6, dtype=np.float32)[:3] * 3
    X, Y = [], []
    for j in range(3):
        X.append(centres[j] + noise * rng.standard_normal((n_per, 6)))
        Y += [(f"l{j}",)] * n_per
    for a, b in ((0, 1), (1, 2)):
        X.append((centres[a] + centres[b]) / 1.4 + noise * rng.standard_normal((n_per // 2, 6)))
        Y += [(f"l{a}", f"l{b}")] * (n_per // 2)
    X.append(np.eye(6, dtype=np.float32)[5] * 3 + noise * rng.standard_normal((n_per, 6)))
    Y += [()] * n_per
    return np.vstack(X).astype(np.float32), Y


@pytest.mark.parametrize("head", ["linear", "mlp", "prototype", "knn"])
def test_heads_learn_label_sets(head):
    X, Y = _toy()
    Xt, Yt = _toy(seed=1)
    clf = MultiLabelClassifier(head=head, hidden=32, epochs=200).fit(X, Y)
    assert clf.classes_.tolist() == ["l0", "l1", "l2"]
    assert clf.allow_empty_  # some training rows carry no label
    P = clf.predict(Xt)
    assert P.shape == (len(Xt), 3) and P.dtype == bool
    m = evaluate_multilabel(label_indicator(Yt, clf.classes_), P, clf.classes_)
    assert m["macro_f1"] > 0.9, m
    sets = clf.predict_label_sets(Xt)
    assert sets[0] == ("l0",) and sets[-1] == ()
    assert (clf.novelty_score(Xt[-5:]) > 0).all()  # none passes: out of scope
    proba = clf.predict_proba(Xt)
    assert proba.min() >= 0 and proba.max() <= 1


def test_auto_head_picks_by_out_of_fold_macro_f1():
    X, Y = _toy()
    clf = MultiLabelClassifier(hidden=16, epochs=50).fit(X, Y)
    assert set(clf.selection_) == {"linear", "mlp"}
    assert clf.head_ == max(clf.selection_, key=clf.selection_.get)
    assert clf.oof_metrics_["macro_f1"] == pytest.approx(clf.selection_[clf.head_], abs=1e-4)
    assert MultiLabelClassifier(head="knn").fit(X, Y).selection_ is None


def test_a_calibration_mask_calibrates_on_those_rows_alone_through_every_change():
    X, Y = _toy()
    held = np.zeros(len(X), dtype=bool)
    held[::3] = True  # the rows an adapted encoder never saw
    clf = MultiLabelClassifier(head="linear", threshold_strategy="per-label")
    plain = clone(clf).fit(X, Y)
    masked = clone(clf).fit(X, Y, calibration_mask=held)
    # the scorers learn from every row either way; thresholds and p-values from held rows
    np.testing.assert_allclose(masked.params_["coef"], plain.params_["coef"], atol=1e-6)
    assert len(masked.calibration_Y_) == -(-held.sum() // 3)  # the first of 3 folds of them
    assert "held out of encoder adaptation" in masked.calibration_method_
    assert masked.train_held_.tolist() == held.tolist() and plain.train_held_ is None
    # moving the rows that only train leaves the calibration rows' out-of-fold folds alone
    Yb = label_indicator(Y, masked.classes_)
    scores = masked._oof_scores(
        "linear", unit_rows(X)[held], Yb[held], (unit_rows(X)[~held], Yb[~held])
    )[0]
    again = masked._thresholds(scores, Yb[held], masked.allow_empty_, "per-label")[0]
    np.testing.assert_allclose(masked.thresholds_, again, atol=1e-6)
    grown = masked.add_classes(X[:6] + 0.01, [("new",)] * 6)
    assert grown.train_held_.tolist() == [*held.tolist(), *[True] * 6]  # added rows: unseen
    assert grown.remove_classes(["new"]).train_held_.tolist() == grown.train_held_.tolist()
    guessed = masked.with_guesses(X[:4], label_indicator(Y[:4], masked.classes_))
    assert guessed.train_held_.tolist() == [*held.tolist(), *[False] * 4]  # guesses: never
    with pytest.raises(ValidationError, match="calibration_mask has shape"):
        clone(clf).fit(X, Y, calibration_mask=held[:-1])
    with pytest.raises(ValidationError, match="too few for 3-fold"):
        clone(clf).fit(X, Y, calibration_mask=np.arange(len(X)) < 2)


def test_no_empty_answer_when_every_training_row_has_a_label():
    X, Y = _toy()
    keep = [i for i, s in enumerate(Y) if s]
    clf = MultiLabelClassifier(head="prototype").fit(X[keep], [Y[i] for i in keep])
    assert not clf.allow_empty_
    far = np.full((3, 6), -5.0, dtype=np.float32)
    assert clf.predict(far).sum(1).tolist() == [1, 1, 1]  # the best label, not nothing
    forced = MultiLabelClassifier(head="prototype", allow_empty=True).fit(
        X[keep], [Y[i] for i in keep]
    )
    assert forced.predict(far).sum() == 0


def test_linear_scores_equal_sklearn_logistic_regression_per_label():
    X, Y = _toy()
    Z = unit_rows(X)
    Yb = label_indicator(Y, ["l0", "l1", "l2"])
    params = fit_ovr_logistic(Z, Yb, C=2.0)
    for j in range(3):
        lr = LogisticRegression(C=2.0, tol=1e-8, max_iter=5000).fit(Z, Yb[:, j])
        ours = Z @ params["coef"][j] + params["intercept"][j]
        np.testing.assert_allclose(ours, lr.decision_function(Z), atol=0.02)
        np.testing.assert_allclose(params["coef"][j], lr.coef_[0], atol=0.01)


def test_fit_is_deterministic_picklable_and_clonable():
    X, Y = _toy()
    a = MultiLabelClassifier(random_state=4).fit(X, Y)
    b = MultiLabelClassifier(random_state=4).fit(X, Y)
    np.testing.assert_array_equal(a.thresholds_, b.thresholds_)
    np.testing.assert_array_equal(a.params_["coef"], b.params_["coef"])
    c = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(c.predict(X), a.predict(X))
    assert clone(a).get_params() == a.get_params()


def test_a_fold_without_a_label_does_not_break_the_fit():
    X, Y = _toy()
    Y = list(Y)
    Y[0], Y[1] = ("l0", "rare"), ("l0", "rare")  # 2 rows: some folds train without it
    for head in ("linear", "mlp", "prototype", "knn"):
        clf = MultiLabelClassifier(head=head, cv=5, hidden=8, epochs=2).fit(X, Y)
        assert "rare" in clf.classes_.tolist()


def test_mlp_is_seeded_and_leaves_torch_global_random_state_alone():
    import torch

    X, Y = _toy()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = MultiLabelClassifier(head="mlp", hidden=16, epochs=5, random_state=1).fit(X, Y)
    assert torch.equal(torch.get_rng_state(), before)
    b = MultiLabelClassifier(head="mlp", hidden=16, epochs=5, random_state=1).fit(X, Y)
    for key in ("w1", "b1", "w2", "b2"):
        np.testing.assert_array_equal(a.params_[key], b.params_[key])
    c = MultiLabelClassifier(head="mlp", hidden=16, epochs=5, random_state=2).fit(X, Y)
    assert not np.array_equal(a.params_["w1"], c.params_["w1"])


def test_indicator_matrix_targets():
    X, Y = _toy()
    Yb = label_indicator(Y, ["l0", "l1", "l2"]).astype(int)
    clf = MultiLabelClassifier(head="prototype").fit(X, Yb)
    assert clf.classes_.tolist() == ["0", "1", "2"]
    with pytest.raises(ValidationError, match="0 / 1"):
        MultiLabelClassifier().fit(X, Yb * 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"head": "gaussian"}, "multi-label head must be one of"),
        ({"target_precision": 1.5}, "target_precision"),
        ({"cv": 1}, "cv must be at least 2"),
        ({"allow_empty": "maybe"}, "allow_empty"),
    ],
)
def test_bad_parameters(kwargs, message):
    X, Y = _toy()
    with pytest.raises(ValidationError, match=message):
        MultiLabelClassifier(**kwargs).fit(X, Y)


def test_a_label_with_one_row_is_an_error():
    X, Y = _toy()
    Y = list(Y)
    Y[0] = ("l0", "rare")
    with pytest.raises(ValidationError, match=r"fewer than 2 rows: \['rare'\]"):
        MultiLabelClassifier().fit(X, Y)


# ---------------------------------------------------------------- pipeline and CLI
TEXTS = [
    "I want my money back",
    "refund me please",
    "my parcel is late",
    "the delivery has not arrived",
    "late again and I want a refund",
    "the box came a week late, refund it",
    "hello there",
    "what a nice day",
]
LABELS = ["refund", "refund", "late", "late", "refund,late", "late,refund", "oos", "oos"]


def _write_csv(path, texts, labels):
    import csv

    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows(zip(texts, labels, strict=True))
    return path


def test_pipeline_fit_predict_evaluate_save_load(st_encoder_uncached, tmp_path):
    pipe = Pipeline(st_encoder_uncached, MultiLabelClassifier(cv=2), adapt=False)
    pipe.fit(TEXTS * 3, LABELS * 3)
    assert pipe.multi_label and pipe.info["training"]["n_multi_label"] == 6
    pred = pipe.predict(["give me a refund", "nice weather today"])
    assert all(isinstance(p, tuple) for p in pred)
    d = pipe.predict_details(["give me a refund"])
    assert list(d.columns())[:5] == ["label", "n_labels", "confidence", "novelty", "out_of_scope"]
    assert {"top1_label", "top1_confidence"} <= set(d.columns())
    assert d.n_labels[0] == len(d.label_sets[0]) and d.to_rows()[0]["labels"] == list(
        d.label_sets[0]
    )
    m = pipe.evaluate(TEXTS * 3, LABELS * 3)
    for key in ("micro_f1", "macro_f1", "subset_accuracy", "hamming_loss", "per_label"):
        assert key in m
    assert set(m["per_label"]) == {"late", "refund"}
    pipe.save(tmp_path / "m")
    back = Pipeline.load(tmp_path / "m")
    assert back.multi_label
    assert (
        back.predict_details(TEXTS).labels.tolist() == pipe.predict_details(TEXTS).labels.tolist()
    )
    v2 = back.add_classes(["where is my invoice", "send me the invoice"] * 2, ["invoice"] * 4)
    assert "invoice" in v2.classes_ and v2.info["lineage"]["version"] == 2
    assert v2.info["thresholds"].keys() == {"invoice", "late", "refund"}
    assert v2.remove_classes(["invoice"]).classes_.tolist() == ["late", "refund"]
    found = back.discover(TEXTS * 3, all_rows=True, min_size=2)
    assert found.n_input == 24
    pool = ["is the refund on its way", "my order is very late", "good morning"] * 4
    st = Pipeline(st_encoder_uncached, MultiLabelClassifier(cv=2, head="linear"), adapt=False)
    st.fit(TEXTS * 3, LABELS * 3, unlabeled=pool)
    report = st.info["self_training"]
    assert report["pool"] == 12 and len(report["rounds"]) == 2
    assert len(st.classifier_.train_X_) == 24 + report["rounds"][-1]["pseudo_labelled"]


def test_single_label_data_for_a_multi_label_model_and_the_reverse(st_encoder_uncached):
    pipe = Pipeline(st_encoder_uncached, MultiLabelClassifier(cv=2), adapt=False)
    pipe.fit(TEXTS * 3, LABELS * 3)
    single = ["refund", "refund", "late", "late", "refund", "late", "oos", "oos"] * 3
    with pytest.raises(ValidationError, match="no row of this data holds more than one label"):
        pipe.evaluate(TEXTS * 3, single)
    with pytest.raises(ValidationError, match=r"'refund;late' \(row 5\)"):
        pipe.evaluate(TEXTS, [c.replace(",", ";") for c in LABELS])
    from embedlab.models.openset import OpenSetClassifier

    flat = Pipeline(st_encoder_uncached, adapt=False)
    flat.set_params(classifier=OpenSetClassifier(head="prototype", detector="max-cosine"))
    flat.fit(TEXTS * 3, single)
    with pytest.raises(ValidationError, match="this is multi-label data"):
        flat.evaluate(TEXTS, LABELS)


@pytest.mark.slow
def test_cli_multi_label_fit_predict_evaluate_report(tmp_path):
    data = _write_csv(tmp_path / "train.csv", TEXTS * 3, LABELS * 3)
    model = tmp_path / "m"
    res = runner.invoke(
        app,
        [
            "fit",
            str(data),
            "--multi-label",
            "-o",
            str(model),
            "--no-cache",
            "--head",
            "knn",
            "--no-adapt",
        ],  # adaptation itself: tests/test_adapt.py
    )
    assert res.exit_code == 0, res.output
    assert "multi-label, 2 labels from 24 rows (6 with several labels, 6 with none)" in res.output
    out = tmp_path / "p.csv"
    res = runner.invoke(app, ["predict", str(model), str(data), "-o", str(out), "--no-cache"])
    assert res.exit_code == 0, res.output
    assert "n_labels" in out.read_text().splitlines()[0]
    res = runner.invoke(app, ["evaluate", str(model), str(data), "--json", "--no-cache"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)
    assert {"micro_f1", "macro_f1", "subset_accuracy", "hamming_loss"} <= set(m)
    assert m["per_label"]["refund"]["threshold"] is not None
    res = runner.invoke(app, ["evaluate", str(model), str(data), "--no-cache"])
    assert res.exit_code == 0 and "per label" in res.output
    html = tmp_path / "r.html"
    res = runner.invoke(app, ["report", str(model), str(data), "-o", str(html)])
    assert res.exit_code == 0, res.output
    text = html.read_text()
    assert "Per label" in text and "threshold" in text and "F1 per label" in text
    # class changes through the command line, as for single-label models
    extra = _write_csv(
        tmp_path / "new.csv",
        ["where is my invoice", "send me the invoice", "invoice for my refund please"] * 2,
        ["invoice", "invoice", "invoice,refund"] * 2,
    )
    res = runner.invoke(app, ["add-classes", str(model), str(extra), "-o", str(tmp_path / "m2")])
    assert res.exit_code == 0, res.output
    assert "added 1 class (invoice; 6 rows), now 3 classes" in " ".join(res.output.split())
    res = runner.invoke(app, ["remove-classes", str(tmp_path / "m2"), "late", "--in-place"])
    assert res.exit_code == 0, res.output
    assert Pipeline.load(tmp_path / "m2").classes_.tolist() == ["invoice", "refund"]
    res = runner.invoke(
        app,
        ["discover", str(model), str(data), "-o", str(tmp_path / "d"), "--all", "--min-size", "2"],
    )
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--multi-label", "--head", "gaussian"], "has no multi-label form"),
        (["--target-precision", "0.9"], "--target-precision goes with --multi-label"),
    ],
)
def test_cli_multi_label_bad_options(tmp_path, extra, message):
    data = _write_csv(tmp_path / "train.csv", TEXTS * 3, LABELS * 3)
    res = runner.invoke(app, ["fit", str(data), "-o", str(tmp_path / "m"), "--no-cache", *extra])
    assert res.exit_code != 0
    assert message in " ".join(res.output.split())
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_cli_empty_label_between_separators_names_the_row(tmp_path):
    data = _write_csv(tmp_path / "train.csv", TEXTS, [*LABELS[:4], "refund,,late", *LABELS[5:]])
    res = runner.invoke(app, ["fit", str(data), "--multi-label", "-o", str(tmp_path / "m")])
    assert res.exit_code != 0
    assert "row 5" in res.output and "empty label" in res.output


def test_warning_free_fit_on_separable_data():
    X, Y = _toy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MultiLabelClassifier(head="linear").fit(X, Y)


@pytest.mark.parametrize(
    "structure, asked, says",
    [
        ("multi-label", {"hierarchy": True}, "--hierarchy works with single-label models only"),
        ("multi-label", {"validation": True}, "--val works with single-label models only"),
        ("multi-label", {"head": "qda"}, "--head 'qda' has no multi-label form"),
        ("single-label", {"target_precision": 0.9}, "--target-precision goes with"),
        ("zero-shot", {"transform": True, "adapt": True}, "takes no --transform or --adapt"),
        ("single-label", {"time_budget": 0.0}, "--time-budget must be more than 0"),
    ],
)
def test_fit_mode_rules_live_in_one_place(structure, asked, says):
    """The command line and the Pipeline check the same rules (fit_options), each naming
    the options in its own words."""
    from embedlab.models.fit_options import CLI_NAMES, LIBRARY_NAMES, check_fit_options

    with pytest.raises(ValidationError, match=says):
        check_fit_options(structure, CLI_NAMES, **asked)
    library = says.replace("--val", "validation=").replace("--hierarchy", "hierarchy=")
    if "--" not in library:
        with pytest.raises(ValidationError, match=library):
            check_fit_options(structure, LIBRARY_NAMES, **asked)


# ---------------------------------------------------------------- class-set changes
def _toy_with_l3(seed=0, n=20):
    """Rows of a fourth label l3 at a corner of its own, some also carrying l0."""
    rng = np.random.default_rng(seed)
    corner = np.eye(6, dtype=np.float32)[3] * 3
    both = (corner + np.eye(6, dtype=np.float32)[0] * 3) / 1.4
    X = np.vstack(
        [corner + 0.35 * rng.standard_normal((n, 6)), both + 0.35 * rng.standard_normal((n, 6))]
    ).astype(np.float32)
    return X, ["l3"] * n + ["l0,l3"] * n


@pytest.mark.parametrize("head", ["linear", "prototype"])
def test_added_labels_leave_known_ones_exactly_and_equal_a_refit_for_themselves(head):
    X, Y = _toy()
    # per-label thresholds: a refit gives the new label the same one (with "shrunk" or
    # "global" it takes the model's own global threshold: test_threshold_strategies)
    clf = MultiLabelClassifier(head=head, threshold_strategy="per-label").fit(X, Y)
    X3, Y3 = _toy_with_l3()
    new = clf.add_classes(X3, Y3)
    assert new.classes_.tolist() == ["l0", "l1", "l2", "l3"]
    assert clf.classes_.tolist() == ["l0", "l1", "l2"]  # the original is unchanged
    Xt, _ = _toy(seed=1)
    before, after = clf.decision_function(Xt), new.decision_function(Xt)
    np.testing.assert_array_equal(after[:, :3], before)  # known labels: the same scores
    np.testing.assert_array_equal(new.thresholds_[:3], clf.thresholds_)
    # the new label: what a fit on every kept row gives it (one-vs-rest: labels independent)
    rows = MultiLabelClassifier(head=head, threshold_strategy="per-label").fit(
        np.vstack([X, X3]), [",".join(s) or "oos" for s in Y] + Y3
    )
    np.testing.assert_allclose(after[:, 3], rows.decision_function(Xt)[:, 3], atol=1e-5)
    assert new.thresholds_[3] == pytest.approx(rows.thresholds_[3], abs=1e-5)
    sets = new.predict_label_sets(_toy_with_l3(seed=2)[0])
    assert sum("l3" in s for s in sets) >= 36
    assert new.update_["classes"] == ["l3"] and new.update_["rows"] == 40
    assert new.label_counts_.tolist()[3] == 40


@pytest.mark.parametrize("head", ["mlp", "knn"])
def test_shared_heads_are_refit_with_the_same_head(head):
    X, Y = _toy()
    clf = MultiLabelClassifier(head=head, hidden=32, epochs=100).fit(X, Y)
    new = clf.add_classes(*_toy_with_l3())
    assert new.head_ == head and new.update_["head_update"].startswith("refit")
    sets = new.predict_label_sets(_toy_with_l3(seed=2)[0])
    assert sum("l3" in s for s in sets) >= 36


@pytest.mark.parametrize("head", ["linear", "mlp", "prototype", "knn"])
def test_removed_labels_leave_the_others_exactly(head):
    X, Y = _toy()
    clf = MultiLabelClassifier(head=head, hidden=32, epochs=50).fit(X, Y)
    new = clf.remove_classes(["l1"])
    Xt, _ = _toy(seed=1)
    np.testing.assert_array_equal(new.decision_function(Xt), clf.decision_function(Xt)[:, [0, 2]])
    assert new.classes_.tolist() == ["l0", "l2"] and new.train_Y_.shape[1] == 2
    assert new.update_["rows"] == 80  # l1 alone, l0+l1 and l1+l2 rows
    with pytest.raises(ValidationError, match="not classes of this model"):
        clf.remove_classes(["nope"])


def test_class_changes_refuse_what_they_cannot_do():
    X, Y = _toy()
    clf = MultiLabelClassifier(head="linear").fit(X, Y)
    with pytest.raises(ValidationError, match="none of these rows' labels is new"):
        clf.add_classes(X[:4], ["l0"] * 4)
    with pytest.raises(ValidationError, match="fewer than 2 rows"):
        clf.add_classes(X[:1], ["l9"])
    bare = MultiLabelClassifier(head="linear", keep_rows=False).fit(X, Y)
    assert not hasattr(bare, "train_X_")
    with pytest.raises(ValidationError, match="does not keep its training vectors"):
        bare.add_classes(*_toy_with_l3())
    X_ref, y_ref = clf.reference_rows()
    assert len(X_ref) == 120 and set(y_ref) == {"l0", "l1", "l2"}  # one-label rows only


def test_self_training_keeps_thresholds_on_labelled_rows_and_leaves_none_rows_out():
    from embedlab.models.self_training import SelfTraining, self_train_multilabel

    X, Y = _toy(n_per=12)
    pool, _ = _toy(n_per=40, seed=3)
    clf = MultiLabelClassifier(head="linear").fit(X, Y)
    st, report = self_train_multilabel(clf, pool, SelfTraining(rounds=2))
    n_none = int((~clf.predict(pool).any(1)).sum())
    assert report["rejected_in_pool"] == n_none > 0  # the far-away rows: no label
    taken = report["rounds"][-1]["pseudo_labelled"]
    assert 0 < taken <= len(pool) - n_none
    assert st.train_Y_[len(X) :].any(1).all()  # no guessed row without a label
    assert clf.train_X_.shape[0] == len(X)  # the original is unchanged
    Xt, Yt = _toy(seed=1)
    m = evaluate_multilabel(label_indicator(Yt, st.classes_), st.predict(Xt), st.classes_)
    assert m["macro_f1"] > 0.9
    again, _ = self_train_multilabel(clf, pool, SelfTraining(rounds=2))
    np.testing.assert_array_equal(again.thresholds_, st.thresholds_)  # deterministic


def test_one_fit_configuration_checked_before_data_and_building_the_model():
    from embedlab.models.fit_options import CLI_NAMES, FitConfig
    from embedlab.models.openset import OpenSetClassifier

    with pytest.raises(ValidationError, match="--val works with single-label models only"):
        FitConfig(multi_label=True, validation=True).check(CLI_NAMES)
    with pytest.raises(ValidationError, match="--labels-only takes no --multi-label"):
        FitConfig(labels_only=True, multi_label=True).check(CLI_NAMES)
    ml = Pipeline.from_config(FitConfig(multi_label=True, head="knn", label_sep="|").check())
    assert isinstance(ml.classifier, MultiLabelClassifier) and ml.classifier.label_sep == "|"
    assert ml.adapt == "auto" and ml.multi_label  # label sets adapt too (issue 27)
    single = Pipeline.from_config(FitConfig(head="linear", adapt_budget=30.0, seed=3).check())
    assert isinstance(single.classifier, OpenSetClassifier) and single.classifier.head == "linear"
    assert single.adapt == "auto" and single.adapt_config.time_budget == 30.0
    assert single.adapt_config.seed == 3 and single.classifier.random_state == 3
    assert FitConfig(labels_only=True).structure == "zero-shot"


def _label_world(seed: int, n: int, L: int, scale: float, share: float) -> tuple:
    """Rows whose vectors are the sum of their labels' centres plus noise (16 dims); every
    row carries at least one of the L labels, each with probability ``share``."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(L, 16)) * scale
    Y = rng.random((n, L)) < share
    Y[~Y.any(1), 0] = True
    X = (Y.astype(np.float32) @ centres + rng.normal(size=(n, 16))).astype(np.float32)
    return rng, X, Y, centres


def test_multilabel_p_values_are_conformal_and_survive_label_changes():
    """The p-values come from a copy of the scorers that never saw the rows they are
    calibrated on (the first fold's model): rows carrying labels are rarely small, rows
    unlike any label are; BH over a batch empties the rejected rows' sets."""
    from embedlab.core.conformal import p_values

    rng, X, Y, centres = _label_world(0, 900, 5, 2.0, 0.25)
    d, L = centres.shape[1], centres.shape[0]
    clf = MultiLabelClassifier(head="linear").fit(X, Y)
    held = len(clf.calibration_scores_)
    assert held == 300 and clf.calibration_Y_.shape == (300, L)
    Z = clf._X(X)
    expected = p_values(
        -clf.calibration_scores_[clf.calibration_Y_.any(1)].max(1),
        -clf._scores("linear", Z, clf.calibration_params_).max(1),
    )
    np.testing.assert_allclose(clf.p_value(X), expected)
    Xt = (Y[:300].astype(np.float32) @ centres + rng.normal(size=(300, d))).astype(np.float32)
    novel = (rng.normal(size=(100, d)) * 0.3 - centres.sum(0)).astype(np.float32)
    assert (clf.p_value(Xt) <= 0.05).mean() <= 0.05 + 0.03
    assert (clf.p_value(novel) <= 0.05).mean() > 0.8
    d_fdr = clf.predict_details(np.vstack([Xt, novel]), fdr=0.1)
    assert d_fdr.out_of_scope[300:].mean() > 0.8 and d_fdr.out_of_scope[:300].mean() < 0.1
    assert all(not s for s, o in zip(d_fdr.label_sets, d_fdr.out_of_scope, strict=True) if o)
    shrunk = clf.remove_classes(["0"])
    assert shrunk.calibration_scores_.shape == (300, L - 1)
    np.testing.assert_allclose(
        shrunk.calibration_scores_, clf.calibration_scores_[:, 1:], rtol=0, atol=0
    )
    extra = (rng.normal(size=(40, d)) + 5).astype(np.float32)
    grown = clf.add_classes(extra, [("new",)] * 40)
    assert grown.calibration_Y_.shape[1] == L + 1 and "new" in set(grown.classes_)
    assert np.isfinite(grown.p_value(extra)).all()


def test_label_p_values_keep_each_labels_miss_rate():
    """Per label: among fresh rows that carry it, the share whose p-value for it is at most
    alpha is at most alpha (up to sampling), and equals crepes-style ranking by hand."""
    _, X, Y, centres = _label_world(1, 3000, 4, 1.5, 0.3)
    L = centres.shape[0]
    clf = MultiLabelClassifier(head="linear").fit(X[:1500], Y[:1500])
    P = clf.label_p_values(X[1500:])
    assert P.shape == (1500, L) and ((P > 0) & (P <= 1)).all()
    for j in range(L):
        carry = Y[1500:, j]
        assert (P[carry, j] <= 0.1).mean() <= 0.1 + 0.04
    j = 2
    cal = clf.calibration_scores_[clf.calibration_Y_[:, j], j]
    s = clf._scores("linear", clf._X(X[1500:1510]), clf.calibration_params_)[:, j]
    expected = [(1 + (cal <= v).sum()) / (len(cal) + 1) for v in s]
    np.testing.assert_allclose(P[:10, j], expected)


def test_threshold_strategies():
    """global: the micro-F1-best single threshold (brute force agrees); shrunk: each
    label's own threshold pulled toward it by SHRINK_ROWS / (positives + SHRINK_ROWS);
    auto: chosen by nested cross-validation, recorded, reproducible; added labels under a
    shared strategy use the model's own global threshold."""
    from embedlab.models.label_sets import per_label_thresholds
    from embedlab.models.label_thresholds import SHRINK_ROWS, apply_strategy, global_threshold

    rng = np.random.default_rng(0)
    S = rng.random((300, 6))
    Y = rng.random((300, 6)) < (0.05 + 0.8 * S)  # higher score, likelier label
    Y[:, 5] = False
    g = global_threshold(S, Y)
    pos = Y.sum()
    cands = np.unique(S)
    best = max(cands, key=lambda t: 2 * ((t <= S) & Y).sum() / ((t <= S).sum() + pos))
    assert (g <= S).sum() == (best <= S).sum()
    own, _ = per_label_thresholds(S, Y)
    t, has, g2 = apply_strategy("shrunk", S, Y)
    n = Y.sum(0)
    np.testing.assert_allclose(t[:5], (n[:5] * own[:5] + SHRINK_ROWS * g) / (n[:5] + SHRINK_ROWS))
    assert np.isinf(t[5]) and not has[5] and g2 == g
    t, _, _ = apply_strategy("global", S, Y)
    assert (t[:5] == g).all() and np.isinf(t[5])
    with pytest.raises(ValidationError, match="threshold strategy"):
        apply_strategy("median", S, Y)
    X, Yt = _toy()
    a = MultiLabelClassifier(head="linear").fit(X, Yt)
    b = MultiLabelClassifier(head="linear").fit(X, Yt)
    assert a.threshold_strategy_ in ("shrunk", "per-label")
    assert a.threshold_selection_ == b.threshold_selection_
    assert set(a.threshold_selection_) == {"shrunk", "per-label"}
    assert a.threshold_selection_[a.threshold_strategy_] == max(a.threshold_selection_.values())
    shared = MultiLabelClassifier(head="linear", threshold_strategy="global").fit(X, Yt)
    grown = shared.add_classes(*_toy_with_l3())
    assert grown.thresholds_[3] == pytest.approx(shared.global_threshold_)
    with pytest.raises(ValidationError, match="threshold_strategy"):
        MultiLabelClassifier(threshold_strategy="median").fit(X, Yt)
