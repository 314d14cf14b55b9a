"""The CLI through Typer's runner: encode, import, info, demo, and readable errors."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from embedlab.cli import app
from embedlab.space import EmbeddingSet

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
    for cmd in ([], ["encode"], ["info"], ["demo"], ["import"]):
        res = invoke(*cmd, "--help")
        assert res.exit_code == 0, res.output
        assert "Example" in res.output or "embedlab demo" in res.output


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
    info = json.loads(res.output)
    assert info["n"] == 3 and info["label_counts"] == {"travel": 2, "music": 1}

    # Second run with --force: every text comes from the cache.
    res = invoke("encode", data_csv, "-o", out, "--force")
    assert res.exit_code == 0 and "0 encoded, 3 from cache" in res.output


def test_encode_no_cache(tmp_path, data_csv):
    invoke("encode", data_csv, "-o", tmp_path / "a")
    res = invoke("encode", data_csv, "-o", tmp_path / "b", "--no-cache")
    assert res.exit_code == 0 and "3 encoded, 0 from cache" in res.output


def test_encode_refuses_existing_output(tmp_path, data_csv):
    (tmp_path / "space").mkdir()
    res = invoke("encode", data_csv, "-o", tmp_path / "space")
    assert res.exit_code == 2 and "already exists; pass --force" in res.output


def test_encode_errors_are_readable(tmp_path, data_csv):
    res = invoke("encode", data_csv, "-o", tmp_path / "s", "--text-col", "body")
    assert res.exit_code == 2
    assert "error:" in res.output and "no text column 'body'" in res.output
    assert "Traceback" not in res.output
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"text\nfine\n\xff\xfe\n")
    res = invoke("encode", bad, "-o", tmp_path / "s")
    assert res.exit_code == 2 and "not valid UTF-8" in res.output


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


def test_demo_runs(tmp_path):
    res = invoke("demo", "-o", tmp_path / "demo")
    assert res.exit_code == 0, res.output
    assert "178 texts" in res.output and "102 texts" in res.output
    assert "1-nearest-neighbour accuracy" in res.output
    train = EmbeddingSet.load(tmp_path / "demo" / "train")
    assert train.n == 178 and len(train.classes) == 13


def test_version():
    res = invoke("--version")
    assert res.exit_code == 0 and "embedlab" in res.output
