import numpy as np
import pytest

from embedlab.core.metrics import auroc, evaluate_open_set, fpr_at_tpr


def test_evaluate_open_set_hand_computed():
    y_true = ["a", "a", "b", "oos", "oos"]
    y_pred = ["a", "oos", "b", "oos", "a"]
    novelty = [0.1, 0.9, 0.2, 0.8, 0.3]
    m = evaluate_open_set(y_true, y_pred, novelty)
    assert m["n"] == 5 and m["n_in_scope"] == 3 and m["n_oos"] == 2
    assert m["accuracy"] == pytest.approx(2 / 3)  # the rejected "a" counts as an error
    assert m["overall_accuracy"] == pytest.approx(3 / 5)
    assert m["oos_recall"] == pytest.approx(1 / 2)
    assert m["oos_precision"] == pytest.approx(1 / 2)
    # in-scope scores .1 .9 .2 vs oos .8 .3: pairs won = (.8>.1,.8>.2,.3>.1,.3>.2) = 4 of 6
    assert m["oos_auroc"] == pytest.approx(4 / 6)
    assert m["in_scope_rejected"] == pytest.approx(1 / 3)
    assert m["head_accuracy"] is None
    m = evaluate_open_set(y_true, y_pred, novelty, y_top1=["a", "a", "a", "b", "a"])
    assert m["head_accuracy"] == pytest.approx(2 / 3)  # the rejected "a" was top-1 right


def test_perfect_separation():
    assert auroc([0, 0.1], [0.5, 0.9]) == 1.0
    assert fpr_at_tpr([0, 0.1], [0.5, 0.9]) == 0.0
    # Catching the one out-of-scope row (score 50) flags in-scope scores 50..99.
    assert fpr_at_tpr(np.arange(100), [50.0], tpr=0.95) == pytest.approx(0.5)


def test_missing_side_gives_none():
    m = evaluate_open_set(["a", "b"], ["a", "b"], [0.1, 0.2])
    assert m["oos_auroc"] is None and m["oos_recall"] is None and m["accuracy"] == 1.0


def test_retrieval_at_k_on_a_known_ranking():
    from embedlab.core.metrics import retrieval_at_k

    ranked = np.array([["a", "b", "a"], ["c", "c", "b"], ["a", "a", "a"]])
    m = retrieval_at_k(ranked, np.array(["a", "b", "b"]), k=3)
    # hits at ranks 1 / 3 / none; P@3 = (2 + 1 + 0) / 9
    assert m == pytest.approx({"recall@3": 2 / 3, "mrr@3": (1 + 1 / 3) / 3, "p@3": 3 / 9})
