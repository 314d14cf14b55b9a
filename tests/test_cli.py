"""The CLI through Typer's runner: encode, import, info, demo, and readable errors."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from embedlab.cli import app
from embedlab.data.embedding_set import EmbeddingSet

runner = CliRunner()


@pytest.fixture
def data_csv(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text(
        "text,label,lang\nbook a flight to rome,travel,en\nplay jazz,music,en\n"
        "fly me to tokyo,travel,en\n",
        encoding="utf-8",
    )
    return f


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_help_teaches_with_examples():
    import typer

    commands = sorted(typer.main.get_command(app).commands)
    assert {"encode", "filter", "concat", "predict", "serve"} <= set(commands)
    for cmd in ([], *[[c] for c in commands]):  # every command, and the program itself
        res = invoke(*cmd, "--help")
        assert res.exit_code == 0, res.output
        assert "Example" in res.output or "embedlab demo" in res.output, cmd


@pytest.mark.slow
def test_encode_then_info(tmp_path, data_csv):
    out = tmp_path / "space"
    res = invoke("encode", data_csv, "-o", out)
    assert res.exit_code == 0, res.output
    assert "3 × 384" in res.output and "3 encoded" in res.output
    es = EmbeddingSet.load(out)
    assert es.texts.tolist()[1] == "play jazz"  # row i = input row i
    assert es.labels.tolist() == ["travel", "music", "travel"]
    assert es.metadata.column_names == ["lang"]
    assert es.provenance.encoder["name"] == "all-MiniLM-L6-v2"

    res = invoke("info", out)
    assert res.exit_code == 0, res.output
    assert "3 × 384 float32" in res.output and "travel: 2" in res.output

    res = invoke("info", out, "--json")
    info = json.loads(res.stdout)
    assert info["n"] == 3 and info["label_counts"] == {"travel": 2, "music": 1}

    # Second run with --force: every text comes from the cache.
    res = invoke("encode", data_csv, "-o", out, "--force")
    assert res.exit_code == 0 and "0 encoded, 3 from cache" in res.output


@pytest.mark.slow
def test_encode_no_cache(tmp_path, data_csv):
    invoke("encode", data_csv, "-o", tmp_path / "a")
    res = invoke("encode", data_csv, "-o", tmp_path / "b", "--no-cache")
    assert res.exit_code == 0 and "3 encoded, 0 from cache" in res.output


def test_encode_refuses_existing_output(tmp_path, data_csv):
    (tmp_path / "space").mkdir()
    res = invoke("encode", data_csv, "-o", tmp_path / "space")
    assert res.exit_code == 2 and "already exists; pass --force" in res.output


@pytest.mark.slow
def test_encode_errors_are_readable(tmp_path, data_csv):
    res = invoke("encode", data_csv, "-o", tmp_path / "s", "--text-col", "body")
    assert res.exit_code == 2
    assert "error:" in res.output and "no text column 'body'" in res.output
    assert "Traceback" not in res.output
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"text\nfine\n\xff\xfe\n")
    res = invoke("encode", bad, "-o", tmp_path / "s")
    assert res.exit_code == 2 and "not valid UTF-8" in res.output


@pytest.mark.slow
def test_encode_skip_empty_reports_count(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"text": "hello"}\n{"text": ""}\n{"text": "bye"}\n')
    res = invoke("encode", f, "-o", tmp_path / "s")
    assert res.exit_code == 2 and "--skip-empty" in res.output
    res = invoke("encode", f, "-o", tmp_path / "s", "--skip-empty")
    assert res.exit_code == 0 and "skipped 1 empty text(s)" in res.output
    assert EmbeddingSet.load(tmp_path / "s").ids.tolist() == ["0", "2"]


def test_import_vectors(tmp_path):
    np.save(tmp_path / "v.npy", np.eye(4, dtype=np.float32))
    res = invoke("import", tmp_path / "v.npy", "-o", tmp_path / "s")
    assert res.exit_code == 0 and "4 × 4" in res.output
    np.save(tmp_path / "nan.npy", np.full((2, 2), np.nan, dtype=np.float32))
    res = invoke("import", tmp_path / "nan.npy", "-o", tmp_path / "t")
    assert res.exit_code == 2 and "NaN" in res.output


def test_info_on_corrupted_space(tmp_path):
    EmbeddingSet(np.eye(3)).save(tmp_path / "s")
    (tmp_path / "s" / "manifest.json").write_text("{")
    res = invoke("info", tmp_path / "s")
    assert res.exit_code == 2 and "corrupted" in res.output and "Traceback" not in res.output


@pytest.mark.slow
def test_demo_runs(tmp_path):
    res = invoke("demo", "-o", tmp_path / "demo")
    assert res.exit_code == 0, res.output
    assert "178 texts" in res.output and "102 texts" in res.output
    assert "1-nearest-neighbour accuracy" in res.output
    assert "Test metrics" in res.output and "oos_auroc" in res.output
    assert "Search (48 bytes/vector, binary + rescore)" in res.output
    assert "add-classes (no refit" in res.output
    demo_output = " ".join(res.output.split())
    assert "streamed in 3 chunks of 40 rows" in demo_output and "102 rows" in demo_output
    assert (tmp_path / "demo" / "test_predictions.csv").read_text().count("\n") == 103
    assert "--shard-rows 100000" in demo_output
    res = invoke("search", tmp_path / "demo" / "index", "wake me up at seven", "-k", "1", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["label"] == "set_alarm"
    train = EmbeddingSet.load(tmp_path / "demo" / "train")
    assert train.n == 178 and len(train.classes) == 13
    # the label set changes: discover finds the two new intents, add-classes takes them
    summary = json.loads((tmp_path / "demo" / "discovered" / "summary.json").read_text())
    assert summary["k_estimated"] == 2
    from embedlab.models.pipeline import Pipeline

    v2 = Pipeline.load(tmp_path / "demo" / "model_v2")
    assert v2.info["lineage"]["version"] == 2 and len(v2.classes_) == 14
    assert v2.predict(["what's the password for the guest wifi"])[0] in {
        c["name"] for c in summary["clusters"]
    }
    # zero-shot from the label names, with the packaged hierarchy of areas
    assert "fit --labels-only from the 12 label names" in demo_output
    zs = Pipeline.load(tmp_path / "demo" / "model_zero_shot")
    assert zs.hierarchy is not None and len(zs.hierarchy.parents) == 4
    d = zs.predict_details(["wake me up at seven tomorrow"])
    assert d.labels[0] == "set_alarm" and d.levels["level1"][0] == "home_assistant"


def test_version():
    res = invoke("--version")
    assert res.exit_code == 0 and "embedlab" in res.output


@pytest.fixture
def demo_csvs():
    from embedlab.data.datasets import demo_path

    return demo_path("train"), demo_path("test")


@pytest.mark.slow
def test_fit_predict_evaluate(tmp_path, demo_csvs):
    train, test = demo_csvs
    model = tmp_path / "model"
    res = invoke("fit", train, "-o", model, "--no-adapt", "--time-budget", "20")
    assert res.exit_code == 0, res.output
    assert "12 classes from 178 rows (10 out-of-scope)" in res.output

    res = invoke("evaluate", model, test, "--json")
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)
    for key in (
        "n",
        "accuracy",
        "macro_f1",
        "oos_auroc",
        "fpr_at_95_tpr",
        "oos_recall",
        "oos_precision",
        "overall_accuracy",
        "seconds",
    ):
        assert key in m
    assert m["n"] == 102 and m["accuracy"] > 0.8

    res = invoke("evaluate", model, test)
    assert res.exit_code == 0 and "overall_accuracy" in res.output

    for ext in ("csv", "jsonl", "parquet"):
        out = tmp_path / f"pred.{ext}"
        res = invoke("predict", model, test, "-o", out)
        assert res.exit_code == 0, res.output
        from embedlab.data.readers import read_table

        table = read_table(out)
        assert table.num_rows == 102
        assert {
            "label",
            "confidence",
            "novelty",
            "out_of_scope",
            "top1_label",
            "top1_confidence",
            "top3_label",
            "top3_confidence",
        } <= set(table.column_names)
        # The input's columns are kept; the prediction's label does not overwrite the truth.
        assert table.column("text").to_pylist()[0] == read_table(test).column("text")[0].as_py()
        assert table.column("label").to_pylist() == read_table(test).column("label").to_pylist()
        assert "predicted_label" in table.column_names

    one = tmp_path / "one.jsonl"
    one.write_text('{"ticket": "T-9", "body": "play some jazz", "queue": "music"}\n')
    out = tmp_path / "one.csv"
    cols = ("--text-col", "body", "--id-col", "ticket")
    res = invoke("predict", model, one, "-o", out, *cols)
    assert res.exit_code == 0 and "1 prediction," in res.output, res.output
    table = read_table(out)
    assert table.column_names[:3] == ["ticket", "body", "queue"] and "label" in table.column_names
    res = invoke("predict", model, one, "-o", out, *cols, "--no-keep-columns")
    assert res.exit_code == 2 and "--force" in res.output
    res = invoke("predict", model, one, "-o", out, *cols, "--no-keep-columns", "--force")
    assert res.exit_code == 0, res.output
    assert read_table(out).column_names[0] == "ticket"
    assert "body" not in read_table(out).column_names


@pytest.mark.slow
def test_fit_with_named_components(tmp_path, demo_csvs):
    res = invoke(
        "fit",
        demo_csvs[0],
        "-o",
        tmp_path / "m",
        "--no-adapt",
        "--head",
        "linear",
        "--detector",
        "energy",
    )
    assert res.exit_code == 0, res.output
    assert "head linear" in res.output and "detector energy" in res.output


@pytest.mark.slow
def test_fit_with_a_transform(tmp_path, demo_csvs):
    train, test = demo_csvs
    args = ("--head", "prototype", "--detector", "max-cosine")
    res = invoke("fit", train, "-o", tmp_path / "m", "--transform", "layer3,dim128,sq8", *args)
    assert res.exit_code == 0, res.output
    assert "transform layer3,dim128,sq8" in res.output and "encoder frozen" in res.output
    res = invoke("evaluate", tmp_path / "m", test, "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["accuracy"] > 0.7
    res = invoke("fit", train, "-o", tmp_path / "n", "--transform", "binary,whiten", *args)
    assert res.exit_code == 2 and "cannot follow it" in res.output
    res = invoke("fit", train, "-o", tmp_path / "n", "--transform", "layer9", *args)
    assert res.exit_code == 2 and "layers 1..6" in res.output


@pytest.mark.slow
def test_fit_bad_input(tmp_path):
    f = tmp_path / "one.csv"
    f.write_text("text,label\nhello,greet\nhi,greet\n")
    res = invoke("fit", f, "-o", tmp_path / "m", "--no-adapt")
    assert res.exit_code == 2 and "only one in-scope class" in res.output
    f.write_text("text,label\nhello,oos\nhi,oos\n")
    res = invoke("fit", f, "-o", tmp_path / "m", "--no-adapt")
    assert res.exit_code == 2 and "every training row is labelled 'oos'" in res.output
    f.write_text("text\nhello\n")
    res = invoke("fit", f, "-o", tmp_path / "m", "--no-adapt")
    assert res.exit_code == 2 and "no label column" in res.output
    res = invoke("fit", f, "-o", tmp_path / "m", "--head", "svm")
    assert res.exit_code == 2


def test_evaluate_unknown_label_and_bad_bundle(tmp_path, quick_model):
    model = quick_model
    f = tmp_path / "t.csv"
    f.write_text("text,label\nhello,never_seen\n")
    res = invoke("evaluate", model, f)
    assert res.exit_code == 2 and "not seen in training" in res.output
    res = invoke("predict", tmp_path / "nope", f, "-o", tmp_path / "p.csv")
    assert res.exit_code == 2 and "no model bundle" in res.output
    res = invoke("predict", model, f, "-o", tmp_path / "p.xlsx")
    assert res.exit_code == 2 and "must end in .csv, .jsonl or .parquet" in res.output


@pytest.mark.slow
def test_fit_with_validation_file(tmp_path, demo_csvs):
    train, test = demo_csvs
    res = invoke(
        "fit",
        train,
        "-o",
        tmp_path / "m",
        "--no-adapt",
        "--head",
        "prototype",
        "--detector",
        "max-cosine",
        "--val",
        test,
        "--target-fpr",
        "0.1",
    )
    assert res.exit_code == 0, res.output
    from embedlab.models.pipeline import Pipeline

    pipe = Pipeline.load(tmp_path / "m")
    assert pipe.info["calibrated_on"] == "validation data"
    assert len(pipe.classifier_.detector_.calibration_scores_) == 72  # test's in-scope rows


@pytest.mark.slow
def test_encode_layer_and_dim(tmp_path, data_csv):
    out = tmp_path / "s"
    res = invoke("encode", data_csv, "-o", out, "--layer", "3", "--dim", "128")
    assert res.exit_code == 0, res.output
    es = EmbeddingSet.load(out)
    assert es.shape == (3, 128)
    assert es.provenance.layer == 3 and es.provenance.dim == 128
    np.testing.assert_allclose(np.linalg.norm(es.vectors, axis=1), 1.0, atol=1e-5)
    res = invoke("info", out, "--json")
    info = json.loads(res.stdout)
    assert info["provenance"]["layer"] == 3 and info["dim"] == 128
    res = invoke("encode", data_csv, "-o", tmp_path / "t", "--layer", "9")
    assert res.exit_code == 2 and "layers 1..6" in res.output


@pytest.mark.slow
def test_index_and_search(tmp_path, data_csv):
    space = tmp_path / "space"
    assert invoke("encode", data_csv, "-o", space).exit_code == 0
    for spec in ("flat", "binary,rescore2", "dim64,rerank2", "hnsw8"):
        out = tmp_path / spec.replace(",", "_")
        res = invoke("index", space, "-o", out, "--spec", spec)
        assert res.exit_code == 0, res.output
        res = invoke("search", out, "a plane ticket to japan", "-k", "2", "--json")
        assert res.exit_code == 0, res.output
        hits = [json.loads(line) for line in res.stdout.splitlines()]
        assert [h["rank"] for h in hits] == [1, 2]
        assert hits[0]["label"] == "travel" and hits[0]["text"] == "fly me to tokyo"
    res = invoke("search", tmp_path / "flat", "jazz please")
    assert res.exit_code == 0 and "play jazz" in res.output


@pytest.mark.slow
def test_index_errors(tmp_path, data_csv):
    space = tmp_path / "space"
    invoke("encode", data_csv, "-o", space)
    res = invoke("index", space, "-o", tmp_path / "i", "--spec", "annoy")
    assert res.exit_code == 2 and "unknown index spec 'annoy'" in res.output
    np.save(tmp_path / "v.npy", np.eye(4, dtype=np.float32))
    invoke("import", tmp_path / "v.npy", "-o", tmp_path / "pre")
    invoke("index", tmp_path / "pre", "-o", tmp_path / "pre-i")
    res = invoke("search", tmp_path / "pre-i", "hello")
    assert res.exit_code == 2 and "--vectors" in res.output


@pytest.mark.slow
def test_index_refuses_queries_from_another_encoder(tmp_path, data_csv):
    from embedlab.compress.index import Index
    from embedlab.core.errors import ValidationError

    invoke("encode", data_csv, "-o", tmp_path / "space")
    es = EmbeddingSet.load(tmp_path / "space")
    idx = Index("flat", es.dim, encoder=es.provenance.encoder).add(es.vectors)
    other = dict(es.provenance.encoder, layer=3)
    with pytest.raises(ValidationError, match="layer: query 3 vs index None"):
        idx.search(es.vectors[:1], 1, encoder=other)


@pytest.mark.slow
def test_plan_classify_and_sts(tmp_path, demo_csvs):
    out = tmp_path / "plan"
    res = invoke("plan", demo_csvs[0], "-o", out, "--layers", "3,6", "--dims", "384,64", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["task"] == "classify" and len(doc["rows"]) == 2 * 2 * 3  # pq left out: 178 rows
    assert doc["recommended"]["transform"].startswith("layer")
    assert {p.name for p in out.iterdir()} == {"plan.csv", "plan.json", "plan.png"}
    res = invoke("plan", demo_csvs[0], "-o", out, "--layers", "6", "--dims", "64", "--no-plot")
    assert res.exit_code == 0, res.output
    assert "recommended:" in res.output and "embedlab fit DATA -o model/ --transform" in res.output
    header = next(line for line in res.output.splitlines() if "storage" in line)
    assert "× smaller" in header and "ms/item" in header  # not cut at 80 columns when piped
    pairs = tmp_path / "pairs.csv"
    rows = [("a man is playing a guitar", "a man plays guitar", 4.8)] * 6 + [
        ("the cat sleeps on the sofa", "stock markets fell sharply today", 0.2)
    ] * 6
    pairs.write_text(
        "sentence1,sentence2,score\n"
        + "".join(f"{a} {i},{b} {i},{s}\n" for i, (a, b, s) in enumerate(rows))
    )
    res = invoke(
        "plan",
        pairs,
        "--task",
        "sts",
        "-o",
        out,
        "--layers",
        "6",
        "--dims",
        "32",
        "--json",
        "--storage",
        "float32",
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["metric"] == "spearman"


@pytest.mark.slow
def test_plan_bad_input(tmp_path, demo_csvs):
    res = invoke("plan", demo_csvs[0], "-o", tmp_path / "p", "--dims", "500")
    assert res.exit_code == 2 and "this encoder has 1..384" in res.output
    res = invoke("plan", demo_csvs[0], "-o", tmp_path / "p", "--layers", "7")
    assert res.exit_code == 2 and "layers 1..6" in res.output
    res = invoke("plan", demo_csvs[0], "-o", tmp_path / "p", "--layers", "two")
    assert res.exit_code == 2 and "comma-separated integers" in res.output
    res = invoke("plan", demo_csvs[0], "-o", tmp_path / "p", "--task", "rank")
    assert res.exit_code == 2 and "choose one of: classify, retrieve, sts" in res.output
    res = invoke(
        "plan",
        demo_csvs[0],
        "-o",
        tmp_path / "p",
        "--max-bytes",
        "1",
        "--dims",
        "64",
        "--layers",
        "1",
    )
    assert res.exit_code == 1 and "no configuration meets the limits" in res.output


def test_diagnose_command(tmp_path):
    rng = np.random.default_rng(0)
    X = np.repeat(np.eye(4, 16), 25, axis=0) + 0.05 * rng.normal(size=(100, 16))
    labels = np.repeat(["a", "b", "c", "d"], 25).astype(object)
    labels[3] = "b"
    EmbeddingSet(X, labels=labels).save(tmp_path / "s")
    res = invoke("diagnose", tmp_path / "s")
    assert res.exit_code == 0, res.output
    assert "fisher_ratio" in res.output and "likely label errors: 1 of 100" in res.output
    res = invoke("diagnose", tmp_path / "s", "--json")
    doc = json.loads(res.stdout)
    assert doc["label_errors"]["rows"][0]["row"] == 3 and doc["n"] == 100
    res = invoke("diagnose", tmp_path / "nope")
    assert res.exit_code == 2 and "error" in res.output


@pytest.mark.slow
def test_report_command(tmp_path, demo_csvs):
    train, test = demo_csvs
    quick = ("--no-adapt", "--head", "prototype", "--detector", "max-cosine")
    assert invoke("fit", train, "-o", tmp_path / "m", *quick).exit_code == 0
    res = invoke("report", tmp_path / "m", test, "-o", tmp_path / "r.html")
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and (tmp_path / "r.html").read_text().startswith("<!DOCTYPE")
    EmbeddingSet(np.eye(5)).save(tmp_path / "s")
    res = invoke("report", tmp_path / "s", "-o", tmp_path / "s.html")
    assert res.exit_code == 0, res.output
    res = invoke("report", tmp_path / "m", "-o", tmp_path / "x.html")
    assert res.exit_code == 2 and "needs DATA" in res.output


def test_no_reject_turns_rejection_off_at_predict_and_evaluate_time(tmp_path, quick_model):
    """Closed-set data: --no-reject gives the head's best class for every row without a
    refit, and evaluate reports head accuracy beside accuracy either way."""
    import csv

    from embedlab.data.datasets import demo_path
    from embedlab.models.pipeline import Pipeline

    pipe = Pipeline.load(quick_model)
    rows = list(csv.DictReader(demo_path("test").open(encoding="utf-8")))
    # In-scope rows and a few nonsense inputs the detector rejects.
    texts = [r["text"] for r in rows if r["label"] != "oos"] + ["zxq vlorp gnarble"] * 3
    f = tmp_path / "in.csv"
    with f.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text"])
        w.writerows([t] for t in texts)
    assert (pipe.predict(texts) == "oos").any()  # the default rejects some
    closed = pipe.predict(texts, reject=False)
    assert set(closed) <= set(pipe.classes_)
    np.testing.assert_array_equal(closed, pipe.predict_details(texts, top_k=1).top_labels[:, 0])

    res = invoke("predict", quick_model, f, "-o", tmp_path / "p.csv", "--no-reject")
    assert res.exit_code == 0, res.output
    assert "rejection off" in res.output
    got = list(csv.DictReader((tmp_path / "p.csv").open(encoding="utf-8")))
    assert [r["label"] for r in got] == closed.tolist()
    assert {r["out_of_scope"] for r in got} == {"false"}

    labelled = tmp_path / "closed.csv"
    with labelled.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows([r["text"], r["label"]] for r in rows if r["label"] != "oos")
    on = json.loads(invoke("evaluate", quick_model, labelled, "--json").stdout)
    off = json.loads(invoke("evaluate", quick_model, labelled, "--json", "--no-reject").stdout)
    assert on["rejection"] and not off["rejection"]
    assert off["accuracy"] == off["head_accuracy"] == on["head_accuracy"]
    assert off["in_scope_rejected"] == 0.0
    res = invoke("evaluate", quick_model, labelled)
    assert res.exit_code == 0 and "no out-of-scope rows" in res.output
    assert "head_accuracy" in res.output


def test_predict_fdr_is_one_decision_over_the_whole_file_and_sets_cover(tmp_path, quick_model):
    """--fdr: Benjamini-Hochberg over every row's oos_pvalue (not per chunk); --sets: the
    prediction_set column holds the model's sets."""
    import pyarrow.csv as pacsv

    from embedlab.core.conformal import benjamini_hochberg
    from embedlab.data.datasets import demo_path
    from embedlab.models.pipeline import Pipeline

    out = tmp_path / "p.csv"
    args = ["predict", str(quick_model), str(demo_path("test")), "-o", str(out)]
    res = CliRunner().invoke(app, [*args, "--fdr", "0.2", "--sets", "0.9", "--chunk-rows", "17"])
    assert res.exit_code == 0, res.output
    assert "Benjamini-Hochberg at FDR 0.2" in res.output
    rows = pacsv.read_csv(out).to_pylist()
    p = np.array([r["oos_pvalue"] for r in rows])
    rejected = benjamini_hochberg(p, 0.2)
    assert [r["out_of_scope"] for r in rows] == rejected.tolist()
    assert all(
        r["predicted_label"] == ("oos" if r["out_of_scope"] else r["top1_label"]) for r in rows
    )
    pipe = Pipeline.load(quick_model)
    texts = [r["text"] for r in rows]
    sets = pipe.predict_details(texts, sets=0.9).prediction_sets
    assert [r["prediction_set"] or "" for r in rows] == ["|".join(s) for s in sets]
    assert [r["set_size"] for r in rows] == [len(s) for s in sets]
    res = CliRunner().invoke(app, [*args, "--force", "--fdr", "2"])
    assert res.exit_code == 2 and "fdr" in res.output
