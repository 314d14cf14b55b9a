"""Label hierarchies (parsing, levels, scoring, bad input) and zero-shot models from label
names through the pipeline and the CLI (`fit --labels-only`, `--hierarchy`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from embedlab.cli import app
from embedlab.core.errors import DataFormatError, ValidationError
from embedlab.data.readers import read_label_names
from embedlab.heads import ZeroShotClassifier
from embedlab.models.hierarchy import Hierarchy, evaluate_levels, read_hierarchy
from embedlab.models.pipeline import Pipeline

runner = CliRunner()

TREE = {
    "book_flight": "travel",
    "book_hotel": "travel",
    "balance": "banking",
    "transfer": "banking",
    "travel": "everything",
    "banking": "everything",
}


def test_levels_and_paths():
    h = Hierarchy.from_parents(TREE)
    assert h.depth == 3
    assert h.level_names() == ["level1", "level2", "label"]
    assert h.path("book_flight") == ["everything", "travel", "book_flight"]
    assert h.at_level(["book_flight", "balance", "oos"], 2, keep=["oos"]).tolist() == [
        "travel",
        "banking",
        "oos",
    ]
    assert h.at_level(["book_flight"], 1).tolist() == ["everything"]
    # a shallower leaf keeps its own name below its depth
    g = Hierarchy.from_parents({"a1": "a", "a": "top", "b": "top"})
    assert g.at_level(["b", "a1"], 2).tolist() == ["b", "a"]
    assert g.at_level(["b", "a1"], 3).tolist() == ["b", "a1"]


def test_nested_json_and_csv_files(tmp_path):
    (tmp_path / "t.json").write_text(
        json.dumps({"travel": ["book_flight", "book_hotel"], "banking": {"cards": ["lost_card"]}})
    )
    h = read_hierarchy(tmp_path / "t.json")
    assert h.path("lost_card") == ["banking", "cards", "lost_card"]
    (tmp_path / "flat.json").write_text(json.dumps({"a": "x", "b": "x"}))
    assert read_hierarchy(tmp_path / "flat.json").parent == {"a": "x", "b": "x"}
    (tmp_path / "t.csv").write_text("child,parent\na,x\nb,x\nx,root\n")
    assert read_hierarchy(tmp_path / "t.csv").depth == 3


@pytest.mark.parametrize(
    ("content", "suffix", "error", "message"),
    [
        ("child,parent\na,b\nb,c\nc,a\n", ".csv", ValidationError, "cycle: a → b → c → a"),
        ("child,parent\na,a\n", ".csv", ValidationError, "'a' is its own parent"),
        ("child,parent\na,x\na,y\n", ".csv", ValidationError, "'a' has two parents"),
        ("child,parent\na,\n", ".csv", ValidationError, "empty child or parent"),
        ("kid,mum\na,x\n", ".csv", DataFormatError, "columns child,parent"),
        ("{not json", ".json", DataFormatError, "not valid JSON"),
        ('{"x": 3}', ".json", ValidationError, "must be a list or a mapping"),
        ("a\tb", ".txt", DataFormatError, ".csv, .tsv or .json"),
    ],
)
def test_bad_hierarchies(tmp_path, content, suffix, error, message):
    path = tmp_path / f"h{suffix}"
    path.write_text(content)
    with pytest.raises(error, match=message):
        read_hierarchy(path)


def test_data_labels_must_be_leaves_of_the_hierarchy():
    h = Hierarchy.from_parents(TREE)
    with pytest.raises(ValidationError, match=r"parents in the hierarchy: \['travel'\]"):
        h.check_labels(["book_flight", "travel"])
    with pytest.raises(ValidationError, match=r"misses 1 label\(s\) of the data: \['weather'\]"):
        h.check_labels(["book_flight", "weather", "oos"], ignore=["oos"])
    h.check_labels(["book_flight", "oos"], ignore=["oos"])  # a test set: some classes
    # the labels a model is fitted on: a child that is no class is named (a misspelling)
    with pytest.raises(ValidationError, match=r"not classes of the data: \['balance'"):
        h.check_labels(["book_flight", "oos"], ignore=["oos"], complete=True)


def test_level_scores_known_answer():
    h = Hierarchy.from_parents(TREE)
    true = ["book_flight", "book_flight", "balance", "transfer", "oos"]
    pred = ["book_flight", "book_hotel", "book_hotel", "oos", "oos"]
    m = evaluate_levels(true, pred, h)
    assert m["accuracy_by_level"] == {"level1": 0.8, "level2": 0.6, "label": 0.4}
    # wrong leaves: rows 2, 3, 4; right parent: row 2 only (row 4 was rejected)
    assert m["wrong_leaf"] == 3 and m["wrong_leaf_right_parent"] == 1
    assert m["wrong_leaf_right_parent_share"] == pytest.approx(1 / 3)


def test_zero_shot_class_vectors_need_no_encoder():
    rng = np.random.default_rng(0)
    V = rng.standard_normal((4, 16)).astype(np.float32)
    zs = ZeroShotClassifier(class_vectors={"cat": V[0], "dog": V[1:3], "car": V[3]}).fit()
    assert zs.classes_.tolist() == ["car", "cat", "dog"]
    assert zs.predict(V[[0, 3]] + 0.01).tolist() == ["cat", "car"]
    with pytest.raises(ValidationError, match="different dimensions"):
        ZeroShotClassifier(class_vectors={"a": V[0], "b": V[1, :8]}).fit()
    with pytest.raises(ValidationError, match="finite vector"):
        ZeroShotClassifier(class_vectors={"a": V[0], "b": np.full(16, np.nan)}).fit()


LABELS_CSV = (
    "label,description\nrefund,I want my money back\nrefund,a refund for my order\n"
    "late,my parcel is late\nlate,the delivery has not arrived\ngreeting,\n"
)
TREE_CSV = "child,parent\nrefund,billing\nlate,shipping\ngreeting,chat\n"


def test_label_file_reader(tmp_path):
    (tmp_path / "l.csv").write_text(LABELS_CSV)
    labels, desc = read_label_names(tmp_path / "l.csv")
    assert labels == ["refund", "refund", "late", "late", "greeting"]
    assert desc[0] == "I want my money back" and desc[-1] is None
    (tmp_path / "l.txt").write_text("a\n\nb\n")
    assert read_label_names(tmp_path / "l.txt") == (["a", "b"], [None, None])
    (tmp_path / "bad.csv").write_text("name\na\n")
    with pytest.raises(DataFormatError, match="needs a 'label' column"):
        read_label_names(tmp_path / "bad.csv")


def test_labels_only_pipeline_calibrates_with_texts(st_encoder_uncached, tmp_path):
    h = Hierarchy.from_parents({"refund": "billing", "late": "shipping", "greeting": "chat"})
    labels = ["refund", "refund", "late", "late", "greeting"]
    desc = [
        "I want my money back",
        "a refund for my order",
        "my parcel is late",
        "the delivery has not arrived",
        None,
    ]
    pipe = Pipeline(st_encoder_uncached, hierarchy=h).fit_labels_only(labels, desc)
    assert pipe.info["threshold"] is None  # nothing to calibrate on: nothing rejected
    d = pipe.predict_details(["give me my money back", "hello friend"])
    assert d.labels.tolist() == ["refund", "greeting"]
    assert d.levels["level1"].tolist() == ["billing", "chat"]
    assert not d.out_of_scope.any()
    texts = ["refund please", "where is my parcel", "hi", "money back now", "still no box"]
    pipe2 = Pipeline(st_encoder_uncached).fit_labels_only(labels, desc, in_scope_texts=texts * 10)
    assert np.isfinite(pipe2.classifier_.threshold_)
    assert pipe2.predict_details(["what is the boiling point of tungsten"]).out_of_scope[0]
    pipe.save(tmp_path / "z")
    back = Pipeline.load(tmp_path / "z")
    assert back.hierarchy == h
    assert back.predict_details(["hello friend"]).levels["level1"].tolist() == ["chat"]
    m = back.evaluate(["give me my money back", "hello friend"], ["refund", "late"])
    assert m["hierarchy"]["accuracy_by_level"] == {"level1": 0.5, "label": 0.5}
    with pytest.raises(ValidationError, match="misses 1 label"):
        Pipeline(st_encoder_uncached, hierarchy=h).fit_labels_only(["refund", "weather"])
    with pytest.raises(ValidationError, match="out-of-scope label"):
        Pipeline(st_encoder_uncached).fit_labels_only(["refund", "oos"])


@pytest.mark.slow
def test_cli_labels_only_with_hierarchy_predict_evaluate(tmp_path):
    (tmp_path / "labels.csv").write_text(LABELS_CSV)
    (tmp_path / "tree.csv").write_text(TREE_CSV)
    (tmp_path / "val.csv").write_text(
        "text\nrefund please\nwhere is my parcel\nhi\nmoney back now\nstill no box\n"
    )
    model = tmp_path / "z"
    res = runner.invoke(
        app,
        [
            "fit",
            "--labels-only",
            str(tmp_path / "labels.csv"),
            "--hierarchy",
            str(tmp_path / "tree.csv"),
            "--val",
            str(tmp_path / "val.csv"),
            "-o",
            str(model),
            "--no-cache",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "zero-shot, 3 labels from 5 names / descriptions, 2 levels" in res.output
    (tmp_path / "q.csv").write_text(
        "text,label\ngive me back my money,refund\nhi there,greeting\nthe box is late,refund\n"
    )
    out = tmp_path / "p.csv"
    res = runner.invoke(
        app, ["predict", str(model), str(tmp_path / "q.csv"), "-o", str(out), "--no-cache"]
    )
    assert res.exit_code == 0, res.output
    assert (
        out.read_text()
        .splitlines()[0]
        .startswith('"text","label","predicted_label","label_level1"')
    )
    res = runner.invoke(
        app,
        ["evaluate", str(model), str(tmp_path / "q.csv"), "--json", "--no-reject", "--no-cache"],
    )
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)
    assert set(m["hierarchy"]["accuracy_by_level"]) == {"level1", "label"}
    html = tmp_path / "r.html"
    res = runner.invoke(app, ["report", str(model), str(tmp_path / "q.csv"), "-o", str(html)])
    assert res.exit_code == 0, res.output
    assert "Accuracy at every level of the hierarchy" in html.read_text()


@pytest.mark.slow
def test_cli_fit_with_a_hierarchy_that_misses_a_label(tmp_path):
    from embedlab.data.datasets import demo_path

    (tmp_path / "tree.csv").write_text("child,parent\nset_alarm,clock\n")
    res = runner.invoke(
        app,
        [
            "fit",
            str(demo_path("train")),
            "--hierarchy",
            str(tmp_path / "tree.csv"),
            "-o",
            str(tmp_path / "m"),
            "--no-adapt",
            "--head",
            "prototype",
            "--detector",
            "max-cosine",
        ],
    )
    assert res.exit_code != 0
    assert "the hierarchy misses" in " ".join(res.output.split())
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give training DATA, or --labels-only"),
        (["DATA", "--labels-only", "L"], "not both"),
        (["--labels-only", "L", "--multi-label"], "--labels-only takes no --multi-label"),
    ],
)
def test_cli_labels_only_bad_combinations(tmp_path, args, message):
    from embedlab.data.datasets import demo_path

    (tmp_path / "l.csv").write_text(LABELS_CSV)
    subst = {"DATA": str(demo_path("train")), "L": str(tmp_path / "l.csv")}
    res = runner.invoke(app, ["fit", *[subst.get(a, a) for a in args], "-o", str(tmp_path / "m")])
    assert res.exit_code != 0
    assert message in " ".join(res.output.split())


@pytest.mark.slow
def test_cli_added_classes_take_a_place_in_the_hierarchy(tmp_path):
    """add-classes on a model with a hierarchy: each new class needs --parent (as every class
    needed one at fit); the new version predicts its level; --in-place replaces the model."""
    from embedlab.data.datasets import demo_path

    model = tmp_path / "m"
    fit = ["fit", str(demo_path("train")), "--hierarchy", str(demo_path("hierarchy"))]
    fit += ["-o", str(model), "--no-adapt", "--no-cache", "--head", "prototype"]
    assert runner.invoke(app, fit).exit_code == 0
    jokes = tmp_path / "jokes.csv"
    jokes.write_text(
        "text,label\ntell me a joke,tell_joke\nmake me laugh,tell_joke\n"
        "say something funny,tell_joke\n"
    )
    add = ["add-classes", str(model), str(jokes), "--no-cache"]
    res = runner.invoke(app, [*add, "--in-place"])
    assert res.exit_code != 0 and "give each new class a parent" in " ".join(res.output.split())
    res = runner.invoke(app, [*add, "--in-place", "--parent", "other=small_talk"])
    assert "not being added" in " ".join(res.output.split())
    res = runner.invoke(app, [*add, "-o", str(tmp_path / "x"), "--in-place"])
    assert res.exit_code != 0 and "one of the two" in res.output
    res = runner.invoke(app, [*add, "--in-place", "--parent", "tell_joke=small_talk"])
    assert res.exit_code == 0, res.output
    pipe = Pipeline.load(model)
    assert pipe.info["lineage"]["version"] == 2
    assert pipe.hierarchy.parent["tell_joke"] == "small_talk"
    d = pipe.predict_details(["tell me a funny joke"])
    assert d.labels[0] == "tell_joke" and d.levels["level1"][0] == "small_talk"
