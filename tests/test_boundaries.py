"""Nothing outside, nothing lost (issue 24): a bundle, set or index is read and written only
inside itself; --force / --in-place / the service replace only what embedlab wrote; crafted
bundles (paths out, absolute paths, links, oversized shapes, unloadable graphs) are refused
with one line and leave every file where it was; signatures; versioned writes."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from embedlab.cli import app
from embedlab.compress.index import Index
from embedlab.core.errors import RefusedOverwrite, StoreError, VersionConflict
from embedlab.data.embedding_set import EmbeddingSet
from embedlab.models.pipeline import Pipeline
from embedlab.store.atomic import version_lock
from embedlab.store.bundle import json_sha256

JOKES = ["tell me a joke", "make me laugh", "say something funny", "know any good jokes"]
FLIGHTS = ["book a flight to rome", "find flights to oslo", "plane ticket to lima", "fly to nyc"]


@pytest.fixture
def model(quick_model, tmp_path) -> Path:
    out = tmp_path / "model"
    shutil.copytree(quick_model, out)
    return out


def _rewrite_bundle(path: Path, edit) -> None:
    """Edit bundle.json as an attacker would: change it, then recompute its checksum."""
    doc = json.loads((path / "bundle.json").read_text())
    doc.pop("checksum")
    timings = doc.pop("timings", None)
    edit(doc)
    doc["checksum"] = json_sha256(doc)
    if timings is not None:
        doc["timings"] = timings
    (path / "bundle.json").write_text(json.dumps(doc))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


# ----------------------------------------------------------------- only what embedlab wrote
def test_force_keeps_files_embedlab_did_not_write(tmp_path):
    np.save(tmp_path / "v.npy", np.random.default_rng(0).normal(size=(20, 8)).astype(np.float32))
    space = tmp_path / "space"
    assert _run("import", tmp_path / "v.npy", "-o", space).exit_code == 0
    (space / "notes.txt").write_text("mine")
    (space / "mydocs").mkdir()
    (space / "mydocs" / "f.txt").write_text("x")
    res = _run("import", tmp_path / "v.npy", "-o", space, "--force")
    assert res.exit_code == 2
    assert "mydocs/" in res.output and "notes.txt" in res.output
    assert (space / "notes.txt").read_text() == "mine" and (space / "mydocs" / "f.txt").exists()
    EmbeddingSet.load(space)  # the set itself is untouched too
    # once the user's files are gone, --force replaces what embedlab wrote
    shutil.rmtree(space / "mydocs")
    (space / "notes.txt").unlink()
    assert _run("import", tmp_path / "v.npy", "-o", space, "--force").exit_code == 0


def test_in_place_and_save_keep_a_users_file_beside_the_bundle(model, tmp_path):
    (model / "DEPLOY.md").write_text("how we deploy")
    (tmp_path / "new.csv").write_text("text,label\n" + "".join(f"{t},tell_joke\n" for t in JOKES))
    before = _sha(model / "bundle.json")
    res = _run("add-classes", model, tmp_path / "new.csv", "--in-place", "--no-cache")
    assert res.exit_code == 2 and "DEPLOY.md" in res.output
    assert (model / "DEPLOY.md").exists() and _sha(model / "bundle.json") == before
    with pytest.raises(RefusedOverwrite, match="DEPLOY.md"):
        Pipeline.load(model).save(model, overwrite=True)
    assert (model / "DEPLOY.md").read_text() == "how we deploy"


# ----------------------------------------------------------------- crafted bundles
@pytest.mark.parametrize("where", ["../victim/important.txt", "ABSOLUTE", "onnx/../../x.onnx"])
def test_a_graph_path_outside_the_bundle_is_refused_and_nothing_deleted(model, tmp_path, where):
    victim = tmp_path / "victim" / "important.txt"
    victim.parent.mkdir()
    victim.write_text("do not delete")
    rel = str(victim) if where == "ABSOLUTE" else where
    graph = {"kind": "onnx", "file": rel, "sha256": _sha(victim), "layer": 6}
    _rewrite_bundle(model, lambda d: d["encoder"].update(graph=graph))
    with pytest.raises(StoreError, match="ONNX graph") as err:
        Pipeline.load(model, backend="onnx")
    assert "\n" not in str(err.value)
    assert victim.read_text() == "do not delete"


def test_links_in_a_bundle_are_refused_before_anything_is_read(model, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    (model / "extra.txt").symlink_to(secret)
    with pytest.raises(StoreError, match="symbolic link"):
        Pipeline.load(model)
    (model / "extra.txt").unlink()
    # the arrays replaced by a link to a file elsewhere (with its real sha256)
    real = tmp_path / "arrays.safetensors"
    shutil.move(model / "arrays.safetensors", real)
    (model / "arrays.safetensors").symlink_to(real)
    with pytest.raises(StoreError, match="symbolic link"):
        Pipeline.load(model)


def test_an_encoder_directory_inside_the_bundle_may_not_lead_out(model, tmp_path):
    from embedlab.encoders.sentence_transformer import default_model_path

    shutil.copytree(
        default_model_path(), model / "encoder", ignore=shutil.ignore_patterns("*.onnx")
    )
    _rewrite_bundle(model, lambda d: d["encoder"].update(path="encoder"))
    Pipeline.load(model)  # a copied encoder: the same fingerprint, it loads
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0")
    (model / "encoder" / "extra.txt").symlink_to(secret)
    with pytest.raises(StoreError, match="symbolic link"):
        Pipeline.load(model)
    (model / "encoder" / "extra.txt").unlink()
    _rewrite_bundle(model, lambda d: d["encoder"].update(path="../elsewhere"))
    with pytest.raises(StoreError, match="outside the directory"):
        Pipeline.load(model)


def _tiny_graph(path: Path, *, opset: int = 17, initializer=None) -> None:
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Identity", ["x"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        initializer=[initializer] if initializer is not None else [],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def _backend(tmp_path: Path, bundled: Path):
    from embedlab.encoders.model_files import (
        default_model_path,
        model_fingerprint,
        read_model_config,
    )
    from embedlab.encoders.onnx_backend import ONNX_EXPORT_VERSION, OnnxBackend

    path = default_model_path()
    info = {
        "kind": "onnx",
        "layer": 6,
        "export_version": ONNX_EXPORT_VERSION,
        "sha256": _sha(bundled),
    }
    return OnnxBackend(
        path,
        model_fingerprint(path),
        read_model_config(path),
        cache_dir=tmp_path / "cache",
        threads=1,
        bundled=(bundled, info),
    )


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["new-opset", "external-data", "oversized"])
def test_a_graph_that_cannot_load_is_reported_and_left_in_the_bundle(
    tmp_path, monkeypatch, caplog, damage
):
    """ONNX Runtime cannot load the bundle's graph (a newer opset), or the graph keeps its
    weights outside itself, or declares more than it holds: one warning line, the bundle's
    file untouched, a graph exported to the cache used instead."""
    from onnx import TensorProto, helper

    bundled = tmp_path / "model" / "onnx" / "onnx.onnx"
    if damage == "new-opset":
        _tiny_graph(bundled, opset=99)
    elif damage == "external-data":
        (tmp_path / "victim.bin").write_bytes(b"\0" * 16)
        init = helper.make_tensor("w", TensorProto.FLOAT, [4], [0.0] * 4)
        init.ClearField("float_data")
        init.data_location = TensorProto.EXTERNAL
        entry = init.external_data.add()
        entry.key, entry.value = "location", "../../victim.bin"
        _tiny_graph(bundled, initializer=init)
    else:
        init = helper.make_tensor("w", TensorProto.FLOAT, [4], b"\0" * 16, raw=True)
        init.dims[:] = [1 << 40]  # declares 4 TiB, stores 16 bytes
        _tiny_graph(bundled, initializer=init)
    before = _sha(bundled)
    backend = _backend(tmp_path, bundled)

    from embedlab.encoders import onnx_backend

    def export(self, reference=None):  # stands in for the minute-long real export
        _tiny_graph(self.graph_path)
        meta = {
            "export_version": onnx_backend.ONNX_EXPORT_VERSION,
            "fingerprint": self.fingerprint,
            "layer": self.layer,
            "quantized": self.quantize,
            "sha256": _sha(self.graph_path),
        }
        self.meta_path.write_text(json.dumps(meta))

    monkeypatch.setattr(onnx_backend.OnnxBackend, "_export", export)
    with caplog.at_level(logging.WARNING, logger="embedlab"):
        session = backend.session
    assert session is not None
    assert bundled.is_file() and _sha(bundled) == before  # the bundle's own file is kept
    assert backend.graph_path.parent == tmp_path / "cache" / "onnx"
    warned = [r.getMessage() for r in caplog.records if "bundle" in r.getMessage()]
    assert warned and all("\n" not in m for m in warned)
    if damage == "external-data":
        assert (tmp_path / "victim.bin").read_bytes() == b"\0" * 16


def _crafted_npy(path: Path, shape: tuple[int, ...]) -> None:
    """A .npy whose header claims ``shape`` but holds 8 floats."""
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "<f4", "fortran_order": False, "shape": shape}
        )
        fh.write(b"\0" * 32)


def test_declared_shapes_are_bounded_by_the_file_sizes(tmp_path):
    es = EmbeddingSet(np.ones((4, 2), np.float32), ids=["a", "b", "c", "d"])
    space = es.save(tmp_path / "space")
    _crafted_npy(space / "vectors.npy", (10**12, 2))
    manifest = json.loads((space / "manifest.json").read_text())
    manifest["files"]["vectors.npy"] = {
        "sha256": _sha(space / "vectors.npy"),
        "bytes": (space / "vectors.npy").stat().st_size,
    }
    (space / "manifest.json").write_text(json.dumps(manifest))
    for mmap in (True, False):
        with pytest.raises(StoreError, match="declares"):
            EmbeddingSet.load(space, mmap=mmap)
    index = Index("flat", 2)
    index.add(np.ones((4, 2), np.float32), ids=["a", "b", "c", "d"])
    saved = index.save(tmp_path / "index")
    _crafted_npy(saved / "ids.npy", (10**12,))
    doc = json.loads((saved / "index.json").read_text())
    doc["files"]["ids.npy"] = _sha(saved / "ids.npy")
    (saved / "index.json").write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="declares"):
        Index.load(saved)


def test_a_crafted_arrays_header_is_refused_before_allocating(model):
    import struct

    header = json.dumps(
        {"w": {"dtype": "F32", "shape": [10**9, 1000], "data_offsets": [0, 4 * 10**12]}}
    ).encode()
    (model / "arrays.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"0" * 16)
    _rewrite_bundle(model, lambda d: d.update(arrays_sha256=_sha(model / "arrays.safetensors")))
    with pytest.raises(StoreError, match="cannot read arrays.safetensors"):
        Pipeline.load(model)


def test_set_and_index_paths_stay_inside(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    es = EmbeddingSet(np.ones((4, 2), np.float32), ids=["a", "b", "c", "d"])
    space = es.save(tmp_path / "space")
    shutil.copytree(space, victim / "shard")
    manifest = json.loads((space / "manifest.json").read_text())
    manifest.update(
        format_version=2,
        layout="sharded",
        shards=[
            {
                "path": str(victim / "shard"),
                "rows": 4,
                "first_row": 0,
                "files": manifest.pop("files"),
            }
        ],
    )
    (space / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="outside the directory"):
        EmbeddingSet.load(space)
    index = Index("flat", 2)
    index.add(np.ones((4, 2), np.float32), ids=["a", "b", "c", "d"])
    saved = index.save(tmp_path / "index")
    doc = json.loads((saved / "index.json").read_text())
    doc["files"]["../victim/x"] = "0" * 64
    (saved / "index.json").write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="does not hold"):
        Index.load(saved)


# ----------------------------------------------------------------- signatures
def test_signed_bundles(model, tmp_path):
    from embedlab.store.signing import create_key, load_key

    res = _run("keys", "sign-key", "create", tmp_path / "k.key")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "k.key").stat().st_mode & 0o077 == 0  # only the owner reads it
    key = load_key(tmp_path / "k.key")
    assert key.secret.hex() not in repr(key)
    other = create_key(tmp_path / "other.key")
    # unsigned: loads without a key, refused with one
    Pipeline.load(model)
    with pytest.raises(StoreError, match="not signed"):
        Pipeline.load(model, key=key)
    assert _run("keys", "sign", model, "--key", tmp_path / "k.key").exit_code == 0
    assert _run("keys", "verify", model, "--key", tmp_path / "k.key").exit_code == 0
    Pipeline.load(model, key=key)
    with pytest.raises(StoreError, match="another key"):
        Pipeline.load(model, key=other)
    # tampering by someone without the key: new arrays, every checksum recomputed
    from safetensors.numpy import load_file, save_file

    arrays = load_file(str(model / "arrays.safetensors"))
    arrays = {k: (v * 0 if v.dtype.kind == "f" else v) for k, v in arrays.items()}
    save_file(arrays, str(model / "arrays.safetensors"))
    _rewrite_bundle(model, lambda d: d.update(arrays_sha256=_sha(model / "arrays.safetensors")))
    Pipeline.load(model)  # consistent checksums: accepted where signatures are not required
    with pytest.raises(StoreError, match="changed after it was signed"):
        Pipeline.load(model, key=key)
    res = _run("keys", "verify", model, "--key", tmp_path / "k.key")
    assert res.exit_code == 2 and "changed after it was signed" in res.output


def test_a_server_that_requires_signatures(model, tmp_path):
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from fastapi.testclient import TestClient

    from embedlab.serve import ServeConfig, create_app
    from embedlab.store.signing import create_key, load_key

    key = create_key(tmp_path / "k.key")
    cfg = ServeConfig(paths=[str(model)], signing_key_file=str(tmp_path / "k.key"))
    with pytest.raises(StoreError, match="not signed"):
        create_app(cfg)
    Pipeline.load(model).save(model, overwrite=True, sign=key)
    application = create_app(cfg)
    body = {"examples": [{"text": t, "label": "tell_joke"} for t in JOKES]}
    with TestClient(application) as c:
        r = c.post("/v1/models/model/classes", json=body)
        assert r.status_code == 200, r.text
        Pipeline.load(model, key=load_key(tmp_path / "k.key"))  # the service signed v2
        # a tampered version on disk is refused by the watcher; v2 keeps serving
        _rewrite_bundle(model, lambda d: d.update(oos_label="other"))
        assert c.portal.call(application.state.reload_changed) == [("model", "refused")]
        assert c.get("/v1/models").json()["data"][0]["version"] == 2


# ----------------------------------------------------------------- versioned writes
def test_a_stale_writer_gets_a_conflict_and_nothing_confirmed_is_lost(model):
    a, b = Pipeline.load(model), Pipeline.load(model)
    assert a.source_stamp == b.source_stamp is not None
    a2 = a.add_classes(JOKES, ["tell_joke"] * 4)
    a2.save(model, overwrite=True, expect_stamp=a.source_stamp)
    b2 = b.add_classes(FLIGHTS, ["fly_somewhere"] * 4)
    with pytest.raises(VersionConflict, match="version 2"):
        b2.save(model, overwrite=True, expect_stamp=b.source_stamp)
    on_disk = Pipeline.load(model)
    assert "tell_joke" in on_disk.classes_ and "fly_somewhere" not in on_disk.classes_
    assert not [p for p in model.parent.iterdir() if p.name.endswith(".tmp")]


def test_in_place_cli_refuses_to_overwrite_a_newer_version(model, tmp_path, monkeypatch):
    (tmp_path / "new.csv").write_text(
        "text,label\n" + "".join(f"{t},fly_somewhere\n" for t in FLIGHTS)
    )
    real_load = Pipeline.load

    def load_then_race(path, **kw):  # another writer saves v2 right after this CLI reads v1
        pipe = real_load(path, **kw)
        other = real_load(path).add_classes(JOKES, ["tell_joke"] * 4)
        other.save(path, overwrite=True)
        return pipe

    monkeypatch.setattr(Pipeline, "load", staticmethod(load_then_race))
    res = _run("add-classes", model, tmp_path / "new.csv", "--in-place", "--no-cache")
    monkeypatch.undo()
    assert res.exit_code == 2 and "version 2" in res.output
    on_disk = Pipeline.load(model)
    assert "tell_joke" in on_disk.classes_ and "fly_somewhere" not in on_disk.classes_


def test_a_crashed_writer_does_not_leave_the_lock_stuck(tmp_path):
    target = tmp_path / "model"
    code = (
        "import sys, time; from embedlab.store.atomic import version_lock\n"
        f"with version_lock({str(target)!r}):\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        t0 = time.monotonic()
        with version_lock(target):
            pass
        assert time.monotonic() - t0 < 5
    finally:
        proc.kill()
        proc.wait()


def test_paths_in_bundle_json_never_depend_on_the_working_directory(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pipe = Pipeline.load("model")
    monkeypatch.chdir("/")
    pipe.add_classes(JOKES, ["tell_joke"] * 4).save(
        tmp_path / "model", overwrite=True, expect_stamp=pipe.source_stamp
    )
    doc = json.loads((tmp_path / "model" / "bundle.json").read_text())
    path = doc["encoder"]["path"]
    assert os.path.isabs(path) or not (Path("/") / path).exists()
    assert doc["encoder"]["fingerprint"]
    Pipeline.load(tmp_path / "model")


def test_the_service_refuses_to_save_into_a_moved_directory(model, tmp_path):
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from fastapi.testclient import TestClient

    from embedlab.serve import ServeConfig, create_app

    application = create_app(ServeConfig(paths=[str(model)]))
    body = {"examples": [{"text": t, "label": "tell_joke"} for t in JOKES]}
    with TestClient(application) as c:
        assert c.get("/readyz").status_code == 200
        moved = tmp_path / "model_moved"
        model.rename(moved)
        r = c.post("/v1/models/model/classes", json=body)
        assert r.status_code == 503 and "moved or vanished" in r.json()["error"]["message"]
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["missing"] == {"model": str(model)}
        assert not model.exists()
        assert Pipeline.load(moved).info["lineage"]["version"] == 1  # loads, unchanged
        # back in place: the server saves again, into the directory it was started on
        moved.rename(model)
        assert c.post("/v1/models/model/classes", json=body).status_code == 200


def test_the_service_gets_409_when_the_cli_wrote_first_and_keeps_user_files(model):
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from fastapi.testclient import TestClient

    from embedlab.serve import ServeConfig, create_app

    application = create_app(ServeConfig(paths=[str(model)]))
    flights = {"examples": [{"text": t, "label": "fly_somewhere"} for t in FLIGHTS]}
    with TestClient(application) as c:
        v1 = Pipeline.load(model)
        v1.add_classes(JOKES, ["tell_joke"] * 4).save(model, overwrite=True)  # the CLI's v2
        r = c.post("/v1/models/model/classes", json=flights)
        assert r.status_code == 409 and r.json()["error"]["type"] == "version_conflict"
        assert "tell_joke" in Pipeline.load(model).classes_  # the CLI's version stands
        assert c.portal.call(application.state.reload_changed) == [("model", "ok")]
        r = c.post("/v1/models/model/classes", json=flights)
        assert r.status_code == 200 and r.json()["version"] == 3
        assert {"tell_joke", "fly_somewhere"} <= set(Pipeline.load(model).classes_)
        (model / "notes.txt").write_text("mine")
        (model / "encoder_backup").mkdir()
        (model / "encoder_backup" / "w.bin").write_bytes(b"1")
        cats = ["set an alarm for the cat", "wake the cat up"]
        r = c.post(
            "/v1/models/model/classes",
            json={"examples": [{"text": t, "label": "cat_alarm"} for t in cats]},
        )
        assert r.status_code == 409 and "notes.txt" in r.json()["error"]["message"]
        assert (model / "notes.txt").exists() and (model / "encoder_backup" / "w.bin").exists()
