"""The POOR cases of the issue-24 probe, one test each: the service and the command line
agree, messages count rows from 1 and name file and row, bad options are refused, damaged
state is recovered from, and what is saved does not depend on the machine's speed."""

from __future__ import annotations

import json
import shutil
import sqlite3
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from embedlab.cli import app
from embedlab.models.pipeline import Pipeline

JOKES = ["tell me a joke", "make me laugh", "say something funny", "know any good jokes"]


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def model(quick_model, tmp_path) -> Path:
    out = tmp_path / "model"
    shutil.copytree(quick_model, out)
    return out


@pytest.fixture
def client(model):
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from fastapi.testclient import TestClient

    from embedlab.serve import ServeConfig, create_app

    application = create_app(ServeConfig(paths=[str(model)]))
    with TestClient(application) as c:
        c.app_state = application.state
        yield c


def test_http_refuses_missing_label_spellings_and_one_text_with_two_labels(client):
    url = "/v1/models/model/classes"
    schema = json.dumps(client.get("/openapi.json").json())
    assert "NaN" in schema  # the schema says which labels read as missing
    for spelled in ("NaN", "NA", "null", " n/a "):
        body = {"examples": [{"text": "tell me a joke", "label": spelled}]}
        r = client.post(url, json=body)
        assert r.status_code == 422 and "missing label" in r.json()["error"]["message"]
    body = {
        "examples": [
            {"text": "tell me a joke", "label": "tell_joke"},
            {"text": "tell me a joke ", "label": "humour"},
        ]
    }
    r = client.post(url, json=body)  # valid against the schema, in conflict with itself
    assert r.status_code == 409 and "two labels" in r.json()["error"]["message"]
    assert client.get("/v1/models").json()["data"][0]["version"] == 1  # nothing changed


def test_deeply_nested_json_is_named_as_such(client):
    r = client.post(
        "/v1/classify", content=b"[" * 100_000, headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and "nested too deeply" in r.json()["error"]["message"]
    r = client.post(
        "/v1/classify", content=b"\xff\xfe", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422


def test_a_refit_gives_the_served_model_a_new_version_and_fingerprint(client, model):
    from embedlab.data.datasets import demo_path

    r = client.post(
        "/v1/models/model/classes",
        json={"examples": [{"text": t, "label": "tell_joke"} for t in JOKES]},
    )
    assert r.status_code == 200
    before = client.get("/v1/models").json()["data"][0]
    assert before["version"] == 2
    args = ["fit", demo_path("train"), "-o", model, "--force", "--no-adapt", "--no-cache"]
    res = _run(*args, "--head", "prototype", "--detector", "knn")
    assert res.exit_code == 0, res.output
    assert client.portal.call(client.app_state.reload_changed) == [("model", "ok")]
    after = client.get("/v1/models").json()["data"][0]
    assert after["version"] == 3 and after["fingerprint"] != before["fingerprint"]
    assert "tell_joke" not in after["classes"]  # the refit's classes, not the old ones
    history = Pipeline.load(model).info["lineage"]["history"]
    assert [h["op"] for h in history] == ["add", "refit"]


def test_a_corrupted_keys_file_answers_503_and_logs_why(model, tmp_path, caplog):
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from fastapi.testclient import TestClient

    from embedlab.serve import ServeConfig, create_app
    from embedlab.serve.keys import KeyStore

    keys = tmp_path / "keys.json"
    _, token = KeyStore(keys).create("app")
    application = create_app(ServeConfig(paths=[str(model)], keys_file=str(keys)))
    body = {"model": "model", "input": ["hello"]}
    with TestClient(application) as c:
        h = {"Authorization": f"Bearer {token}"}
        assert c.post("/v1/classify", json=body, headers=h).status_code == 200
        keys.write_text('{"keys": [{"id": ')  # half-written by hand
        r = c.post("/v1/classify", json=body, headers=h)
        assert r.status_code == 503 and "keys file unreadable" in r.json()["error"]["message"]
    assert any("keys file cannot be read" in rec.getMessage() for rec in caplog.records)


def test_row_numbers_count_from_1(tmp_path):
    v = np.ones((3, 4), np.float32)
    v[1, 2] = np.nan
    np.save(tmp_path / "v.npy", v)
    res = _run("import", tmp_path / "v.npy", "-o", tmp_path / "s")
    assert res.exit_code == 2 and "rows 2 (counted from 1)" in res.output


def test_duplicate_ids_and_megabyte_cells_name_file_and_row(tmp_path):
    from embedlab.core.errors import DataFormatError
    from embedlab.data.readers import read_texts

    f = tmp_path / "t.csv"
    f.write_text("id,text\na,hello\nb,world\na,again\n")
    with pytest.raises(DataFormatError) as err:
        read_texts(f, id_col="id", label_col=None)
    assert str(f) in str(err.value) and "'a'" in str(err.value)
    assert "rows 1, 3 (lines 2, 4)" in str(err.value)
    big = "word " * 220_000  # 1.1 MB in one cell: read as JSONL reads it
    f.write_text(f'text\n"{big}"\nshort\n')
    table = read_texts(f, label_col=None)
    assert len(table.texts) == 2 and len(table.texts[0]) == len(big)
    import csv

    assert csv.field_size_limit() == 131072  # the process-wide setting is put back


def test_the_planned_command_keeps_its_storage_choice():
    from embedlab.compress.planner import Plan, PlanRow

    rows = [
        PlanRow(6, 384, "float32", 1536, 0.80, {}, 1.0, 0.1, "layer6,dim384,norm", None),
        PlanRow(6, 128, "int8", 128, 0.80, {}, 1.0, 0.1, "layer6,dim128,norm,int8", None),
    ]
    plan = Plan("sts", "spearman", rows, 0.005, None, None)
    assert plan.recommended.storage == "int8"
    assert "--spec sq8" in plan.next_command() and "--dim 128" in plan.next_command()


def test_a_class_with_one_example_is_kept_and_named(caplog):
    from embedlab.models.openset import OpenSetClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(61, 16)).astype(np.float32)
    y = np.array(["a"] * 30 + ["b"] * 30 + ["lonely"])
    clf = OpenSetClassifier().fit(X, y)  # was: "needs at least 2 classes; got only class 'b'"
    assert "lonely" in clf.classes_
    assert any("(lonely)" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "args, says",
    [
        (["--adapt-budget", "0"], "--adapt-budget must be more than 0"),
        (["--adapt-budget", "-5"], "--adapt-budget must be more than 0"),
        (["--time-budget", "0"], "--time-budget must be more than 0"),
    ],
)
def test_budgets_must_be_positive(tmp_path, args, says):
    from embedlab.data.datasets import demo_path

    res = _run("fit", demo_path("train"), "-o", tmp_path / "m", *args)
    assert res.exit_code == 2 and says in res.output
    assert not (tmp_path / "m").exists()


def test_a_port_out_of_range_is_refused(model):
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    for port in ("0", "70000"):
        res = _run("serve", model, "--port", port)
        assert res.exit_code == 2 and "--port must be 1..65535" in res.output


def test_damaged_sqlite_pages_move_the_cache_aside(tmp_path, caplog):
    from embedlab.encoders.cache import EmbeddingCache

    cache = EmbeddingCache(tmp_path)
    keys = [f"k{i}".encode() for i in range(3000)]
    vecs = np.random.default_rng(0).normal(size=(3000, 64)).astype(np.float32)
    cache.put_many("m", keys, vecs)
    with sqlite3.connect(cache.path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = bytearray(cache.path.read_bytes())
    page = 4096
    for start in range(2 * page, len(raw) - page, 3 * page):  # pages, not the header
        raw[start : start + page] = b"\xa5" * page
    cache.path.write_bytes(bytes(raw))
    fresh = EmbeddingCache(tmp_path)
    assert fresh.get_many("m", keys, 64) == {}
    assert list(tmp_path.glob("*.corrupt-*")), "the damaged database was not moved aside"
    fresh.put_many("m", keys[:10], vecs[:10])
    assert len(EmbeddingCache(tmp_path).get_many("m", keys[:10], 64)) == 10


def test_scikit_learn_warnings_become_one_line(capsys):
    from sklearn.exceptions import ConvergenceWarning

    from embedlab.cli.common import user_errors

    with pytest.warns(UserWarning, match="someone else's"), user_errors():
        for i in range(7):  # seven places in scikit-learn that warn
            warnings.warn_explicit(
                "lbfgs failed to converge (status=1)", ConvergenceWarning, "sklearn/x.py", i
            )
        warnings.warn("a warning of someone else's", UserWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert "scikit-learn warned 7 times (ConvergenceWarning" in err
    assert err.count("scikit-learn warned") == 1  # the other warning went on as it was


def test_output_files_follow_the_umask(model, tmp_path):
    from embedlab.store.atomic import _umask

    data = tmp_path / "in.csv"
    data.write_text("text\nwake me up at 7\nwhat's the weather\n")
    out = tmp_path / "pred.csv"
    res = _run("predict", model, data, "-o", out, "--no-cache", "--chunk-rows", "1")
    assert res.exit_code == 0, res.output
    assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert (model / "bundle.json").stat().st_mode & 0o777 == out.stat().st_mode & 0o777
    # every file of a saved directory too (safetensors writes its file 0600)
    Pipeline.load(model).save(tmp_path / "again")
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "again").rglob("*.*")}
    assert set(modes.values()) == {0o666 & ~_umask()}, modes


def test_the_same_fit_gives_the_same_checksum(quick_model, tmp_path):
    from embedlab.data.datasets import demo_path

    out = tmp_path / "again"
    args = ["fit", demo_path("train"), "-o", out, "--no-adapt", "--no-cache"]
    args += ["--target-fpr", "0.05"]  # the options conftest's quick_model was fitted with
    assert _run(*args, "--head", "prototype", "--detector", "max-cosine").exit_code == 0
    a = json.loads((quick_model / "bundle.json").read_text())
    b = json.loads((out / "bundle.json").read_text())
    assert a["timings"] and a["checksum"] == b["checksum"]
