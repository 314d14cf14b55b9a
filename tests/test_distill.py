"""Distilled students: the static encoder's arithmetic, the student manifest and its errors,
when a student may stand in for a model's encoder, the training pieces, and (slow) a real
shallow distillation and predicting through a student from the CLI."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from embedlab.cli import app
from embedlab.core.errors import EmbedlabError, EncoderError
from embedlab.distill.corpus import fidelity, split_corpus, write_student
from embedlab.distill.static import _batch_ids, _ridge_map, quantised
from embedlab.encoders.loading import open_encoder
from embedlab.encoders.static import (
    StaticEncoder,
    dense_table,
    flat_token_ids,
    mean_rows,
    static_vectors,
)
from embedlab.encoders.student import (
    MANIFEST,
    read_manifest,
    stand_in_problem,
)

WORDS = ["[UNK]", "book", "a", "flight", "to", "paris", "what", "is", "the", "weather"]


def _tokenizer():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    return tok


def make_student(
    path: Path,
    *,
    teacher: dict | None = None,
    space: str = "teacher",
    dim: int = 6,
    token_dim: int = 4,
    dtype: str = "float32",
    tokenizer=None,
    vocab: int = len(WORDS),
    seed: int = 0,
) -> Path:
    """A static student directory with random tables (a projection when in the teacher's
    space), written the way distill writes one."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    table = rng.normal(size=(vocab, token_dim)).astype(np.float32)
    teacher = teacher or {"name": "t", "fingerprint": "abc", "dim": dim}

    def fill(tmp: Path) -> dict:
        arrays = quantised(table, dtype)
        if space == "teacher":
            arrays["projection"] = rng.normal(size=(token_dim, dim)).astype(np.float32)
            arrays["bias"] = np.zeros(dim, np.float32)
        save_file(arrays, str(tmp / "model.safetensors"))
        (tokenizer or _tokenizer()).save(str(tmp / "tokenizer.json"))
        config = {
            "dim": dim if space == "teacher" else token_dim,
            "token_dim": token_dim,
            "dtype": dtype,
            "unk_id": 0,
            "max_tokens": 16,
        }
        (tmp / "config.json").write_text(json.dumps(config))
        return {"dim": config["dim"]}

    record = {"kind": "static", "space": space, "teacher": teacher, "training_texts": 0}
    write_student(path, fill, record, overwrite=True)
    return path


# ------------------------------------------------------------------ static arithmetic
def test_static_vectors_are_normalised_means_projected():
    table = np.array([[1, 0], [0, 2], [3, 3]], dtype=np.float32)
    ids = np.array([0, 1, 2, 2], dtype=np.int64)
    offsets = np.array([0, 2, 2, 4], dtype=np.int64)  # text 1 has no tokens
    plain = static_vectors(ids, offsets, dense_table(table, None, None))
    assert np.allclose(plain[0], np.array([0.5, 1.0]) / np.linalg.norm([0.5, 1.0]))
    assert np.allclose(plain[1], 0.0)
    assert np.allclose(plain[2], np.array([1, 1]) / np.sqrt(2))
    proj = np.array([[1, 0, 1], [0, 1, 0]], dtype=np.float32)
    bias = np.array([0, 0, 1], dtype=np.float32)
    out = static_vectors(ids, offsets, dense_table(table, None, proj), bias)
    want = np.array([0.5, 1.0]) @ proj + bias
    assert np.allclose(out[0], want / np.linalg.norm(want), atol=1e-6)
    assert np.allclose(out[1], 0.0)  # no tokens: zero, not the bias
    scales = np.array([2, 1, 1], dtype=np.float32)
    scaled = static_vectors(ids, offsets, dense_table(table, scales, None))
    assert np.allclose(scaled[0], np.array([1, 1]) / np.sqrt(2))
    repeated = static_vectors(np.array([2, 2, 0]), np.array([0, 3]), table)  # counts, not sets
    assert np.allclose(repeated[0], np.array([7, 6]) / np.linalg.norm([7, 6]))
    # learnt token weights: a weighted mean (weights of one text normalised to sum to one)
    w = np.array([3, 1, 1], dtype=np.float32)
    weighted = static_vectors(ids, offsets, dense_table(table, None, None), None, w)
    want = (3 * table[0] + table[1]) / 4
    assert np.allclose(weighted[0], want / np.linalg.norm(want), atol=1e-6)
    assert np.allclose(weighted[1], 0.0) and np.allclose(weighted[2], plain[2])
    assert np.allclose(mean_rows(ids, offsets, table, w)[0], want, atol=1e-6)  # before L2


def test_flat_token_ids_drop_unknown_tokens():
    ids, offsets = flat_token_ids(_tokenizer(), ["book a flight", "zzz qqq", "to zzz paris"], 0)
    assert ids.tolist() == [1, 2, 3, 4, 5]
    assert offsets.tolist() == [0, 3, 3, 5]


def test_int8_tables_keep_rows_close():
    table = np.random.default_rng(1).normal(size=(50, 16)).astype(np.float32)
    q = quantised(table, "int8")
    assert q["embeddings"].dtype == np.int8
    back = q["embeddings"].astype(np.float32) * q["scales"][:, None]
    cos = (back * table).sum(1) / np.linalg.norm(back, axis=1) / np.linalg.norm(table, axis=1)
    assert cos.min() > 0.999
    assert quantised(table, "float16")["embeddings"].dtype == np.float16


def test_batch_ids_gather_the_rows_tokens():
    ids = np.arange(10, dtype=np.int64)
    offsets = np.array([0, 3, 3, 7, 10], dtype=np.int64)
    flat, starts = _batch_ids(ids, offsets, np.array([3, 0, 2]))
    assert flat.tolist() == [7, 8, 9, 0, 1, 2, 3, 4, 5, 6]
    assert starts.tolist() == [0, 3, 6]


def test_ridge_map_recovers_an_affine_map():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 4))
    w, b = rng.normal(size=(4, 3)), rng.normal(size=3)
    fw, fb = _ridge_map(x, x @ w + b, alpha=1e-8)
    assert np.allclose(fw, w, atol=1e-4) and np.allclose(fb, b, atol=1e-4)


def test_split_corpus_dedupes_holds_out_a_tenth_and_is_seeded():
    texts = [f"text {i}" for i in range(200)] + ["text 3"] * 5
    a, b = split_corpus(texts, seed=4), split_corpus(texts, seed=4)
    assert (a.train, a.held) == (b.train, b.held)
    assert len(a.held) == 20 and len(a.train) == 180 and a.given == 205
    assert not set(a.train) & set(a.held)
    assert split_corpus(texts, seed=5).held != a.held
    with pytest.raises(EmbedlabError, match="at least 20"):
        split_corpus(["one", "two"], seed=0)


def test_fidelity_is_cosine_to_the_teacher():
    t = np.eye(3, dtype=np.float32)
    f = fidelity(2 * t, t)
    assert f["mean_cosine"] == 1.0 and f["texts"] == 3
    assert fidelity(np.roll(t, 1, axis=0), t)["mean_cosine"] == 0.0


# ------------------------------------------------------------------ the static encoder
def test_static_encoder_encodes_pickles_and_describes_itself(tmp_path):
    path = make_student(tmp_path / "stu", dtype="int8")
    enc = open_encoder(path)
    assert isinstance(enc, StaticEncoder) and enc.dim == 6
    texts = ["book a flight to paris", "what is the weather", "zzz"]
    vecs = enc.encode(texts)
    assert vecs.shape == (3, 6) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs[:2], axis=1), 1.0, atol=1e-5)
    assert np.allclose(vecs[2], 0.0)  # only unknown tokens
    assert np.array_equal(pickle.loads(pickle.dumps(enc)).encode(texts), vecs)
    spec = enc.spec
    assert spec["kind"] == "static" and spec["student"]["space"] == "teacher"
    assert enc.last_stats["backend"] == "static"
    # the manifest records measurements, not weights: outside the fingerprint
    before = enc.fingerprint
    manifest = json.loads((path / MANIFEST).read_text())
    (path / MANIFEST).write_text(json.dumps({**manifest, "texts_per_second": 1.0}))
    from embedlab.encoders.model_files import model_fingerprint

    assert model_fingerprint(path) == before


def test_static_encoder_rebuilds_from_its_spec(tmp_path):
    from embedlab.core.errors import StoreError
    from embedlab.encoders.sentence_transformer import encoder_from_spec

    enc = open_encoder(make_student(tmp_path / "stu"))
    spec = enc.spec
    again = encoder_from_spec(spec)
    assert isinstance(again, StaticEncoder)
    assert np.array_equal(again.encode(["book a flight"]), enc.encode(["book a flight"]))
    make_student(tmp_path / "stu", token_dim=5)  # other weights at the same place
    with pytest.raises(StoreError, match="fingerprint"):
        encoder_from_spec(spec)


def test_student_errors_are_one_line_and_name_the_fix(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(EncoderError, match="embedlab distill"):
        read_manifest(tmp_path / "plain")
    with pytest.raises(EncoderError, match="does not exist"):
        read_manifest(tmp_path / "nowhere")
    with pytest.raises(EncoderError, match="neither a student"):
        open_encoder(tmp_path / "plain")
    m2v = tmp_path / "m2v"  # model2vec writes modules.json too
    m2v.mkdir()
    (m2v / "modules.json").write_text("[]")
    (m2v / "config.json").write_text(json.dumps({"model_type": "model2vec"}))
    with pytest.raises(EncoderError, match="neither a student"):
        open_encoder(m2v)
    path = make_student(tmp_path / "stu")
    with pytest.raises(EncoderError, match="no layers"):
        open_encoder(path, layer=2)
    manifest = json.loads((path / MANIFEST).read_text())
    (path / MANIFEST).write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(EncoderError, match="upgrade embedlab"):
        read_manifest(path)
    (path / MANIFEST).write_text(json.dumps(manifest))
    (path / "config.json").write_text("{")
    with pytest.raises(EncoderError, match="distil the student again"):
        open_encoder(path)


def test_distill_checks_its_options_before_any_work(tmp_path):
    from embedlab.distill import distill

    with pytest.raises(EmbedlabError, match="--kind"):
        distill(tmp_path / "a", kind="tiny")
    with pytest.raises(EmbedlabError, match="--texts"):
        distill(tmp_path / "a", kind="shallow")
    with pytest.raises(EmbedlabError, match="--dtype"):
        distill(tmp_path / "a", dtype="int4")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "mine.txt").write_text("x")
    with pytest.raises(EmbedlabError, match="already exists"):
        distill(tmp_path / "a")
    with pytest.raises(EmbedlabError, match="did not write|not something embedlab wrote"):
        distill(tmp_path / "a", overwrite=True)


def test_a_student_directory_is_embedlabs_to_replace(tmp_path):
    from embedlab.store.ownership import foreign_paths

    path = make_student(tmp_path / "stu")
    assert foreign_paths(path) == []
    make_student(path, seed=3)  # replaced in place
    (path / "notes.txt").write_text("mine")
    assert foreign_paths(path) == ["notes.txt"]


# ------------------------------------------------------------------ standing in
class _Enc:
    def __init__(self, spec, model_path=None, manifest=None):
        self.spec, self.model_path, self.manifest = spec, model_path, manifest


def test_stand_in_rules(tmp_path):
    teacher = {"name": "mini", "fingerprint": "T", "dim": 6, "layer": None}
    same = _Enc(dict(teacher))
    assert stand_in_problem(teacher, same) is None
    assert "other settings" in stand_in_problem(teacher, _Enc({**teacher, "layer": 3}))
    assert "not a student" in stand_in_problem(teacher, _Enc({"name": "x", "fingerprint": "X"}))
    good = open_encoder(
        make_student(tmp_path / "good", teacher={"name": "mini", "fingerprint": "T"})
    )
    assert stand_in_problem(teacher, good) is None
    other = open_encoder(make_student(tmp_path / "other", teacher={"fingerprint": "U"}))
    assert "not the model's encoder" in stand_in_problem(teacher, other)
    own = open_encoder(
        make_student(tmp_path / "own", teacher={"fingerprint": "T"}, space="own", token_dim=6)
    )
    assert "own space" in stand_in_problem(teacher, own)
    cut = {**teacher, "truncate_dim": 128}
    assert "cut-down" in stand_in_problem(cut, good)


# ------------------------------------------------------------------ slow: real runs
@pytest.mark.slow
def test_predict_and_evaluate_through_a_student(quick_model, tmp_path):
    from embedlab.data.datasets import demo_path
    from embedlab.encoders import default_model_path, model_fingerprint

    bundle = json.loads((quick_model / "bundle.json").read_text())
    assert bundle["encoder"]["fingerprint"] == model_fingerprint(default_model_path())
    tok = __import__("tokenizers").Tokenizer.from_file(str(default_model_path() / "tokenizer.json"))
    teacher = {"name": "all-MiniLM-L6-v2", "fingerprint": bundle["encoder"]["fingerprint"]}
    stu = make_student(
        tmp_path / "stu", teacher=teacher, dim=384, token_dim=8, tokenizer=tok, vocab=30522
    )
    out = tmp_path / "p.csv"
    runner = CliRunner()
    test = str(demo_path("test"))
    res = runner.invoke(
        app, ["predict", str(quick_model), test, "-o", str(out), "--encoder", str(stu)]
    )
    assert res.exit_code == 0, res.output
    assert "label agreement with the teacher" in res.output
    record = json.loads((tmp_path / "p.csv.student.json").read_text())
    assert record["kind"] == "static" and 0.0 <= record["label_agreement"] <= 1.0
    assert record["rows"] == len(out.read_text().splitlines()) - 1
    res = runner.invoke(app, ["evaluate", str(quick_model), test, "--json", "--encoder", str(stu)])
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.output)
    assert metrics["student"]["label_agreement"] == record["label_agreement"]
    # the planner measures the student beside its grid
    plan_dir = tmp_path / "plan"
    args = ["plan", str(demo_path("train")), "-o", str(plan_dir), "--layers", "6"]
    args += ["--dims", "384", "--storage", "float32", "--student", str(stu), "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code in (0, 1), res.output
    rows = json.loads(res.stdout)["rows"]  # stderr (progress, transformers' bars) kept apart
    assert {r["encoder"] for r in rows} == {"(planner's)", str(stu)}
    assert [r["dim"] for r in rows if r["encoder"] == str(stu)] == [384]
    # a student of another teacher is refused with the reason
    other = make_student(tmp_path / "other", teacher={"name": "x", "fingerprint": "X"}, dim=384)
    res = runner.invoke(
        app,
        ["predict", str(quick_model), test, "-o", str(tmp_path / "q.csv"), "--encoder", str(other)],
    )
    assert res.exit_code != 0 and "cannot stand in" in res.output
    assert not (tmp_path / "q.csv").exists()


@pytest.mark.slow
def test_shallow_distillation_is_reproducible_and_runs_as_an_encoder(tmp_path):
    from embedlab.data.datasets import load_demo
    from embedlab.distill import distill
    from embedlab.encoders import SentenceTransformerEncoder

    texts = load_demo("train").texts
    runs = [
        distill(tmp_path / f"s{i}", kind="shallow", texts=texts, layers=1, epochs=1, progress=False)
        for i in range(2)
    ]
    m = runs[0]
    assert m["kind"] == "shallow" and m["space"] == "teacher" and m["layers"] == 1
    assert m["training_texts"] + m["held_out_texts"] == len(set(texts))
    assert 0 < m["fidelity"]["mean_cosine"] <= 1 and m["texts_per_second"] > 0
    a = (tmp_path / "s0" / "model.safetensors").read_bytes()
    assert a == (tmp_path / "s1" / "model.safetensors").read_bytes()
    enc = open_encoder(tmp_path / "s0")
    assert isinstance(enc, SentenceTransformerEncoder) and enc.dim == 384
    assert enc._config["num_layers"] == 1 and enc._config["has_dense"]
    teacher = SentenceTransformerEncoder(cache=False)
    held = split_corpus(texts, 0).held
    again = fidelity(enc.encode(held), teacher.encode(held))
    assert again["mean_cosine"] == pytest.approx(m["fidelity"]["mean_cosine"], abs=1e-3)


def test_the_service_serves_a_student_for_embeddings(tmp_path):
    from fastapi.testclient import TestClient

    from embedlab.serve import ServeConfig, create_app

    stu = make_student(tmp_path / "stu")
    texts = ["book a flight to paris", "what is the weather"]
    want = open_encoder(stu).encode(texts)
    with TestClient(create_app(ServeConfig(paths=[str(stu)]))) as c:
        listed = c.get("/v1/models").json()["data"]
        assert [(m["id"], m["kind"], m["dim"]) for m in listed] == [("stu", "encoder", 6)]
        assert listed[0]["student"]["kind"] == "static"
        got = c.post("/v1/embeddings", json={"model": "stu", "input": texts}).json()
        vecs = np.asarray([d["embedding"] for d in got["data"]], dtype=np.float32)
        assert np.allclose(vecs, want, atol=1e-6)
        res = c.post("/v1/classify", json={"model": "stu", "input": texts})
        assert res.status_code == 404 and "served encoder" in res.json()["error"]["message"]
        assert c.get("/readyz").json()["encoders"] == ["stu"]


@pytest.mark.slow
def test_static_distillation_trains_into_the_teachers_space_reproducibly(tmp_path, monkeypatch):
    """The static recipe end to end, model2vec's table replaced by a small random one (the
    real distillation takes a minute; benchmarks/distill.py runs it)."""
    from tokenizers import Tokenizer

    import embedlab.distill.static as static
    from embedlab.data.datasets import load_demo
    from embedlab.distill import distill
    from embedlab.encoders import default_model_path

    def small_tables(teacher_path, dim, *, progress):
        tok = Tokenizer.from_file(str(default_model_path() / "tokenizer.json"))
        rows = np.random.default_rng(0).normal(size=(tok.get_vocab_size(), dim))
        return static.StaticTables(tok, tok.token_to_id("[UNK]"), rows.astype(np.float32))

    monkeypatch.setattr(static, "model2vec_tables", small_tables)
    texts = load_demo("train").texts
    runs = [
        distill(tmp_path / f"s{i}", texts=texts, dim=16, epochs=3, progress=False) for i in range(2)
    ]
    m = runs[0]
    assert m["space"] == "teacher" and m["dim"] == 384 and m["dtype"] == "int8"
    curve = dict(m["training"]["held_cosine"])
    assert curve[m["training"]["kept"]] == max(curve.values())
    assert m["fidelity"]["mean_cosine"] == pytest.approx(max(curve.values()), abs=0.02)
    assert m["training"]["token_weights"] is True
    a = (tmp_path / "s0" / "model.safetensors").read_bytes()
    assert a == (tmp_path / "s1" / "model.safetensors").read_bytes()
    enc = open_encoder(tmp_path / "s0")
    assert isinstance(enc, StaticEncoder) and enc.encode(texts[:3]).shape == (3, 384)


def test_length_batches_cover_every_row_once_and_are_seeded():
    from embedlab.distill.shallow import length_batches

    lengths = np.random.default_rng(0).integers(1, 200, size=1000)
    a = length_batches(lengths, 16, np.random.default_rng(3))
    b = length_batches(lengths, 16, np.random.default_rng(3))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert sorted(np.concatenate(a).tolist()) == list(range(1000))
    spread = np.mean([np.ptp(lengths[x]) for x in a])
    assert spread < np.ptp(lengths) / 4  # rows of a batch have similar lengths
