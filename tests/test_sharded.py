"""Sharded EmbeddingSets and streaming, resumable `embedlab encode`: the shard format
(manifest, checksums, a missing or corrupt shard named), chunked reading equal to reading
whole, the one-shard layout, and a job killed at chosen pieces finishing with every row
once, in input order."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from killing import crash_at
from typer.testing import CliRunner

from embedlab.cli import app
from embedlab.compress.index import Index
from embedlab.core.errors import DataFormatError, StoreError, ValidationError
from embedlab.data.datasets import demo_path, load_demo
from embedlab.data.embedding_set import EmbeddingSet
from embedlab.data.readers import read_texts
from embedlab.data.sharded import ShardedSet, ShardWriter, filter_set, is_sharded
from embedlab.data.text_chunks import iter_texts
from embedlab.store.manifest import sha256_file

runner = CliRunner()


def encode(*args) -> str:
    res = runner.invoke(app, ["encode", *map(str, args), "--no-cache"])
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="module")
def sharded_and_whole(tmp_path_factory):
    root = tmp_path_factory.mktemp("sharded")
    data = demo_path("train")
    encode(data, "-o", root / "whole")
    encode(data, "-o", root / "sharded", "--shard-rows", "50")
    return root / "sharded", root / "whole"


def test_a_sharded_encode_equals_the_one_shot_encode(sharded_and_whole):
    sharded, whole = sharded_and_whole
    assert is_sharded(sharded) and not is_sharded(whole)
    ss = ShardedSet(sharded)
    assert ss.shape == (178, 384) and [s["rows"] for s in ss.shards] == [50, 50, 50, 28]
    assert [s["first_row"] for s in ss.shards] == [0, 50, 100, 150]
    one = EmbeddingSet.load(whole)
    every = EmbeddingSet.load(sharded)  # all shards, in order
    np.testing.assert_allclose(every.vectors, one.vectors, atol=1e-6)
    assert every.ids.tolist() == one.ids.tolist() == [str(i) for i in range(178)]
    assert every.labels.tolist() == one.labels.tolist()
    assert every.texts.tolist() == one.texts.tolist()
    assert ss.label_counts() == one.label_counts()
    # a one-shard set is the one-file layout, and opens as a set of one shard
    assert ShardedSet(whole).shards[0]["rows"] == 178
    assert (whole / "vectors.npy").is_file() and not (whole / "shards").exists()
    for i, part in enumerate(ss):  # shard by shard, memory-mapped
        assert isinstance(part.vectors, np.memmap)
        np.testing.assert_allclose(part.vectors, one.vectors[50 * i : 50 * i + part.n], atol=1e-6)


def test_info_reads_the_manifest_and_labels_only(sharded_and_whole, tmp_path):
    sharded, _ = sharded_and_whole
    copy = tmp_path / "s"
    shutil.copytree(sharded, copy)
    for shard in (copy / "shards").iterdir():
        (shard / "vectors.npy").write_bytes(b"not read by info")
    res = runner.invoke(app, ["info", str(copy)])  # checks the checksums by default
    assert res.exit_code != 0 and "shards/00000: vectors.npy" in res.output
    res = runner.invoke(app, ["info", str(copy), "--json", "--no-verify"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["n"] == 178 and info["shards"] == 4 and sum(info["label_counts"].values()) == 178


def test_a_missing_or_corrupt_shard_is_named(sharded_and_whole, tmp_path):
    sharded, _ = sharded_and_whole
    copy = tmp_path / "s"
    shutil.copytree(sharded, copy)
    f = copy / "shards" / "00002" / "vectors.npy"
    f.write_bytes(f.read_bytes()[:-8])
    ss = ShardedSet(copy)
    ss.shard(1)  # the others still read
    with pytest.raises(StoreError, match=r"shards/00002: vectors.npy has .* bytes"):
        ss.shard(2)
    with pytest.raises(StoreError, match="shards/00002"):
        EmbeddingSet.load(copy)
    shutil.rmtree(copy / "shards" / "00003")
    with pytest.raises(StoreError, match=r"shards/00003 is missing"):
        ss.shard(3)
    with pytest.raises(StoreError, match="shards/00002"):
        ss.verify()  # the first bad shard, named
    rows = copy / "shards" / "00000" / "rows.parquet"
    data = bytearray(rows.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    rows.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="shards/00000: checksum mismatch for rows.parquet"):
        ss.shard(0)


def test_vectors_kept_in_parquet_read_as_the_npy_ones(sharded_and_whole, quick_model, tmp_path):
    sharded, _ = sharded_and_whole
    out = tmp_path / "pq"
    encode(demo_path("train"), "-o", out, "--shard-rows", "50", "--vector-format", "parquet")
    assert not list(out.rglob("vectors.npy")) and len(list(out.rglob("rows.parquet"))) == 4
    column = pq.read_table(out / "shards" / "00001" / "rows.parquet").column("vector")
    assert str(column.type) == "fixed_size_list<element: float>[384]"  # for any Parquet tool
    got, want = EmbeddingSet.load(out), EmbeddingSet.load(sharded)
    np.testing.assert_array_equal(np.array(column.to_pylist(), np.float32), got.vectors[50:100])
    np.testing.assert_allclose(got.vectors, want.vectors, atol=1e-6)
    assert got.ids.tolist() == want.ids.tolist() and got.texts.tolist() == want.texts.tolist()
    assert (
        json.loads(runner.invoke(app, ["info", str(out), "--json"]).output)["vectors"] == "parquet"
    )
    # one shard stays in the sharded layout (format 1 is vectors.npy); filtering keeps the format
    encode(demo_path("test"), "-o", tmp_path / "one", "--vector-format", "parquet")
    assert ShardedSet(tmp_path / "one").vector_format == "parquet" and is_sharded(tmp_path / "one")
    filter_set(out, tmp_path / "oos", ["oos"])
    assert ShardedSet(tmp_path / "oos").vector_format == "parquet"
    assert EmbeddingSet.load(tmp_path / "oos").n == want.label_counts()["oos"]
    # predictions and an index read them as they read vectors.npy
    for space, name in ((out, "a.csv"), (sharded, "b.csv")):
        res = runner.invoke(
            app, ["predict", str(quick_model), str(space), "-o", str(tmp_path / name)]
        )
        assert res.exit_code == 0, res.output
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    index, rows = Index.from_set(out, "flat")
    assert len(index) == 178 and rows.column("id").to_pylist() == want.ids.tolist()
    # a corrupt shard is named; a vector column of the wrong shape too
    f = out / "shards" / "00002" / "rows.parquet"
    f.write_bytes(f.read_bytes()[:-8])
    with pytest.raises(StoreError, match=r"shards/00002: rows.parquet has .* bytes"):
        ShardedSet(out).shard(2)
    bad = tmp_path / "bad"
    shutil.copytree(tmp_path / "one", bad)
    table = pq.read_table(bad / "shards" / "00000" / "rows.parquet")
    table = table.set_column(3, "vector", pa.array(table.column("vector").to_pylist()))
    f = bad / "shards" / "00000" / "rows.parquet"
    pq.write_table(table, f)
    doc = json.loads((bad / "manifest.json").read_text())  # a manifest that agrees with it
    doc["shards"][0]["files"]["rows.parquet"] = {
        "sha256": sha256_file(f),
        "bytes": f.stat().st_size,
    }
    (bad / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(StoreError, match=r"shards/00000: its 'vector' column holds list<.*double>"):
        ShardedSet(bad).shard(0)
    res = runner.invoke(app, ["encode", str(demo_path("test")), "-o", str(tmp_path / "x"),
                              "--vector-format", "arrow"])  # fmt: skip
    assert res.exit_code != 0 and "vector format must be one of npy, parquet" in res.output


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet", ".tsv"])
def test_reading_in_chunks_equals_reading_whole(tmp_path, suffix):
    t = load_demo("train")
    texts = list(t.texts)
    texts[61] = "  "  # an empty text in the second chunk
    table = pa.table(
        {"text": texts, "label": list(t.labels), "note": [f"n{i}" for i in range(178)]}
    )
    path = tmp_path / f"d{suffix}"
    if suffix == ".parquet":
        pq.write_table(table, path, row_group_size=37)
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in table.to_pylist()))
    else:
        import pyarrow.csv as pacsv

        opts = pacsv.WriteOptions(delimiter="\t" if suffix == ".tsv" else ",")
        pacsv.write_csv(table, path, write_options=opts)
    whole = read_texts(path, on_empty="skip")
    chunks = list(iter_texts(path, 25, on_empty="skip"))
    assert [first for first, _ in chunks] == list(range(0, 178, 25))

    def joined(field: str) -> list:
        return [v for _, c in chunks for v in getattr(c, field)]

    assert joined("texts") == whole.texts
    assert joined("ids") == whole.ids  # input row numbers
    assert joined("labels") == whole.labels
    assert joined("skipped_rows") == whole.skipped_rows == [61]
    assert pa.concat_tables([c.metadata for _, c in chunks]).equals(whole.metadata)
    with pytest.raises(DataFormatError, match="row 62") as err:
        list(iter_texts(path, 25))
    assert "empty text" in str(err.value)


def test_writer_resumes_its_own_job_and_discards_another(tmp_path):
    out = tmp_path / "out"
    es = EmbeddingSet(np.eye(4, dtype=np.float32), ids=["a", "b", "c", "d"])
    w = ShardWriter(out, {"input": 1})
    w.write(0, es.take([0, 1]), 0)
    (w.work / "pieces" / "00001.tmp999").mkdir()  # a shard cut off mid-write
    (w.work / "pieces" / "00001.tmp999" / "vectors.npy").write_bytes(b"half")
    w = ShardWriter(out, {"input": 1})
    assert w.done(0) and not w.done(1)
    assert not (w.work / "pieces" / "00001.tmp999").exists()
    w.write(1, es.take([2, 3]), 2)
    with pytest.raises(StoreError, match="shard 2 of 3 is missing"):
        w.finish(3)
    assert w.finish(2) == out.absolute() and not w.work.exists()
    assert EmbeddingSet.load(out).ids.tolist() == ["a", "b", "c", "d"]
    w = ShardWriter(tmp_path / "o2", {"input": 1})
    w.write(0, es.take([0, 1]), 0)
    w = ShardWriter(tmp_path / "o2", {"input": 2})  # other input: starts over
    assert not w.done(0)
    w.write(0, es.take([0, 1]), 0)
    w.write(1, EmbeddingSet(np.eye(4, dtype=np.float32)[:2], ids=["a", "x"]), 2)
    with pytest.raises(ValidationError, match="ids repeat"):
        w.finish(2)


@pytest.mark.slow
def test_a_killed_encode_resumes_with_every_row_once_in_order(tmp_path):
    """`embedlab encode` killed (SIGKILL) at a chosen piece, then run again: the result has
    every input row exactly once, in input order, with the vectors of a run never killed.
    Bounded: 3 kills, each run under 120 s."""
    t = load_demo("train")
    n = 3 * len(t.texts)
    data = tmp_path / "big.csv"
    table = pa.table(
        {
            "text": [f"{x} ({i // len(t.texts)})" for i, x in enumerate(list(t.texts) * 3)],
            "label": list(t.labels) * 3,
        }
    )
    import pyarrow.csv as pacsv

    pacsv.write_csv(table, data)
    reference = tmp_path / "reference"
    encode(data, "-o", reference, "--shard-rows", "40")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "embedlab.cli", "encode", str(data), "-o", str(out)]
    cmd += ["--shard-rows", "40", "--no-cache"]
    crash_at(cmd, ["after-commit:2"], out)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "done by an earlier run" in res.stdout
    got, want = EmbeddingSet.load(out), EmbeddingSet.load(reference)
    assert got.ids.tolist() == want.ids.tolist() == [str(i) for i in range(n)]
    assert got.texts.tolist() == table.column("text").to_pylist()
    np.testing.assert_allclose(got.vectors, want.vectors, atol=1e-6)
    assert not (tmp_path / ".out.partial").exists()


def test_an_index_is_built_shard_by_shard(sharded_and_whole, tmp_path):
    sharded, whole = sharded_and_whole
    a, rows = Index.from_set(sharded, "flat")
    b = Index("flat", 384).add(EmbeddingSet.load(whole).vectors)
    Q = EmbeddingSet.load(whole).vectors[:5]
    assert rows.num_rows == 178 and a.ids.tolist() == [str(i) for i in range(178)]
    np.testing.assert_array_equal(a.search(Q, 3)[0], b.search(Q, 3)[0])
    ivf, _ = Index.from_set(sharded, "ivf4,pq8x4", train_rows=120, seed=0)
    again, _ = Index.from_set(sharded, "ivf4,pq8x4", train_rows=120, seed=0)
    assert len(ivf) == 178
    np.testing.assert_array_equal(ivf.search(Q, 3)[0], again.search(Q, 3)[0])  # seeded
    out = tmp_path / "ix"
    res = runner.invoke(
        app, ["index", str(sharded), "-o", str(out), "--spec", "ivf4,pq8x4", "--train-rows", "120"]
    )
    assert res.exit_code == 0, res.output
    assert len(Index.load(out)) == 178


def test_filter_and_concat_shard_by_shard(sharded_and_whole, tmp_path):
    from embedlab.data.sharded import concat_sets, filter_set

    sharded, whole = sharded_and_whole
    one = EmbeddingSet.load(whole)
    alarms = filter_set(sharded, tmp_path / "alarms", ["set_alarm", "weather_forecast"])
    rest = filter_set(sharded, tmp_path / "rest", ["set_alarm", "weather_forecast"], exclude=True)
    want = one.where_label("set_alarm", "weather_forecast")
    got = EmbeddingSet.load(alarms)
    assert got.ids.tolist() == want.ids.tolist()
    np.testing.assert_allclose(got.vectors, want.vectors, atol=1e-6)
    both = EmbeddingSet.load(concat_sets([alarms, rest], tmp_path / "both"))
    assert both.n == 178 and sorted(both.ids.tolist(), key=int) == one.ids.tolist()
    with pytest.raises(ValidationError, match="ids repeat across the sets"):
        concat_sets([alarms, alarms], tmp_path / "twice")
    with pytest.raises(ValidationError, match="unknown label"):
        filter_set(sharded, tmp_path / "x", ["nope"])


def test_filter_and_concat_on_the_command_line(sharded_and_whole, tmp_path):
    sharded, whole = sharded_and_whole

    def cli(*args):
        res = runner.invoke(app, [*map(str, args)])
        return res.exit_code, " ".join(res.output.split())

    code, said = cli("filter", sharded, "-o", tmp_path / "in", "-l", "oos", "--exclude")
    assert code == 0 and "wrote" in said and "168 × 384 float32 (4 shards)" in said
    assert cli("filter", sharded, "-o", tmp_path / "oos", "--label", "oos")[0] == 0
    code, said = cli("concat", tmp_path / "in", tmp_path / "oos", "-o", tmp_path / "all")
    assert code == 0 and "178 × 384 float32 (5 shards)" in said
    got, one = EmbeddingSet.load(tmp_path / "all"), EmbeddingSet.load(whole)
    assert sorted(got.ids.tolist(), key=int) == one.ids.tolist()
    code, said = cli("concat", tmp_path / "in", sharded, "-o", tmp_path / "twice")
    assert code != 0 and "row ids repeat across the sets" in said
    assert not (tmp_path / "twice").exists() and not (tmp_path / ".twice.partial").exists()
    code, said = cli("filter", sharded, "-o", tmp_path / "x", "-l", "nope")
    assert code != 0 and "unknown label(s) ['nope']" in said
    code, said = cli("filter", sharded, "-o", sharded, "-l", "oos", "--force")
    assert code != 0 and sharded.exists()  # never written over its own input


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["encode", "DATA", "-o", "OUT", "--shard-rows", "0"], "--shard-rows must be at least 1"),
        (["encode", "DATA", "-o", "OUT", "--ray-address", "h:1"], "--ray-address needs --ray"),
        (["encode", "DATA", "-o", "OUT", "--ray", "--ray-actors", "0"], "--ray-actors must be"),
        (["encode", "DATA", "-o", "OUT", "--ray", "--ray-address", "head"], "is not one: give"),
        (["predict", "MODEL", "DATA", "-o", "OUT.csv", "--chunk-rows", "0"], "chunk_rows must"),
        (["index", "SPACE", "-o", "OUT", "--train-rows", "0"], "--train-rows must be at least 1"),
        (["add-classes", "MODEL", "DATA", "--in-place", "--parent", "tell_joke"], "CLASS=PARENT"),
    ],
)
def test_bad_large_input_options_are_named(sharded_and_whole, quick_model, tmp_path, args, message):
    sharded, _ = sharded_and_whole
    fill = {
        "DATA": str(demo_path("test")),
        "OUT": str(tmp_path / "out"),
        "OUT.csv": str(tmp_path / "out.csv"),
        "MODEL": str(quick_model),
        "SPACE": str(sharded),
    }
    if args[0] == "add-classes":  # a copy: the model is not to change
        shutil.copytree(quick_model, tmp_path / "m")
        fill["MODEL"] = str(tmp_path / "m")
    res = runner.invoke(app, [fill.get(a, a) for a in args])
    assert res.exit_code != 0 and message in " ".join(res.output.split()), res.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.csv").exists()
