"""Same data + options + seed → same model, on an idle or a busy machine (issue 11)."""

from __future__ import annotations

import json
import multiprocessing as mp
import time

import numpy as np
import pytest


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end:  # a bounded CPU hog, stops by itself
        x += 1


def _fit(texts, labels, test):
    from embedlab.encoders import SentenceTransformerEncoder
    from embedlab.models.adapt import AdaptConfig
    from embedlab.models.pipeline import Pipeline

    enc = SentenceTransformerEncoder(cache=False, backend="torch")
    cfg = AdaptConfig(epochs=1, min_steps=12, batch_size=16)
    pipe = Pipeline(encoder=enc, adapt=True, adapt_config=cfg)
    pipe.fit(texts, labels, progress=False)
    return pipe, pipe.predict_details(test)


@pytest.mark.slow
def test_adapted_fit_is_the_same_on_a_busy_machine(tmp_path):
    from embedlab.data.datasets import load_demo

    train, test = load_demo("train"), load_demo("test")
    keep = [i for i, y in enumerate(train.labels) if y in set(sorted(set(train.labels))[:4])]
    texts, labels = [train.texts[i] for i in keep], [train.labels[i] for i in keep]
    idle_pipe, idle = _fit(texts, labels, test.texts[:40])
    ctx = mp.get_context("spawn")
    hogs = [ctx.Process(target=_spin, args=(60.0,), daemon=True) for _ in range(2)]
    for h in hogs:
        h.start()
    try:
        busy_pipe, busy = _fit(texts, labels, test.texts[:40])
    finally:
        for h in hogs:
            h.terminate()
            h.join(10)
    a, b = idle_pipe.info["adapted"], busy_pipe.info["adapted"]
    assert a["steps"] == a["planned_steps"] == b["steps"] == b["planned_steps"]
    assert not a["stopped_by_time_budget"] and not b["stopped_by_time_budget"]
    assert idle_pipe.info["head"] == busy_pipe.info["head"]
    assert idle_pipe.info["detector"] == busy_pipe.info["detector"]
    assert idle_pipe.info["threshold"] == busy_pipe.info["threshold"]
    np.testing.assert_array_equal(idle.labels, busy.labels)
    np.testing.assert_allclose(idle.novelty, busy.novelty, rtol=0, atol=1e-6)
    # the same bundle, byte for byte where it counts: its checksum covers the adapted
    # encoder's files and every array (the machine's timings are kept outside it)
    docs = []
    for name, pipe in (("idle", idle_pipe), ("busy", busy_pipe)):
        pipe.save(tmp_path / name)
        docs.append(json.loads((tmp_path / name / "bundle.json").read_text()))
    assert docs[0]["checksum"] == docs[1]["checksum"]
    assert a["layers_trained"] == 3  # the cached lower layers are part of what is repeated


def test_a_time_cap_is_explicit_and_recorded():
    from embedlab.models.adapt import AdaptConfig
    from embedlab.models.openset import OpenSetClassifier
    from embedlab.models.selection import select_head_and_detector

    assert AdaptConfig().time_budget is None
    assert OpenSetClassifier().time_budget is None
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 8)).astype(np.float32)
    y = np.repeat(np.array(["a", "b", "c"]), 30)
    full = select_head_and_detector(X, y, n_folds=3)
    assert full.skipped == [] and full.folds == 3
    capped = select_head_and_detector(X, y, n_folds=3, time_budget=0.0)
    assert capped.skipped  # what the cap cut is listed
