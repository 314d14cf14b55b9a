"""Adaptation decided by held-out rows: scored checkpoints, the best kept, the frozen encoder
kept when adapting does not help; scoring leaves training unchanged (issue 12)."""

from __future__ import annotations

import numpy as np
import pytest

from embedlab.models.adapt import AdaptConfig, _eval_steps, adapt_encoder, choose_checkpoint


def test_eval_steps_are_spread_and_end_at_the_last_step():
    assert _eval_steps(100, 4) == {25, 50, 75, 100}
    assert _eval_steps(3, 8) == {1, 2, 3}  # never more points than steps
    assert max(_eval_steps(37, 8)) == 37 and len(_eval_steps(37, 8)) == 8
    assert _eval_steps(10, 0) == {10}


def test_the_last_checkpoint_stays_unless_an_earlier_one_wins_beyond_noise():
    # 100 held-out rows: one standard error at 80 % is 4 points.
    assert choose_checkpoint([(0, 0.70), (10, 0.80), (20, 0.78)], 100) == 20  # within noise
    assert choose_checkpoint([(0, 0.70), (10, 0.85), (20, 0.78)], 100) == 10  # beyond it
    assert choose_checkpoint([(0, 0.90), (10, 0.60), (20, 0.70)], 100) == 0  # frozen wins
    assert choose_checkpoint([(0, 0.80), (10, 0.80), (20, 0.80)], 100) == 20  # ties: later
    assert choose_checkpoint([(0, 0.5), (5, 0.5)], 3) == 5  # tiny sets: at least one row
    assert choose_checkpoint([(0, 1.0), (5, 0.6)], 3) == 0


def _demo(n_classes: int = 6):
    from embedlab.data.datasets import load_demo

    train = load_demo("train")
    keep_classes = set(sorted(set(train.labels))[:n_classes])
    rows = [i for i, y in enumerate(train.labels) if y in keep_classes]
    texts = [train.texts[i] for i in rows]
    labels = np.asarray([train.labels[i] for i in rows], dtype=object)
    held = np.zeros(len(rows), dtype=bool)
    for c in keep_classes:  # two rows of each class held out
        held[np.flatnonzero(labels == c)[:2]] = True
    tr = ([t for t, h in zip(texts, held, strict=True) if not h], labels[~held])
    va = ([t for t, h in zip(texts, held, strict=True) if h], labels[held])
    return tr, va


@pytest.mark.slow
def test_scoring_does_not_change_training_and_the_best_checkpoint_is_kept(tmp_path):
    from embedlab.encoders import SentenceTransformerEncoder

    (texts, labels), validation = _demo()
    cfg = AdaptConfig(epochs=1, min_steps=12, batch_size=16, eval_points=3)
    enc = SentenceTransformerEncoder(cache=False, backend="torch")
    _, plain = adapt_encoder(enc, texts, labels, tmp_path / "a", cfg, progress=False)
    adapted, scored = adapt_encoder(
        enc, texts, labels, tmp_path / "b", cfg, validation=validation, progress=False
    )
    _only_the_top_layers_changed(enc.model_path, tmp_path / "a", plain)
    for key in ("steps", "first_loss", "final_loss"):  # the same trajectory
        assert plain[key] == scored[key]
    assert plain["validation_curve"] == [] and plain["kept"] == "last"
    curve = scored["validation_curve"]
    assert [p["step"] for p in curve] == [0, 4, 8, 12]
    assert scored["validation_rows"] == len(validation[0])
    chosen = choose_checkpoint([(p["step"], p["accuracy"]) for p in curve], len(validation[0]))
    if chosen == 0:
        assert scored["kept"] == "frozen" and adapted is enc
    else:
        assert scored["kept"] == ("last" if chosen == 12 else f"step {chosen}")
        assert adapted is not enc and (tmp_path / "b").is_dir()


def _only_the_top_layers_changed(base, adapted, report) -> None:
    """The weights an adaptation saved differ from the base model's in its top layers only
    (MiniLM: 6 layers, the default trains 3)."""
    from safetensors.numpy import load_file

    assert report["layers_trained"] == 3
    before = load_file(str(base / "model.safetensors"))
    after = load_file(str(adapted / "model.safetensors"))
    shared = set(before) & set(after)  # buffers such as position_ids may not be saved
    assert len(shared) >= 100
    changed = {k for k in shared if not np.array_equal(before[k], after[k])}
    for layer in (3, 4, 5):
        assert any(f".layer.{layer}." in k for k in changed), layer
    assert all(any(f".layer.{n}." in k for n in (3, 4, 5)) for k in changed)


@pytest.mark.slow
def test_adaptation_that_hurts_keeps_the_frozen_encoder(tmp_path):
    from embedlab.encoders import SentenceTransformerEncoder

    (texts, labels), validation = _demo()
    # A learning rate this large wrecks the model within a few steps.
    cfg = AdaptConfig(epochs=1, min_steps=8, batch_size=16, learning_rate=0.5, eval_points=2)
    enc = SentenceTransformerEncoder(cache=False, backend="torch")
    out = tmp_path / "wrecked"
    adapted, report = adapt_encoder(
        enc, texts, labels, out, cfg, validation=validation, progress=False
    )
    curve = report["validation_curve"]
    assert curve[0]["step"] == 0 and curve[0]["accuracy"] > max(p["accuracy"] for p in curve[1:])
    assert report["kept"] == "frozen"
    assert adapted is enc and not out.exists()


def test_r_precision_is_top1_accuracy_for_one_label_and_a_share_for_several():
    from embedlab.models.adapt import r_precision

    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.7], [0.3, 0.6, 0.9]])
    one = np.array([[1, 0, 0], [0, 0, 1], [0, 0, 1]], dtype=bool)
    assert r_precision(scores, one) == pytest.approx(2 / 3)  # rows 0 and 2 right
    many = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1]], dtype=bool)
    # row 0: top-2 {0, 2} both right; row 1: top-2 {1, 2}, one right; row 2: {2, 1}, both
    assert r_precision(scores, many) == pytest.approx((1 + 0.5 + 1) / 3)
    assert r_precision(scores[:0], many[:0]) == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("in_memory", [True, False])
def test_the_cached_lower_layers_give_the_whole_models_embeddings(monkeypatch, in_memory):
    import torch
    from sentence_transformers import SentenceTransformer

    from embedlab.encoders import SentenceTransformerEncoder
    from embedlab.models import layer_cache

    if not in_memory:  # any size goes to a temporary file
        monkeypatch.setattr(layer_cache, "IN_MEMORY_BYTES", 0)
    (texts, _), _ = _demo()
    model = SentenceTransformer(
        str(SentenceTransformerEncoder().model_path), device="cpu", local_files_only=True
    )
    tokenize = getattr(model, "preprocess", None) or model.tokenize
    lower = layer_cache.LowerLayers(model, tokenize, texts, 4, whole=True)
    assert (lower._tmp is None) == in_memory
    assert lower.check(model, texts)
    rows = np.array([len(texts) - 1, 3, 0, 7])  # any order, lengths that differ
    model.eval()
    with torch.inference_mode():
        whole = model(tokenize([texts[r] for r in rows]))["sentence_embedding"]
        part = lower.embed(model, rows, [texts[r] for r in rows])
    torch.testing.assert_close(part, whole, atol=1e-5, rtol=0)
    # the pass that filled the cache ran on: the whole model's embeddings of every text
    np.testing.assert_allclose(lower.embeddings[rows], whole.numpy(), atol=1e-5, rtol=0)
    assert isinstance(model[0].auto_model.embeddings, torch.nn.Module)  # whole again
    assert len(model[0].auto_model.encoder.layer) == 6
    lower.close()


@pytest.mark.slow
def test_multi_label_adaptation_keeps_a_checkpoint_by_held_out_r_precision(tmp_path):
    from embedlab.encoders import SentenceTransformerEncoder

    (texts, labels), (v_texts, v_labels) = _demo()
    # two-label rows: each text with the next class's text joined on
    classes = sorted(set(labels))
    nxt = {c: classes[(i + 1) % len(classes)] for i, c in enumerate(classes)}
    sets = [(y,) if i % 2 else (y, nxt[y]) for i, y in enumerate(labels)]
    pairs = enumerate(zip(texts, labels, strict=True))
    joined = [t if i % 2 else f"{t} and also {nxt[y]}" for i, (t, y) in pairs]
    cfg = AdaptConfig(epochs=1, min_steps=8, batch_size=16, eval_points=2)
    enc = SentenceTransformerEncoder(cache=False, backend="torch")
    val = ([*v_texts, "nothing here"], [*((y,) for y in v_labels), ()])
    _, report = adapt_encoder(
        enc, [*joined, "a row with no label"], [*sets, ()], tmp_path / "m", cfg,
        validation=val, progress=False, multi_label=True,
    )  # fmt: skip
    assert report["multi_label"] and report["n_texts"] == len(joined)  # unlabelled sat out
    assert report["validation_rows"] == len(v_texts)  # the unlabelled one cannot be scored
    curve = report["validation_curve"]
    assert [p["step"] for p in curve] == [0, 4, 8] and all(0 <= p["accuracy"] <= 1 for p in curve)
    assert report["kept"] in ("last", "frozen", "step 4")


@pytest.mark.slow
def test_a_multi_label_pipeline_adapts_and_calibrates_on_the_rows_held_out_of_it(tmp_path):
    from embedlab.encoders import SentenceTransformerEncoder
    from embedlab.models.multilabel import MultiLabelClassifier
    from embedlab.models.pipeline import Pipeline

    (texts, labels), (v_texts, _) = _demo()
    texts = [t for t, y in zip(texts, labels, strict=True) if y != "oos"]
    labels = [y for y in labels if y != "oos"]
    classes = sorted(set(labels))
    nxt = {c: classes[(i + 1) % len(classes)] for i, c in enumerate(classes)}
    first = {c: t for t, c in zip(texts, labels, strict=True)}
    cells = [y if i % 3 else f"{y},{nxt[y]}" for i, y in enumerate(labels)]
    rows = [
        t if i % 3 else f"{t} and {first[nxt[y]]}"
        for i, (t, y) in enumerate(zip(texts, labels, strict=True))
    ]
    cfg = AdaptConfig(epochs=1, min_steps=8, batch_size=16, eval_points=2)
    enc = SentenceTransformerEncoder(cache=False, backend="torch")
    clf = MultiLabelClassifier(head="linear", threshold_strategy="per-label")
    pipe = Pipeline(enc, clf, adapt=True, adapt_config=cfg).fit(rows, cells, progress=False)
    report = pipe.info["adapted"]
    assert report["multi_label"] and report["layers_trained"] == 3
    held = pipe.classifier_.train_held_
    assert held.sum() == report["calibration_rows"] > 0 and not held.all()
    assert "held out of adaptation" in pipe.info["calibrated_on"]
    assert pipe.classifier_.calibration_method_.startswith("split-conformal (rows held out")
    said = pipe.predict(v_texts)
    assert len(said) == len(v_texts) and all(set(s) <= set(classes) for s in said)
    if report["kept"] != "frozen":  # the bundle carries the adapted encoder
        pipe.save(tmp_path / "m")
        again = Pipeline.load(tmp_path / "m")
        assert [tuple(s) for s in again.predict(v_texts)] == [tuple(s) for s in said]
    grown = pipe.add_classes(["tell me a joke", "a joke please", "make me laugh"], ["joke"] * 3)
    assert grown.classifier_.train_held_[-3:].all()  # added rows: never seen by the encoder
