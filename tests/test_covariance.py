import numpy as np
import pytest

from embedlab.core.covariance import mahalanobis_to_means, shrunk_covariance, unit_rows
from embedlab.core.errors import ValidationError


def test_mahalanobis_matches_direct_formula():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(5, 5))
    cov = A @ A.T + 5 * np.eye(5)
    P = np.linalg.inv(cov)
    X = rng.normal(size=(7, 5)).astype(np.float32)
    M = rng.normal(size=(3, 5)).astype(np.float32)
    D = mahalanobis_to_means(X, M, P, chunk=3)
    direct = np.array([[(x - m) @ P @ (x - m) for m in M] for x in X])
    np.testing.assert_allclose(D, direct, rtol=1e-4, atol=1e-4)


def test_known_distance_under_diagonal_covariance():
    # Var 4 along x, 1 along y: the point (2, 0) is 1 unit away, (0, 2) is 4 units away.
    P = np.linalg.inv(np.diag([4.0, 1.0]))
    D = mahalanobis_to_means(np.array([[2.0, 0.0], [0.0, 2.0]]), np.zeros((1, 2)), P)
    np.testing.assert_allclose(D[:, 0], [1.0, 4.0], rtol=1e-6)


def test_shrinkage_estimators():
    rng = np.random.default_rng(1)
    R = rng.normal(size=(50, 20))
    for method in ("ledoit-wolf", "oas", 0.3):
        cov, alpha = shrunk_covariance(R, method)
        assert np.all(np.linalg.eigvalsh(cov) > 0)
        assert 0 <= alpha <= 1
    cov, alpha = shrunk_covariance(R, 1.0)
    np.testing.assert_allclose(cov, np.eye(20) * np.trace(R.T @ R / 50) / 20, rtol=1e-5)
    with pytest.raises(ValidationError, match="unknown shrinkage"):
        shrunk_covariance(R, "magic")
    with pytest.raises(ValidationError, match=r"in \[0, 1\]"):
        shrunk_covariance(R, 2.0)


def test_ledoit_wolf_matches_scikit_learn():
    from sklearn.covariance import ledoit_wolf

    rng = np.random.default_rng(3)
    for n, d in [(50, 20), (500, 30), (10, 40)]:
        R = rng.normal(size=(n, d)) * rng.uniform(0.5, 2, size=d)
        ours, a = shrunk_covariance(R, "ledoit-wolf")
        ref, b = ledoit_wolf(R, assume_centered=True)
        assert a == pytest.approx(b, rel=1e-6)
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6 * np.trace(ref) / d)


def test_singular_residuals_stay_invertible():
    R = np.zeros((10, 3))
    R[:, 0] = np.arange(10)
    cov, _ = shrunk_covariance(R, 0.0)
    assert np.isfinite(np.linalg.inv(cov)).all()


def test_unit_rows_handles_zero():
    U = unit_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(U, [[0.6, 0.8], [0, 0]])


def test_oas_matches_scikit_learn():
    from sklearn.covariance import oas

    rng = np.random.default_rng(4)
    for n, d in [(50, 20), (10, 40)]:
        R = rng.normal(size=(n, d)) * rng.uniform(0.5, 2, size=d)
        ours, a = shrunk_covariance(R, "oas")
        ref, b = oas(R, assume_centered=True)
        assert a == pytest.approx(b, rel=1e-6)
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6 * np.trace(ref) / d)


def test_scatter_stats_add_and_subtract_exactly():
    from embedlab.core.covariance import ScatterStats, shrunk_covariance_from_stats

    rng = np.random.default_rng(5)
    A, B = rng.normal(size=(30, 8)), rng.normal(size=(12, 8))
    whole = ScatterStats.of(np.vstack([A, B]))
    parts = ScatterStats.of(A) + ScatterStats.of(B)
    for method in ("ledoit-wolf", "oas", 0.2):
        np.testing.assert_allclose(
            shrunk_covariance_from_stats(parts, method)[0],
            shrunk_covariance(np.vstack([A, B]), method)[0],
            rtol=1e-10,
        )
    back = whole - ScatterStats.of(B)
    assert back.n == 30
    np.testing.assert_allclose(back.scatter, A.T @ A, atol=1e-9)
    with pytest.raises(ValidationError, match="at least 2"):
        shrunk_covariance_from_stats(ScatterStats.of(A[:1]))
