"""Streaming predictions (embedlab.scale.predict_stream / `embedlab predict`): chunk by chunk equals
all at once, over texts and over stored (sharded) vectors, every output format, another
encoder's vectors refused, and a job that failed midway (an error, or `embedlab predict`
killed at chosen pieces) resumed with only the missing chunks computed."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from killing import crash_at
from typer.testing import CliRunner

from embedlab.cli import app
from embedlab.core.errors import ValidationError
from embedlab.data.datasets import demo_path
from embedlab.models.pipeline import Pipeline
from embedlab.scale.predict_stream import predict_file

runner = CliRunner()


def cli(*args) -> str:
    res = runner.invoke(app, [*map(str, args)])
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="module")
def pipe(quick_model):
    return Pipeline.load(quick_model, cache=False)


def read(path):
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    import pyarrow.csv as pacsv

    return pacsv.read_csv(path).to_pylist()


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_chunks_equal_one_pass_over_texts(quick_model, tmp_path, suffix):
    data = demo_path("test")
    whole, parts = tmp_path / f"whole{suffix}", tmp_path / f"parts{suffix}"
    cli("predict", quick_model, data, "-o", whole, "--no-cache")
    out = cli("predict", quick_model, data, "-o", parts, "--chunk-rows", "7", "--no-cache")
    assert "out of scope" in out
    a, b = read(whole), read(parts)
    assert len(a) == len(b) == 102
    assert [r["predicted_label"] for r in a] == [r["predicted_label"] for r in b]
    assert [r["text"] for r in a] == [r["text"] for r in b]
    np.testing.assert_allclose([r["novelty"] for r in a], [r["novelty"] for r in b], atol=1e-5)


def test_stored_vectors_give_the_labels_of_the_texts(quick_model, pipe, tmp_path):
    data = demo_path("test")
    space = tmp_path / "space"
    cli("encode", data, "-o", space, "--shard-rows", "30", "--no-cache")
    job = predict_file(pipe, space, tmp_path / "v.parquet", chunk_rows=20)
    assert job.rows == 102 and job.chunks == 7  # shards of 30 (20 + 10) x 3, and 12
    from_vectors = pq.read_table(tmp_path / "v.parquet")
    d = pipe.predict_details(
        list(pq.read_table(space / "shards" / "00000" / "rows.parquet").column("text").to_pylist())
    )
    assert from_vectors.column("predicted_label").to_pylist()[:30] == d.labels.tolist()
    assert from_vectors.column("id").to_pylist() == [str(i) for i in range(102)]
    texts = predict_file(pipe, data, tmp_path / "t.parquet")
    assert texts.out_of_scope == job.out_of_scope
    np.testing.assert_allclose(
        from_vectors.column("novelty").to_numpy(),
        pq.read_table(tmp_path / "t.parquet").column("novelty").to_numpy(),
        atol=1e-5,
    )


def test_vectors_of_another_encoder_are_refused(quick_model, pipe, tmp_path):
    space = tmp_path / "layer3"
    cli("encode", demo_path("test"), "-o", space, "--layer", "3", "--no-cache")
    with pytest.raises(ValidationError, match="layer"):
        predict_file(pipe, space, tmp_path / "x.csv")
    imported = tmp_path / "imported"
    np.save(tmp_path / "v.npy", np.ones((3, 384), dtype=np.float32))
    cli("import", tmp_path / "v.npy", "-o", imported)
    res = runner.invoke(
        app, ["predict", str(quick_model), str(imported), "-o", str(tmp_path / "y.csv")]
    )
    assert res.exit_code != 0 and "unknown origin" in res.output


class _FailAfter:
    """The pipeline, failing on its third chunk (a crash midway)."""

    def __init__(self, pipe, n):
        self.pipe, self.n, self.calls = pipe, n, 0

    @property
    def encoder_(self):
        return self.pipe.encoder_

    def predict_details(self, texts, **kw):
        self.calls += 1
        if self.calls > self.n:
            raise RuntimeError("killed")
        return self.pipe.predict_details(texts, **kw)


def test_a_failed_prediction_resumes_with_the_missing_chunks_only(pipe, tmp_path):
    data, out = demo_path("test"), tmp_path / "p.jsonl"
    flaky = _FailAfter(pipe, 2)
    with pytest.raises(RuntimeError, match="killed"):
        predict_file(flaky, data, out, chunk_rows=25)
    assert not out.exists()
    assert len(list((tmp_path / ".p.jsonl.partial" / "pieces").glob("0000*"))) == 2
    counting = _FailAfter(pipe, 99)
    job = predict_file(counting, data, out, chunk_rows=25)
    assert job.resumed == 2 and counting.calls == 3 and job.chunks == 5
    predict_file(pipe, data, tmp_path / "ref.jsonl", chunk_rows=25)
    assert read(out) == read(tmp_path / "ref.jsonl")
    assert not (tmp_path / ".p.jsonl.partial").exists()


def test_a_killed_predict_resumes_with_every_row_once_in_order(quick_model, tmp_path):
    """`embedlab predict` killed (SIGKILL) at a chosen piece, then run again: the output is
    the one of a run never killed — every row once, in input order. Bounded: 3 kills."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from embedlab.data.datasets import load_demo

    t = load_demo("train")
    texts = [f"{x} ({k})" for k in range(3) for x in t.texts]
    data = tmp_path / "big.csv"
    pacsv.write_csv(pa.table({"text": texts}), data)
    out = tmp_path / "p.jsonl"
    cmd = [sys.executable, "-m", "embedlab.cli", "predict", str(quick_model), str(data)]
    cmd += ["-o", str(out), "--chunk-rows", "30"]
    crash_at(cmd, ["before-commit:4"], out)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "done by an earlier run" in res.stdout, res.stdout
    cli("predict", quick_model, data, "-o", tmp_path / "ref.jsonl", "--chunk-rows", "30")
    got = read(out)
    assert got == read(tmp_path / "ref.jsonl")
    assert [r["text"] for r in got] == texts
    assert not (tmp_path / ".p.jsonl.partial").exists()
