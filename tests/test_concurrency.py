"""A loaded model is thread-safe and picklable; the library leaves process-global state
alone (issue 11: the service and Ray workers depend on all three)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "onnx-int8"])
def test_loaded_model_is_thread_safe_and_picklable(quick_model, backend):
    from embedlab.data.datasets import load_demo
    from embedlab.models.pipeline import Pipeline

    texts = load_demo("test").texts
    serial = Pipeline.load(quick_model, cache=False, backend=backend).predict_details(texts)
    fresh = Pipeline.load(quick_model, cache=False, backend=backend)  # nothing loaded yet
    chunks = [texts[i::8] for i in range(8)]
    with ThreadPoolExecutor(8) as pool:  # 8 threads race for the lazy model / session
        results = list(pool.map(fresh.predict_details, chunks))
    for i, res in enumerate(results):
        np.testing.assert_array_equal(res.labels, serial.labels[i::8])
        np.testing.assert_allclose(res.novelty, serial.novelty[i::8], atol=1e-5)
    clone = pickle.loads(pickle.dumps(fresh))  # after use: sessions are dropped, not pickled
    again = clone.predict_details(texts)
    np.testing.assert_array_equal(again.labels, serial.labels)
    np.testing.assert_allclose(again.novelty, serial.novelty, atol=1e-5)


@pytest.mark.slow
def test_library_leaves_environment_root_logger_and_matplotlib_alone(tmp_path, onnx_cache):
    code = f"""
import json, logging, os, sys
import matplotlib
env = dict(os.environ)
root = logging.getLogger()
before = (root.level, list(root.handlers))
backend = dict.__getitem__(matplotlib.rcParams, "backend")
from embedlab.data.datasets import load_demo
from embedlab.encoders import SentenceTransformerEncoder
from embedlab.compress.planner import plan
demo = load_demo("train")
enc = SentenceTransformerEncoder(cache=False, backend="onnx-int8")
enc.encode(demo.texts[:20])
p = plan(demo.texts, demo.labels, encoder=SentenceTransformerEncoder(cache=False, backend="torch"),
         layers=[6], dims=[384], storages=["float32"], progress=False)
p.save({str(tmp_path / "plan")!r}, plot=True)
print(json.dumps({{
    "env_changed": sorted(k for k in set(env) | set(os.environ) if env.get(k) != os.environ.get(k)),
    "root": (root.level, list(root.handlers)) == before,
    "backend": dict.__getitem__(matplotlib.rcParams, "backend") == backend,
    "pyplot": "matplotlib.pyplot" in sys.modules,
}}))
"""
    # the session's exported graphs: this test is about state, not about exporting
    env_cache = {"EMBEDLAB_CACHE": str(tmp_path / "cache"), "EMBEDLAB_ONNX_CACHE": str(onnx_cache)}
    import os

    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in {**os.environ, **env_cache}.items() if not k.startswith("HF_")},
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out == {"env_changed": [], "root": True, "backend": True, "pyplot": False}
    assert (tmp_path / "plan" / "plan.png").stat().st_size > 1000
