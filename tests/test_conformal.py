"""Split-conformal calibration: thresholds, p-values, Mondrian groups, BH and APS sets
against a well-kept conformal library (crepes) on the same scores, and the finite-sample
promise itself on exchangeable draws."""

import numpy as np
import pytest

from embedlab.core.conformal import (
    achievable_alpha,
    aps_scores,
    aps_sets,
    benjamini_hochberg,
    conformal_threshold,
    group_thresholds,
    min_calibration_rows,
    p_values,
    row_uniforms,
    shortfall_message,
)
from embedlab.core.errors import ValidationError

crepes = pytest.importorskip("crepes", reason="crepes (the conformal oracle) is a dev dependency")


@pytest.mark.parametrize("n", [1, 9, 49, 50, 200, 1000])
@pytest.mark.parametrize("alpha", [0.01, 0.02, 0.05, 0.1, 0.3])
def test_threshold_and_p_values_equal_the_oracle(n, alpha):
    rng = np.random.default_rng(n)
    cal = rng.normal(size=n)
    test = np.r_[rng.normal(size=300), cal[:5]]  # ties with calibration scores too
    ours = p_values(cal, test)
    oracle = crepes.ConformalClassifier().fit(cal).predict_p(test[:, None], smoothing=False)[:, 0]
    np.testing.assert_allclose(ours, oracle, rtol=0, atol=1e-12)
    t = conformal_threshold(cal, alpha)
    # the threshold rejects exactly the rows whose p-value is at most alpha
    np.testing.assert_array_equal(test > t, oracle <= alpha + 1e-12)
    assert np.isinf(t) == (n < min_calibration_rows(alpha))
    assert (shortfall_message(n, alpha) is None) == np.isfinite(t)


def test_smoothed_and_mondrian_p_values_equal_the_oracle():
    rng = np.random.default_rng(1)
    cal, cal_g = rng.normal(size=400), rng.integers(0, 4, 400)
    test, test_g = rng.normal(size=200), rng.integers(0, 4, 200)
    cal[:50] = np.round(cal[:50], 1)  # ties
    test[:50] = np.round(test[:50], 1)
    cc = crepes.ConformalClassifier().fit(cal, bins=cal_g)
    oracle = cc.predict_p(test[:, None], bins=test_g, smoothing=False)[:, 0]
    ours = p_values(cal, test, calibration_groups=cal_g, groups=test_g)
    np.testing.assert_allclose(ours, oracle, atol=1e-12)
    # smoothed: crepes draws its own uniforms; compare with ours given the same draws
    state = np.random.get_state()
    np.random.seed(7)
    theta = np.random.rand(200)
    np.random.set_state(state)
    oracle_s = crepes.ConformalClassifier().fit(cal).predict_p(test[:, None], seed=7)[:, 0]
    np.testing.assert_allclose(p_values(cal, test, smooth=theta), oracle_s, atol=1e-12)
    thresholds = group_thresholds(cal, cal_g, 5, 0.1)
    assert np.isinf(thresholds[4])  # a group with no scores rejects nothing
    for g in range(4):
        rows = test_g == g
        np.testing.assert_array_equal(test[rows] > thresholds[g], ours[rows] <= 0.1 + 1e-12)


@pytest.mark.parametrize("n", [20, 50, 200])
@pytest.mark.parametrize("alpha", [0.02, 0.1])
def test_the_promise_holds_at_any_n(n, alpha):
    """Over many calibration / test draws of exchangeable scores, the mean share of test
    scores above the threshold is at most alpha (exactly floor((n+1)alpha)/(n+1))."""
    rng = np.random.default_rng(n)
    draws = rng.normal(size=(4000, n + 200))
    cal, test = draws[:, :n], draws[:, n:]
    t = np.array([conformal_threshold(c, alpha) for c in cal])
    rate = (test > t[:, None]).mean()
    expected = np.floor((n + 1) * alpha) / (n + 1)
    assert rate <= alpha + 0.003
    assert abs(rate - expected) < 0.004, (rate, expected)
    assert achievable_alpha(n) == 1 / (n + 1)


def test_benjamini_hochberg_equals_the_textbook_rule():
    rng = np.random.default_rng(3)
    p = np.r_[rng.random(80), rng.random(20) * 0.002]
    for q in (0.05, 0.1, 0.2):
        mask = benjamini_hochberg(p, q)
        s = np.sort(p)
        ok = np.flatnonzero(s <= q * np.arange(1, 101) / 100)
        k = ok[-1] + 1 if ok.size else 0
        assert mask.sum() == k
        if k:
            assert p[mask].max() <= s[k - 1] and (p[~mask] >= s[k - 1]).all()
    assert not benjamini_hochberg(np.ones(10), 0.1).any()
    assert benjamini_hochberg(np.zeros(0), 0.1).shape == (0,)


def test_aps_sets_cover_and_match_their_scores():
    rng = np.random.default_rng(2)
    n, c = 3000, 8
    logits = rng.normal(size=(n, c)) * 2
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(c, p=row) for row in proba])  # labels drawn from the model
    u = rng.random(n)
    scores = aps_scores(proba, y, u)
    cal, test = slice(0, 1000), slice(1000, None)
    qhat = conformal_threshold(scores[cal], 0.1)
    order, size = aps_sets(proba[test], u[test], qhat)
    covered = (order[:, :, None] == y[test][:, None, None]).any(2)
    inside = covered & (np.arange(c)[None, :] < size[:, None])
    coverage = inside.any(1).mean()
    assert 0.88 <= coverage <= 0.93, coverage
    # a row's true class is in its set exactly when its own score is at most qhat
    np.testing.assert_array_equal(inside.any(1), scores[test] <= qhat)


def test_row_uniforms_are_per_row_and_spread():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5000, 16)).astype(np.float32)
    u = row_uniforms(X)
    np.testing.assert_array_equal(u[10:20], row_uniforms(X[10:20]))
    assert ((u >= 0) & (u < 1)).all()
    hist = np.histogram(u, bins=10, range=(0, 1))[0]
    assert hist.min() > 400 and hist.max() < 600


@pytest.mark.parametrize("bad", [0, 1, -0.1, 1.5, float("nan"), "x", None])
def test_bad_levels_are_one_line_errors(bad):
    with pytest.raises(ValidationError, match=r"in \(0, 1\)") as err:
        conformal_threshold(np.arange(10.0), bad)
    assert "\n" not in str(err.value)
    with pytest.raises(ValidationError, match=r"in \(0, 1\)"):
        benjamini_hochberg(np.full(3, 0.5), bad)


def test_nan_scores_are_refused():
    with pytest.raises(ValidationError, match="NaN"):
        p_values(np.array([0.1, np.nan]), np.array([0.2]))
    with pytest.raises(ValidationError, match="NaN"):
        p_values(np.array([0.1, 0.2]), np.array([np.nan]))
