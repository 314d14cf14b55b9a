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
