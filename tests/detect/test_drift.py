"""The drift alarm: a conformal test martingale that stays low on exchangeable streams
(Ville: reaching 100 has probability at most 1 %), rises when a stream shifts away from
its reference, and is reproducible and thread-safe."""

import threading

import numpy as np
import pytest

from embedlab.core.errors import ValidationError
from embedlab.detect.drift import DriftMonitor


def test_exchangeable_streams_rarely_alarm_and_shifts_do():
    rng = np.random.default_rng(0)
    alarms, maxima = 0, []
    for r in range(150):
        x = rng.normal(size=1500)
        m = DriftMonitor(x[:500], seed=r)
        for b in range(500, 1500, 25):
            m.update(x[b : b + 25])
        alarms += m.alarm
        maxima.append(m.summary()["max_log10_martingale"])
    assert alarms <= 5  # expected at most 1.5; Ville's bound is a ceiling
    assert np.mean(np.asarray(maxima) >= 1.0) <= 0.2  # P(ever reaching 10) <= 10 %
    delays = []
    for r in range(20):
        ref = rng.normal(size=500)
        m = DriftMonitor(ref, seed=r)
        m.update(rng.normal(size=200))
        shifted = rng.normal(size=600) + 3.0 * (rng.random(600) < 0.3)
        for b in range(0, 600, 10):
            m.update(shifted[b : b + 10])
        row = m.summary()["alarm_row"]
        delays.append(np.inf if row is None else row - 200)
    assert np.median(delays) < 200 and np.mean(np.asarray(delays) <= 0) < 0.2


def test_online_p_values_rank_each_row_among_everything_before_it():
    ref = np.array([0.1, 0.2, 0.3, 0.4])
    m = DriftMonitor(ref)
    u = np.zeros(3)
    # row 0 among the reference and itself; row 1 also beside row 0; row 2 beside both
    p = m.p_values(np.array([0.25, 0.35, 0.05]), u)
    # smoothed with u = 0: #{strictly greater} / (rows before + 1)
    np.testing.assert_allclose(p, [2 / 5, 1 / 6, 6 / 7])
    p1 = m.p_values(np.array([0.25, 0.35, 0.05]), np.ones(3))
    np.testing.assert_allclose(p1, [3 / 5, 2 / 6, 7 / 7])


def test_reproducible_and_thread_safe():
    rng = np.random.default_rng(1)
    ref, stream = rng.normal(size=300), rng.normal(size=400) + 0.5
    a, b = DriftMonitor(ref, seed=3), DriftMonitor(ref, seed=3)
    for s in range(0, 400, 20):
        a.update(stream[s : s + 20])
    b.update(stream)
    assert a.summary()["rows"] == b.summary()["rows"] == 400
    c = DriftMonitor(ref, seed=3)
    threads = [threading.Thread(target=c.update, args=(stream[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    summary = c.summary()
    assert summary["rows"] == 400 and summary["stream_rows_kept"] == 400
    assert np.all(np.diff(c._ref) >= 0)  # the reference stays sorted


def test_bad_input():
    with pytest.raises(ValidationError, match="at least one"):
        DriftMonitor([])
    with pytest.raises(ValidationError, match="NaN"):
        DriftMonitor([0.1, np.nan])
    with pytest.raises(ValidationError, match="alarm_at"):
        DriftMonitor([0.1], alarm_at=1.0)
    with pytest.raises(ValidationError, match="NaN"):
        DriftMonitor([0.1, 0.2]).update([np.nan])
    m = DriftMonitor([0.1, 0.2], max_rows=3)
    m.update([0.3, 0.4, 0.5, 0.6])
    assert m.summary()["stream_rows_kept"] == 3
