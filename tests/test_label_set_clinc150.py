"""Issue 13 on CLINC150 through the CLI (skipped without ../shared/data): fit on some
intents, add others with add-classes, remove one, discover hidden ones among the rejected
test rows, and fit with --unlabeled — the loop a user runs, end to end."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from embedlab.cli import app

KNOWN, ADDED, HIDDEN = 12, 3, 4


@pytest.fixture(scope="module")
def clinc_files(tmp_path_factory):
    from embedlab.data.datasets import clinc150_path, load_clinc150

    if not clinc150_path().exists():
        pytest.skip("../shared/data/clinc150 is absent")
    train, test = load_clinc150("train"), load_clinc150("test")
    intents = sorted(set(train.labels))
    chosen = np.random.default_rng(0).choice(intents, KNOWN + ADDED + HIDDEN, replace=False)
    known, added, hidden = chosen[:KNOWN], chosen[KNOWN : KNOWN + ADDED], chosen[KNOWN + ADDED :]
    out = tmp_path_factory.mktemp("clinc")

    def write(name, table, labels):
        with open(out / name, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["text", "label"])
            w.writerows(
                (t, y) for t, y in zip(table.texts, table.labels, strict=True) if y in labels
            )
        return out / name

    files = {
        "train": write("train.csv", train, set(known)),
        "new": write("new.csv", train, set(added)),
        "test": write("test.csv", test, set(known) | set(hidden)),
        "pool": write("pool.csv", train, set(known)),
    }
    return files, known, added, hidden, out


@pytest.mark.slow
def test_the_label_set_loop_on_clinc150(clinc_files):
    from embedlab.models.pipeline import Pipeline

    files, known, added, hidden, out = clinc_files
    runner = CliRunner()

    def run(*args):
        res = runner.invoke(app, [str(a) for a in args])
        assert res.exit_code == 0, res.output
        return res.output

    run("fit", files["train"], "-o", out / "v1", "--no-adapt")
    text = run("add-classes", out / "v1", files["new"], "-o", out / "v2")
    assert f"added {ADDED} classes" in text
    v2 = Pipeline.load(out / "v2")
    assert set(v2.classes_) == set(known) | set(added)
    run("remove-classes", out / "v2", added[0], "-o", out / "v3")
    assert added[0] not in Pipeline.load(out / "v3").classes_

    # the hidden intents are among what v1 rejects on the test rows: discover finds clusters
    run("discover", out / "v1", files["test"], "-o", out / "found", "--min-size", "4")
    summary = json.loads((out / "found" / "summary.json").read_text())
    assert summary["k_estimated"] >= 2
    import pyarrow.csv as pacsv

    rows = pacsv.read_csv(out / "found" / "clusters.csv").to_pylist()
    truth = dict(zip(*_texts_labels(files["test"]), strict=True))
    clustered = [r for r in rows if r["cluster"] >= 0]
    # most clustered rows come from the hidden intents, and clusters are mostly pure
    assert np.mean([truth[r["text"]] in set(hidden) for r in clustered]) > 0.6
    purity = []
    for c in {r["cluster"] for r in clustered}:
        members = [truth[r["text"]] for r in clustered if r["cluster"] == c]
        purity.append(max(members.count(m) for m in set(members)) / len(members))
    assert np.mean(purity) > 0.8
    run("add-classes", out / "v1", out / "found" / "clusters.csv", "-o", out / "v1b")

    # self-training on unlabelled texts
    text = run("fit", files["train"], "-o", out / "st", "--no-adapt", "--unlabeled", files["pool"])
    assert "self-training on" in text


def _texts_labels(path):
    with open(path, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [r["text"] for r in rows], [r["label"] for r in rows]
