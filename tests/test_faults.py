"""Bad input and faults (issue 10): nothing a user owns is lost, the same text gets the same
answer whatever surrounds it, and every error is one readable line.

Cases that need an unprivileged user (read-only directories) run in a subprocess as
``nobody`` via ``setpriv`` when the suite runs as root, and skip with the reason otherwise.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from embedlab.cli import app
from embedlab.core.errors import DataFormatError, RefusedOverwrite, StoreError, ValidationError
from embedlab.data.embedding_set import EmbeddingSet, read_vector_file
from embedlab.data.readers import read_texts
from embedlab.data.text_chunks import iter_texts
from embedlab.store.atomic import atomic_directory, check_output_dir, remove_stale_temps

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _one_error_line(res) -> str:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert "error:" in res.output
    return res.output


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A user's working directory with files that must survive every command."""
    d = tmp_path / "myproject"
    d.mkdir()
    (d / "thesis.tex").write_text("years of work")
    (d / "data.csv").write_text("text,label\nbook a flight,travel\nplay jazz,music\n")
    monkeypatch.chdir(d)
    return d


# ------------------------------------------------------------------ BAD 1: --force deletes
@pytest.mark.parametrize("command", ["encode", "fit"])
def test_force_never_replaces_the_working_directory(project, command):
    res = invoke(command, "data.csv", "-o", ".", "--force")
    out = _one_error_line(res)
    assert "working" in out
    assert (project / "thesis.tex").read_text() == "years of work"
    assert (project / "data.csv").exists()


def test_force_never_replaces_a_directory_embedlab_did_not_write(project, tmp_path):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("keep me")
    vec = tmp_path / "v.npy"
    np.save(vec, np.ones((3, 4), np.float32))
    res = invoke("import", vec, "-o", other, "--force")
    assert "todo.txt" in _one_error_line(res)
    assert (other / "todo.txt").read_text() == "keep me"


def test_force_never_replaces_a_parent_of_the_input(tmp_path):
    d = tmp_path / "inputs"
    d.mkdir()
    vec = d / "v.npy"
    np.save(vec, np.ones((3, 4), np.float32))
    with pytest.raises(RefusedOverwrite, match="holds the input"):
        check_output_dir(d, force=True, inputs=(vec,))
    assert vec.exists()


def test_force_replaces_what_embedlab_wrote(tmp_path):
    vec = tmp_path / "v.npy"
    np.save(vec, np.ones((3, 4), np.float32))
    out = tmp_path / "space"
    assert invoke("import", vec, "-o", out).exit_code == 0
    np.save(vec, np.full((5, 4), 2.0, np.float32))
    res = invoke("import", vec, "-o", out, "--force")
    assert res.exit_code == 0, res.output
    assert EmbeddingSet.load(out).n == 5


# ------------------------------------------------------------------ BAD 2: -o overwrites
def test_predict_output_may_not_be_its_input(project):
    res = invoke("predict", "model", "data.csv", "-o", "data.csv", "--force")
    assert "also an input" in _one_error_line(res)
    assert "book a flight" in (project / "data.csv").read_text()


def test_predict_and_report_need_force_for_an_existing_output(project):
    (project / "out.csv").write_text("precious")
    res = invoke("predict", "model", "data.csv", "-o", "out.csv")
    assert "--force" in _one_error_line(res)
    (project / "report.html").write_text("precious")
    res = invoke("report", "model", "data.csv", "-o", "report.html")
    assert "--force" in _one_error_line(res)
    assert (project / "out.csv").read_text() == "precious"
    assert (project / "report.html").read_text() == "precious"


def test_unwritable_output_is_refused_before_any_work(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    res = invoke("encode", "missing.csv", "-o", blocker / "sub" / "space")
    assert "not a directory" in _one_error_line(res)
    res = invoke("predict", "model", "missing.csv", "-o", "/proc/embedlab-out.csv")
    assert "not writable" in _one_error_line(res)


def test_existing_file_as_output_directory_is_one_line(tmp_path):
    f = tmp_path / "space"
    f.write_text("a file")
    res = invoke("encode", "whatever.csv", "-o", f, "--force")
    assert "not a directory" in _one_error_line(res)
    assert f.read_text() == "a file"


# ------------------------------------------------------------------ BAD 3: batch invariance
@pytest.mark.slow
def test_int8_vectors_do_not_depend_on_batch_neighbours(onnx_cache):
    from embedlab.data.datasets import load_demo
    from embedlab.encoders import SentenceTransformerEncoder

    texts = load_demo("test").texts[:60]
    enc = SentenceTransformerEncoder(cache=False, backend="onnx-int8")
    together = enc.encode(texts)
    alone = np.concatenate([enc.encode([t]) for t in texts])
    cos = np.einsum("ij,ij->i", together, alone) / (
        np.linalg.norm(together, axis=1) * np.linalg.norm(alone, axis=1)
    )
    assert cos.min() >= 0.99999, cos.min()


@pytest.mark.slow
def test_every_text_gets_the_same_label_alone_and_in_its_file(onnx_cache):
    from embedlab.data.datasets import load_demo
    from embedlab.encoders import SentenceTransformerEncoder
    from embedlab.models.pipeline import Pipeline

    train, test = load_demo("train"), load_demo("test")
    enc = SentenceTransformerEncoder(cache=False, backend="onnx-int8")
    pipe = Pipeline(encoder=enc, adapt=False).fit(train.texts, train.labels)
    together = pipe.predict_details(test.texts)
    for i, text in enumerate(test.texts):
        alone = pipe.predict_details([text])
        assert alone.labels[0] == together.labels[i], text
        assert abs(alone.novelty[0] - together.novelty[i]) < 1e-4, text


# ------------------------------------------------------------------ BAD 5: NaN labels
def test_nan_labels_are_missing_not_a_class(tmp_path):
    pq.write_table(
        pa.table({"text": ["a", "b", "c"], "label": [1.0, float("nan"), 2.0]}), tmp_path / "f.pq"
    )
    with pytest.raises(DataFormatError, match=r"no label .* row 2"):
        read_texts(tmp_path / "f.pq", require_labels=True)
    (tmp_path / "f.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": NaN}\n')
    with pytest.raises(DataFormatError, match=r"no label .* row 2 \(missing values spelled 'NaN'"):
        read_texts(tmp_path / "f.jsonl")
    (tmp_path / "f.csv").write_text("text,label\na,x\nb,NaN\n")
    with pytest.raises(DataFormatError, match="no label"):
        read_texts(tmp_path / "f.csv")


def test_float_labels_read_as_the_integers_they_are(tmp_path):
    pq.write_table(pa.table({"text": ["a", "b"], "label": [1.0, 2.0]}), tmp_path / "f.pq")
    assert read_texts(tmp_path / "f.pq").labels == ["1", "2"]


def test_number_and_text_labels_that_read_the_same_are_an_error(tmp_path):
    (tmp_path / "f.jsonl").write_text(
        '{"text": "a", "label": 1}\n{"text": "b", "label": "1"}\n{"text": "c", "label": "x"}\n'
    )
    with pytest.raises(DataFormatError, match="both numbers and texts"):
        read_texts(tmp_path / "f.jsonl")
    (tmp_path / "ok.jsonl").write_text('{"text": "a", "label": 1}\n{"text": "b", "label": "x"}\n')
    assert read_texts(tmp_path / "ok.jsonl").labels == ["1", "x"]


# ------------------------------------------------------------------ POOR: temps and modes
def test_stale_temp_of_a_dead_writer_is_removed(tmp_path):
    target = tmp_path / "space"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = tmp_path / f".space.{dead.stdout.strip()}.abc123.tmp"
    stale.mkdir()
    (stale / "vectors.npy").write_bytes(b"0" * 1000)
    live = tmp_path / f".space.{os.getpid()}.def456.tmp"  # a writer that still runs
    live.mkdir()
    removed = remove_stale_temps(target)
    assert removed == [stale] and not stale.exists() and live.exists()


def test_kill_9_during_save_keeps_previous_copy_and_next_save_cleans_up(tmp_path):
    out = tmp_path / "space"
    EmbeddingSet(np.ones((10, 8), np.float32)).save(out)
    script = textwrap.dedent(
        f"""
        import numpy as np, sys
        from embedlab.data.embedding_set import EmbeddingSet
        es = EmbeddingSet(np.random.default_rng(0).normal(size=(400_000, 96)).astype("f4"))
        print("ready", flush=True)
        while True:
            es.save({str(out)!r}, overwrite=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30
        while not list(tmp_path.glob(".space.*.tmp")) and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(30)
    es = EmbeddingSet.load(out)  # the previous (or the complete new) copy, whole
    assert es.n in (10, 400_000)
    assert list(tmp_path.glob(".space.*.tmp")), "the kill should have left a temp directory"
    EmbeddingSet(np.ones((3, 8), np.float32)).save(out, overwrite=True)
    assert not list(tmp_path.glob(".space.*")), "stale temp left behind"


def test_saved_directories_and_files_get_ordinary_modes(tmp_path):
    out = tmp_path / "space"
    old = os.umask(0o022)
    try:
        EmbeddingSet(np.ones((3, 4), np.float32)).save(out)
        assert out.stat().st_mode & 0o777 == 0o755
        out.chmod(0o750)
        EmbeddingSet(np.ones((3, 4), np.float32)).save(out, overwrite=True)
        assert out.stat().st_mode & 0o777 == 0o750  # --force keeps the mode it had
        from embedlab.store.atomic import atomic_write_bytes

        atomic_write_bytes(tmp_path / "f.csv", b"x")
        assert (tmp_path / "f.csv").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)


def test_atomic_directory_refuses_foreign_directory(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "mine.txt").write_text("x")
    with pytest.raises(RefusedOverwrite, match="mine.txt"), atomic_directory(d, overwrite=True):
        pass
    assert (d / "mine.txt").exists()


# ------------------------------------------------------------------ POOR: tracebacks
def test_deeply_nested_bundle_json_is_one_error_line(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "bundle.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "in.csv").write_text("text\nhello\n")
    res = invoke("predict", model, tmp_path / "in.csv", "-o", tmp_path / "p.csv")
    assert "corrupted" in _one_error_line(res)


def test_crafted_faiss_blob_is_a_store_error(tmp_path):
    from embedlab.compress.index import Index

    x = np.random.default_rng(0).normal(size=(20, 8)).astype(np.float32)
    Index("flat", 8).add(x).save(tmp_path / "idx")
    blob = np.frombuffer(os.urandom(400), dtype=np.uint8)
    np.save(tmp_path / "idx" / "faiss.npy", blob)
    doc = json.loads((tmp_path / "idx" / "index.json").read_text())
    from embedlab.store.manifest import sha256_file

    doc["files"]["faiss.npy"] = sha256_file(tmp_path / "idx" / "faiss.npy")
    (tmp_path / "idx" / "index.json").write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="cannot be read"):
        Index.load(tmp_path / "idx")


def test_complex_and_overflowing_vectors_are_clear_errors(tmp_path):
    np.save(tmp_path / "c.npy", np.ones((2, 3), np.complex64))
    with pytest.raises(ValidationError, match="complex"):
        read_vector_file(tmp_path / "c.npy")
    np.save(tmp_path / "big.npy", np.full((2, 3), 1e300))
    with pytest.raises(ValidationError, match="too large for float32"):
        read_vector_file(tmp_path / "big.npy")


def test_empty_vector_cell_names_row_and_column(tmp_path):
    (tmp_path / "v.csv").write_text("id,a,b\nx,1,2\ny,,3\n")
    with pytest.raises(DataFormatError, match=r"empty cell.*'a' at row 2 \(line 3\)"):
        read_vector_file(tmp_path / "v.csv")
    (tmp_path / "w.csv").write_text("id,a,b\nx,1,2\ny,1,2\nz,oops,3\n")
    with pytest.raises(DataFormatError, match=r"'a' holds a non-number at row 3 \(line 4\)"):
        read_vector_file(tmp_path / "w.csv")
    pq.write_table(pa.table({"vector": [[1.0, 2.0], [3.0, None]]}), tmp_path / "v.parquet")
    with pytest.raises(DataFormatError, match=r"empty \(null\) cells in row 2"):
        read_vector_file(tmp_path / "v.parquet")


def test_hand_edited_bundle_is_one_error_line(tmp_path, quick_model):
    from embedlab.models.pipeline import Pipeline
    from embedlab.store.bundle import json_sha256

    model = tmp_path / "model"
    shutil.copytree(quick_model, model)
    doc = json.loads((model / "bundle.json").read_text())
    doc.pop("checksum")
    doc.pop("timings", None)  # kept outside the checksum
    doc["classifier"] = "surprise"
    doc["checksum"] = json_sha256(doc)
    (model / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="re-fit"):
        Pipeline.load(model)


# ------------------------------------------------------------------ POOR: advice
def test_semicolon_csv_and_utf16_files_are_read(tmp_path):
    (tmp_path / "semi.csv").write_text("text;label\nbook a flight;travel\n")
    t = read_texts(tmp_path / "semi.csv")
    assert t.texts == ["book a flight"] and t.labels == ["travel"]
    (tmp_path / "u16.csv").write_bytes("text,label\nnaïve café,food\n".encode("utf-16"))
    assert read_texts(tmp_path / "u16.csv").texts == ["naïve café"]
    (tmp_path / "bom8.csv").write_bytes("text,label\nnaïve café,food\n".encode("utf-8-sig"))
    for name in ("semi.csv", "u16.csv", "bom8.csv"):  # the streaming reader decodes alike
        chunks = list(iter_texts(tmp_path / name, 1))
        assert [c.texts for _, c in chunks] == [read_texts(tmp_path / name).texts]


@pytest.mark.slow
def test_an_explicit_delimiter_wins_over_the_sniffed_one(tmp_path):
    f = tmp_path / "odd.csv"  # a header with a comma inside a ';'-delimited file
    f.write_text("note,x;text;label\nn1;book a flight;travel\n")
    with pytest.raises(DataFormatError, match="--delimiter"):
        read_texts(f)  # the comma in the header is taken as the delimiter
    assert read_texts(f, delimiter=";").texts == ["book a flight"]
    res = invoke("encode", f, "-o", tmp_path / "s", "--delimiter", "@", "--label-col", "label")
    assert "no text column" in _one_error_line(res)  # the option reaches the reader


def test_directory_as_data_says_so(tmp_path):
    with pytest.raises(DataFormatError, match="is a directory"):
        read_texts(tmp_path)


@pytest.mark.slow
def test_misspelled_label_column_is_an_error(tmp_path):
    (tmp_path / "d.csv").write_text("text,label\nhi,x\n")
    res = invoke("encode", tmp_path / "d.csv", "-o", tmp_path / "s", "--label-col", "lable")
    assert "no label column 'lable'" in _one_error_line(res)


def test_skip_empty_exists_wherever_it_is_suggested():
    for cmd in ("encode", "fit", "predict", "evaluate", "report", "plan"):
        res = invoke(cmd, "--help")
        assert "--skip-empty" in res.output, cmd


def test_every_encoding_command_takes_a_backend():
    for cmd in ("encode", "fit", "predict", "evaluate", "search", "plan"):
        assert "--backend" in invoke(cmd, "--help").output, cmd


@pytest.mark.slow
def test_a_huge_query_is_not_echoed_in_full(tmp_path):
    (tmp_path / "d.csv").write_text("text\nbook a flight\nplay jazz\n")
    assert invoke("encode", tmp_path / "d.csv", "-o", tmp_path / "s").exit_code == 0
    assert invoke("index", tmp_path / "s", "-o", tmp_path / "i").exit_code == 0
    res = invoke("search", tmp_path / "i", "flight " * 1500, "-k", "1")
    assert res.exit_code == 0, res.output
    assert len(res.output) < 2000 and "..." in res.output


def test_imported_index_search_says_what_to_do(tmp_path):
    np.save(tmp_path / "v.npy", np.random.default_rng(0).normal(size=(5, 4)).astype("f4"))
    assert invoke("import", tmp_path / "v.npy", "-o", tmp_path / "s").exit_code == 0
    assert invoke("index", tmp_path / "s", "-o", tmp_path / "i").exit_code == 0
    res = invoke("search", tmp_path / "i", "hello")
    assert "--vectors" in _one_error_line(res)
    res = invoke("search", tmp_path / "i", "--vectors", tmp_path / "v.npy", "-k", "2", "--json")
    assert res.exit_code == 0, res.output
    hits = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(hits) == 10 and hits[0]["id"] == "0" and hits[0]["score"] == pytest.approx(1.0)


@pytest.mark.slow
def test_saved_auto_backend_does_not_override_the_user(monkeypatch):
    from embedlab.encoders import SentenceTransformerEncoder
    from embedlab.encoders.sentence_transformer import encoder_from_spec

    spec = dict(SentenceTransformerEncoder(backend="auto").spec)
    assert spec["backend"] == "auto"
    monkeypatch.setenv("EMBEDLAB_BACKEND", "torch")
    assert encoder_from_spec(spec).backend == "torch"
    assert encoder_from_spec(spec, backend="onnx").backend == "onnx"
    monkeypatch.delenv("EMBEDLAB_BACKEND")
    assert encoder_from_spec(spec).backend == "auto"


# ------------------------------------------------------------------ unprivileged cases
def _as_user() -> list[str]:
    """Command prefix that runs as an unprivileged user (root bypasses file modes)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot drop privileges for this test")
    prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    if not _unprivileged_can_import(tuple(prefix)):
        pytest.skip(
            "the unprivileged user cannot import embedlab from this checkout (it lies in a "
            "folder private to root, e.g. one made by mktemp -d)"
        )
    return prefix


@functools.lru_cache(maxsize=1)
def _unprivileged_can_import(prefix: tuple[str, ...]) -> bool:
    res = subprocess.run(
        [*prefix, sys.executable, "-c", "import embedlab"],
        capture_output=True,
        timeout=60,
        cwd="/",
    )
    return res.returncode == 0


@pytest.fixture
def open_dir():
    """A world-readable scratch folder (pytest's own tmp folders are private to root)."""
    d = Path(tempfile.mkdtemp(prefix="embedlab-faults-"))
    d.chmod(0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _run(prefix, code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*prefix, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env, "HOME": "/nonexistent"},
        cwd="/",
    )


def test_read_only_vector_cache_is_read(open_dir):
    from embedlab.encoders.cache import EmbeddingCache, text_key

    cache_dir = open_dir / "cache"
    EmbeddingCache(cache_dir).put_many("m", [text_key("a")], np.ones((1, 2), np.float32))
    for p in [cache_dir, *cache_dir.iterdir()]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    prefix = _as_user()
    code = (
        "from embedlab.encoders.cache import EmbeddingCache, text_key\n"
        f"c = EmbeddingCache({str(cache_dir)!r})\n"
        "print(sorted(c.get_many('m', [text_key('a'), text_key('b')], dim=2)))\n"
        "c.put_many('m', [text_key('b')], __import__('numpy').ones((1, 2), 'f4'))\n"
    )
    res = _run(prefix, code, {})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[0]"
    assert res.stderr.count("read-only") == 1, res.stderr


@pytest.mark.slow
@pytest.mark.parametrize("cache_flag", ["--cache", "--no-cache"])
def test_read_only_cache_directory_does_not_stop_encoding(open_dir, cache_flag):
    cache_dir = open_dir / "cache"
    cache_dir.mkdir()
    cache_dir.chmod(0o555)
    data = open_dir / "d.csv"
    data.write_text("text\nbook a flight\nplay jazz\n")
    data.chmod(0o644)
    out = open_dir / "space"
    code = (
        "from embedlab.cli import main; import sys; "
        f"sys.argv = ['embedlab', 'encode', {str(data)!r}, '-o', {str(out)!r}, "
        f"'--backend', 'onnx', {cache_flag!r}]; main()"
    )
    env = {"EMBEDLAB_CACHE": str(cache_dir), "EMBEDLAB_ONNX_CACHE": str(cache_dir)}
    res = _run(_as_user(), code, env)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "Traceback" not in res.stderr
    assert "cannot be written" in " ".join(res.stderr.split())  # said, once per graph
    assert EmbeddingSet.load(out).n == 2


# ------------------------------------------------------------------ POOR: adaptation steps
@pytest.mark.slow
def test_adaptation_runs_every_planned_step_on_small_data(tmp_path):
    from embedlab.data.datasets import load_demo
    from embedlab.encoders import SentenceTransformerEncoder
    from embedlab.models.adapt import AdaptConfig, adapt_encoder

    demo = load_demo("train")
    texts, labels = demo.texts[:40], demo.labels[:40]
    # 40 texts in batches of 32: 2 steps per pass, 30 planned steps need 24 passes.
    _, report = adapt_encoder(
        SentenceTransformerEncoder(cache=False, backend="torch"),
        texts,
        labels,
        tmp_path / "adapted",
        AdaptConfig(epochs=1, min_steps=30, batch_size=32),
        progress=False,
    )
    assert report["planned_steps"] == 30
    assert report["steps"] == 30, report
