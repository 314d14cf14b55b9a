"""Instant start (issue 11): importing embedlab and its CLI stays clear of heavy modules,
and predicting on the ONNX path never imports torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "sentence_transformers", "sklearn", "faiss", "matplotlib")


def _modules_after(code: str, env: dict | None = None) -> dict:
    probe = (
        f"{code}\nimport json, sys\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    res = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_import_and_cli_help_stay_light():
    assert _modules_after("import embedlab, embedlab.cli") == []
    code = (
        "import sys\nfrom embedlab.cli import app\n"
        "from typer.testing import CliRunner\n"
        "assert CliRunner().invoke(app, ['--help']).exit_code == 0\n"
        "assert CliRunner().invoke(app, ['predict', '--help']).exit_code == 0"
    )
    assert _modules_after(code) == []


def test_public_names_still_import():
    import embedlab

    assert embedlab.Pipeline.__name__ == "Pipeline"
    assert "EmbeddingSet" in dir(embedlab)
    with pytest.raises(AttributeError):
        _ = embedlab.NoSuchThing


@pytest.mark.slow
def test_predict_on_the_onnx_path_never_imports_torch(quick_model, tmp_path):
    code = (
        "from embedlab.models.pipeline import Pipeline\n"
        f"pipe = Pipeline.load({str(quick_model)!r}, cache=False, backend='onnx-int8')\n"
        "print(pipe.predict(['book a flight to rome', 'play some jazz']))"
    )
    env = {"EMBEDLAB_CACHE": str(tmp_path), "EMBEDLAB_ONNX_CACHE": str(tmp_path)}
    loaded = _modules_after(code, env)  # first use: the graph is exported by a child process
    assert "torch" not in loaded and "transformers" not in loaded, loaded


@pytest.mark.slow
def test_a_copied_bundle_predicts_without_exporting(tmp_path, onnx_cache):
    import shutil

    from embedlab.data.datasets import load_demo
    from embedlab.encoders import SentenceTransformerEncoder
    from embedlab.models.pipeline import Pipeline

    train, test = load_demo("train"), load_demo("test")
    enc = SentenceTransformerEncoder(cache=False, backend="onnx-int8")
    pipe = Pipeline(encoder=enc, adapt=False).fit(train.texts, train.labels)
    model = pipe.save(tmp_path / "model")
    doc = json.loads((model / "bundle.json").read_text())
    assert doc["encoder"]["graph"]["kind"] == "onnx-int8"
    assert (model / doc["encoder"]["graph"]["file"]).is_file()
    copied = tmp_path / "elsewhere" / "model"
    shutil.copytree(model, copied)
    fresh = tmp_path / "fresh-cache"  # another machine: nothing exported, no verdict
    code = (
        "from embedlab.models.pipeline import Pipeline\n"
        f"pipe = Pipeline.load({str(copied)!r}, cache=False)\n"
        f"labels = pipe.predict({test.texts[:20]!r})\n"
        "print(pipe.encoder.resolved_backend, list(labels))"
    )
    env = {"EMBEDLAB_CACHE": str(fresh), "EMBEDLAB_ONNX_CACHE": str(fresh)}
    env_run = {k: v for k, v in os.environ.items() if k != "EMBEDLAB_BACKEND"}
    res = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**env_run, **env},
    )
    assert res.returncode == 0, res.stderr
    backend_line, torch_line = res.stdout.strip().splitlines()[-2:]
    assert backend_line.startswith("onnx-int8")
    assert torch_line == "False"
    assert "exporting" not in res.stderr
    assert not fresh.exists() or not list(fresh.rglob("*.onnx"))
    assert backend_line.split(" ", 1)[1] == str(list(pipe.predict(test.texts[:20])))


@pytest.mark.slow
def test_a_prebuilt_graph_is_used_read_only(tmp_path, monkeypatch, caplog):
    import logging

    from embedlab.encoders import SentenceTransformerEncoder

    system, user = tmp_path / "system", tmp_path / "user"
    monkeypatch.setenv("EMBEDLAB_BACKEND", "auto")
    monkeypatch.setenv("EMBEDLAB_ONNX_CACHE", str(system))  # what `make` does at install time
    assert SentenceTransformerEncoder(cache=False).resolved_backend == "onnx-int8"

    def listing():
        return sorted(p.name for p in (system / "onnx").iterdir() if p.suffix != ".lock")

    built = listing()
    monkeypatch.setenv("EMBEDLAB_SYSTEM_GRAPHS", str(system / "onnx"))
    monkeypatch.setenv("EMBEDLAB_ONNX_CACHE", str(user))  # a user's empty cache
    enc = SentenceTransformerEncoder(cache=False)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="embedlab"):
        assert enc.resolved_backend == "onnx-int8"  # the install-time verdict
        vecs = enc.encode(["book a flight to rome", "play some jazz"])
    assert vecs.shape == (2, 384)
    assert enc.onnx_backend().graph_path.parent == system / "onnx"
    assert "exporting" not in caplog.text
    assert not user.exists() or not list(user.rglob("*.onnx"))  # nothing exported
    assert (
        sorted(p.name for p in (system / "onnx").iterdir() if not p.name.endswith(".lock")) == built
    )
