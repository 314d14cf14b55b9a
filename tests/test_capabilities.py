"""The structure × capability table (embedlab.models.capabilities, the README) walked cell by
cell: a model of every label structure is fitted on a deterministic fake encoder and every
capability is run on it; a cell marked ✓ must work, a cell marked ✗ must be refused with a
ValidationError (its reason is in the table). Fast: no packaged encoder."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import pytest

from embedlab.core.errors import ValidationError
from embedlab.models.capabilities import CAPABILITIES, STRUCTURES, TABLE, capability_table
from embedlab.models.fit_options import check_fit_options
from embedlab.models.hierarchy import Hierarchy
from embedlab.models.multilabel import MultiLabelClassifier
from embedlab.models.openset import OpenSetClassifier
from embedlab.models.pipeline import Pipeline

WORDS = ["alarm", "weather", "music", "timer"]
TEXTS = [f"{w} request number {i}" for w in WORDS for i in range(12)]
LABELS = [w for w in WORDS for _ in range(12)]
NEXT = {w: WORDS[(i + 1) % 4] for i, w in enumerate(WORDS)}
MULTI = [lab if i % 3 else f"{lab},{NEXT[lab]}" for i, lab in enumerate(LABELS)]
PARENTS = {"alarm": "home", "timer": "home", "weather": "info", "music": "info"}
TREE = Hierarchy.from_parents(PARENTS)
POOL = [f"{w} please, pool row {i}" for w in WORDS for i in range(6)]
NEW = ["tell me a joke a", "tell me a joke b", "tell me a joke c"]


def _pipeline(structure: str, encoder, unlabeled=None) -> Pipeline:
    head = OpenSetClassifier(head="prototype", detector="max-cosine")
    if structure == "single-label":
        return Pipeline(encoder, head, adapt=False).fit(TEXTS, LABELS, unlabeled=unlabeled)
    if structure == "hierarchy":
        pipe = Pipeline(encoder, head, adapt=False, hierarchy=TREE)
        return pipe.fit(TEXTS, LABELS, unlabeled=unlabeled)
    if structure == "multi-label":
        # per-label thresholds: on the fake encoder's 48 rows a shared threshold is
        # arbitrary (the strategies themselves: tests/test_multilabel.py)
        clf = MultiLabelClassifier(head="linear", threshold_strategy="per-label")
        pipe = Pipeline(encoder, clf, adapt=False)
        return pipe.fit(TEXTS, MULTI, unlabeled=unlabeled)
    if unlabeled is not None:
        check_fit_options("zero-shot", unlabeled=True)
    return Pipeline(encoder, adapt=False).fit_labels_only(WORDS, in_scope_texts=TEXTS)


def _records_model(tmp_path: Path):
    """A table model (no text: the categorical column is the word) fitted and saved."""
    import numpy as np

    from embedlab.tables import TableModel

    data = {"word": np.array([t.split()[0] for t in TEXTS], dtype=object),
            "n": np.arange(len(TEXTS), dtype=float) % 5}  # fmt: skip
    model = TableModel(cat_cols=["word"], num_cols=["n"], epochs=30).fit(data, LABELS)
    model.save(tmp_path / "records")
    return model, data


def _run_records(capability: str, tmp_path: Path) -> None:
    """A capability of a table model: what works runs, what does not meets its gate (the
    option checks the command line applies, or the refusal of text-model commands)."""
    from embedlab.tables.model import check_table_options

    model, data = _records_model(tmp_path)
    assert (model.predict(data) == LABELS).mean() > 0.9
    gates = {
        "fit --adapt": "adapt",
        "fit --unlabeled": "unlabeled",
        "p-values, --fdr": "fdr",
        "--sets": "sets",
        "concepts, --explain": "explain",
        "drift alarm": "drift",
    }
    if capability in gates:
        check_table_options(**{gates[capability]: True})
    elif capability == "report":
        from embedlab.analysis.tables_report import table_model_report

        assert "leans on" in table_model_report(model, data, LABELS)
    elif capability == "streaming / Ray predict":
        from embedlab.cli.tables import predict_tables

        data_file = tmp_path / "in.csv"
        with data_file.open("w", newline="", encoding="utf-8") as fh:
            rows = zip(data["word"], data["n"], strict=True)
            csv.writer(fh).writerows([["word", "n"], *rows])
        kw = dict(chunk_rows=7, keep_columns=False, id_col=None, split=None, delimiter=None,
                  cache=False, backend=None)  # fmt: skip
        out = tmp_path / "out.csv"
        predict_tables(tmp_path / "records", data_file, out, **kw)  # streams: works
        assert out.read_text().count("\n") == len(TEXTS) + 1
        predict_tables(
            tmp_path / "records", data_file, tmp_path / "o2.csv", refused={"ray": True}, **kw
        )
    else:  # the text-model commands (class changes, discover) all start by loading a bundle
        Pipeline.load(tmp_path / "records")


def _run(structure: str, capability: str, encoder, tmp_path: Path) -> None:
    """Do ``capability`` with a fitted model of ``structure`` (errors propagate)."""
    if structure == "records":
        _run_records(capability, tmp_path)
        return
    if capability == "fit --adapt":
        # the option rules; adaptation itself runs in tests/test_adapt.py (a real encoder)
        check_fit_options("single-label" if structure == "hierarchy" else structure, adapt=True)
        return
    if capability == "fit --unlabeled":
        pipe = _pipeline(structure, encoder, unlabeled=POOL)
        assert pipe.info["self_training"]["pool"] == len(POOL)
        return
    pipe = _pipeline(structure, encoder)
    if capability == "add-classes":
        parents = {"joke": "info"} if pipe.hierarchy is not None else None
        new = pipe.add_classes(NEW, ["joke"] * 3, parents=parents)
        assert "joke" in new.classes_ and new.info["lineage"]["version"] == 2
        said = new.predict(NEW[:1])[0]  # a label (single-label) or a label set
        assert said == "joke" or "joke" in said
    elif capability == "remove-classes":
        assert "music" not in pipe.remove_classes(["music"]).classes_
    elif capability == "discover":
        assert pipe.discover(TEXTS + POOL, all_rows=True, min_size=3).n_input == len(TEXTS + POOL)
    elif capability == "serve-time classes":
        # the service's gate (the service itself: tests/test_serve_changes.py)
        why = pipe.class_change_refusal
        if why is not None:
            raise ValidationError(why)
    elif capability == "streaming / Ray predict":
        # the path every chunk takes, locally and on Ray workers (tests/test_ray.py)
        from embedlab.scale.predict_stream import predict_file

        data = tmp_path / "in.csv"
        with data.open("w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows([["text"], *([t] for t in POOL)])
        job = predict_file(pipe, data, tmp_path / "out.csv", chunk_rows=7, progress=False)
        assert job.rows == len(POOL) and job.chunks == 4
    elif capability == "p-values, --fdr":
        d = pipe.predict_details(TEXTS + NEW, fdr=0.2)
        assert d.p_value.shape == (len(TEXTS) + 3,) and ((d.p_value > 0) & (d.p_value <= 1)).all()
    elif capability == "--sets":
        d = pipe.predict_details(TEXTS, sets=0.9)
        assert len(d.prediction_sets) == len(TEXTS)
    elif capability == "drift alarm":
        from embedlab.detect.drift import DriftMonitor

        monitor = DriftMonitor(pipe.classifier_.p_reference())
        monitor.update(pipe.predict_details(NEW).p_score)
        assert monitor.summary()["rows"] == len(NEW)
    elif capability == "concepts, --explain":
        texts = TEXTS if structure == "zero-shot" else None  # it keeps no rows of its own
        found = pipe.fit_concepts(texts, n_atoms=8, k=2, epochs=3)
        assert len(found.predict_details(TEXTS[:3], explain=True).explain()) == 3
    elif capability == "report":
        from embedlab.analysis.report import model_report

        labels = MULTI if pipe.multi_label else LABELS
        assert "<html" in model_report(pipe, TEXTS, labels).lower()
    else:  # pragma: no cover - a capability the table lists but this walk does not know
        raise AssertionError(f"no walk for {capability!r}")


@pytest.mark.parametrize("capability", CAPABILITIES)
@pytest.mark.parametrize("structure", STRUCTURES)
def test_every_cell_of_the_capability_table(structure, capability, fake_encoder, tmp_path):
    why = TABLE[structure][capability]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few rows per class: the heads warn, as they should
        if why is None:
            _run(structure, capability, fake_encoder, tmp_path)
        else:
            assert why.strip() and "\n" not in why
            with pytest.raises(ValidationError):
                _run(structure, capability, fake_encoder, tmp_path)


def test_no_cell_is_empty_and_the_readme_shows_the_table():
    assert set(TABLE) == set(STRUCTURES)
    for row in TABLE.values():
        assert set(row) == set(CAPABILITIES)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert capability_table() in readme
