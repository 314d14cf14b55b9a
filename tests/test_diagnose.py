"""Diagnostics, each against a case whose answer is known analytically."""

import time

import numpy as np
import pytest

from embedlab.analysis import diagnose as dg
from embedlab.core.errors import ValidationError
from embedlab.data.embedding_set import EmbeddingSet


def test_rankme_counts_equal_singular_values():
    X = np.zeros((8, 16), dtype=np.float32)
    X[np.arange(5), np.arange(5)] = 3.0  # five equal singular values
    assert dg.rankme(X) == pytest.approx(5.0, rel=1e-4)
    X[0, 0] = 0.0
    assert dg.rankme(X) == pytest.approx(4.0, rel=1e-4)


def test_alignment_is_zero_for_collapsed_classes_and_known_otherwise():
    X = np.repeat(np.eye(3, dtype=np.float32), 4, axis=0)
    y = np.repeat(["a", "b", "c"], 4)
    assert dg.alignment(X, y, max_pairs=1000)["value"] == pytest.approx(0.0, abs=1e-6)
    # Class a = {e1, e2}: every same-class pair is orthogonal, |x - x+|^2 = 2.
    X2 = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], dtype=np.float32)
    y2 = ["a", "a", "b", "b"]
    out = dg.alignment(X2, y2, max_pairs=500)
    assert out["value"] == pytest.approx(2.0, abs=1e-5)


def test_uniformity_of_an_antipodal_pair():
    X = np.array([[1.0, 0.0], [-1.0, 0.0]], dtype=np.float32)
    # One pair, |x - y|^2 = 4: log exp(-2 * 4) = -8.
    assert dg.uniformity(X)["value"] == pytest.approx(-8.0, abs=1e-5)


def test_isotropy_of_a_symmetric_cross_is_perfect():
    d = 4
    X = np.vstack([np.eye(d), -np.eye(d)]).astype(np.float32)
    iso = dg.isotropy(X)
    assert iso["partition_ratio"] == pytest.approx(1.0, abs=1e-6)
    # One shared direction added to every row: anisotropic.
    skew = dg.isotropy(X + np.array([3.0, 0, 0, 0], dtype=np.float32))
    assert skew["mean_cosine"] > 0.3


def test_fisher_ratio_and_nc1_on_a_known_layout():
    # Two classes at x = ±2, each with points at ±1 around its mean (1-D embedded in 2-D).
    X = np.array([[-3, 0], [-1, 0], [1, 0], [3, 0]], dtype=np.float32)
    y = ["a", "a", "b", "b"]
    # S_B = 4 rows x 2^2 = 16; S_W = 4 rows x 1^2 = 4, ratio 4.
    assert dg.fisher_ratio(X, y) == pytest.approx(4.0)
    # Σ_W = 1 (on axis 0), Σ_B = 4 → Tr(Σ_W Σ_B⁺)/K = (1/4)/2.
    assert dg.nc1(X, y) == pytest.approx(0.125)
    collapsed = np.array([[-2, 0], [-2, 0], [2, 0], [2, 0]], dtype=np.float32)
    assert dg.nc1(collapsed, y) == pytest.approx(0.0, abs=1e-12)


def test_silhouette_matches_sklearn_and_is_near_one_for_tight_clusters():
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(0)
    X = np.repeat(np.eye(3), 50, axis=0) + 0.01 * rng.normal(size=(150, 3))
    y = np.repeat(["a", "b", "c"], 50)
    out = dg.silhouette(X, y)
    assert out["value"] == pytest.approx(silhouette_score(X, y, metric="cosine"), rel=1e-4)
    assert out["value"] > 0.95 and out["sampled"] == 150


def test_confusable_pairs_puts_the_closest_means_first():
    X = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 0, 1]], dtype=np.float32)
    pairs = dg.confusable_pairs(X, ["cat", "kitten", "truck"], top=2)
    assert {pairs[0]["a"], pairs[0]["b"]} == {"cat", "kitten"}
    assert pairs[0]["cosine"] > pairs[1]["cosine"]


def test_label_errors_finds_a_planted_flip():
    rng = np.random.default_rng(1)
    centres = np.eye(4) * 5
    X = np.repeat(centres, 30, axis=0) + rng.normal(size=(120, 4))
    y = np.repeat(["a", "b", "c", "d"], 30).astype(object)
    y[7] = "c"  # a row of cluster a labelled c
    out = dg.label_errors(X, y, k=10)
    assert out["rows"][0]["row"] == 7
    assert out["rows"][0]["neighbours_say"] == "a" and out["rows"][0]["disagreement"] == 1.0
    assert all(r["row"] == 7 for r in out["rows"])


def test_near_duplicates_finds_planted_pairs_once():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 32)).astype(np.float32)
    X[50] = X[10]
    X[120] = X[30] * 2.0 + 1e-4  # same direction: cosine ≈ 1
    out = dg.near_duplicates(X, threshold=0.999)
    assert [(p["a"], p["b"]) for p in out["pairs"]] == [(10, 50), (30, 120)] or [
        (p["a"], p["b"]) for p in out["pairs"]
    ] == [(30, 120), (10, 50)]


def test_layer_quality_rises_with_depth():
    from test_planner import LayeredEncoder, labelled  # the synthetic layered encoder

    texts, labels = labelled(n_oos=0)
    rows = dg.layer_quality(texts, labels, LayeredEncoder(), progress=False)
    assert [r["layer"] for r in rows] == [1, 2, 3]
    assert rows[2]["fisher_ratio"] > rows[0]["fisher_ratio"]
    assert rows[2]["prototype_accuracy"] >= rows[0]["prototype_accuracy"]


def test_diagnose_on_an_embedding_set_and_bad_input():
    rng = np.random.default_rng(3)
    es = EmbeddingSet(rng.normal(size=(300, 16)), labels=np.repeat(["x", "y", "z"], 100))
    report = dg.diagnose(es)
    for key in (
        "rankme",
        "uniformity",
        "isotropy",
        "fisher_ratio",
        "silhouette",
        "nc1",
        "confusable_pairs",
        "label_errors",
        "near_duplicates",
        "alignment",
    ):
        assert key in report and key in report["timings"]
    assert "fisher_ratio" not in dg.diagnose(es.vectors)  # no labels: label-free measures
    with pytest.raises(ValidationError, match="needs labels"):
        dg.fisher_ratio(es.vectors)
    with pytest.raises(ValidationError, match="at least 2 distinct labels"):
        dg.nc1(es.vectors, ["x"] * 300)
    with pytest.raises(ValidationError, match="NaN"):
        dg.rankme(np.full((3, 3), np.nan))


@pytest.mark.slow
def test_diagnose_scales_to_100k_rows():
    """Correctness at scale (the 30 s target is measured in benchmarks/, not here)."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(100_000, 64)).astype(np.float32)
    y = rng.integers(0, 50, 100_000).astype(str)
    t0 = time.perf_counter()
    report = dg.diagnose(X, y, sample=1000)
    assert report["silhouette"]["sampled"] == 1000 and report["label_errors"]["of"] == 100_000
    assert time.perf_counter() - t0 < 600
