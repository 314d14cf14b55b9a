"""Drift alarms: a conformal test martingale over a model's stream of inputs.

Each input's conformity score (the score its p-value ranks: higher = more unusual) gets a
smoothed conformal p-value **among the calibration rows' scores and every earlier input's**
(ties split at random). While the calibration rows and the stream are exchangeable, those
p-values are independent and uniform (Vovk et al., *Algorithmic Learning in a Random
World*, ch. 8), so a betting martingale on them has expectation 1 and, by Ville's
inequality, ever reaches ``alarm_at`` with probability at most 1/alarm_at. When the stream
drifts away from the calibration data (more unusual inputs), small p-values pile up and the
martingale grows.

The betting strategy is the Simple Jumper (Vovk, Petej, Nouretdinov, Ahlberg, Carlsson,
Gammerman 2021, "Retrain or not retrain: conformal test martingales for change-point
detection"): three bets f_e(p) = 1 + e(p - 1/2), e ∈ {-1, 0, 1}, with a share ``jump`` of
the capital moved between them at every step, so it recovers from long quiet stretches
instead of betting its capital away before a change.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np

from embedlab.core.conformal import check_scores, rank_counts
from embedlab.core.errors import ValidationError

__all__ = ["DriftMonitor"]

_BETS = np.array([-1.0, 0.0, 1.0])


class DriftMonitor:
    """A conformal test martingale over a stream of scores (thread-safe).

    Parameters
    ----------
    reference : array of the calibration rows' scores (the exchangeable start).
    alarm_at : float, default 100
        The alarm sounds when the martingale reaches this (on an exchangeable stream with
        probability at most 1/alarm_at, however long it runs).
    jump : float, default 0.01
        The Simple Jumper's switching rate.
    seed : int, default 0
        Seeds the tie-breaking draws (the same stream gives the same values).
    max_rows : int, default 1,000,000
        Stream rows kept as reference (float64 each); later rows are still bet on, ranked
        among the kept ones only (:meth:`summary` says when that happens).
    """

    def __init__(
        self,
        reference: Any,
        *,
        alarm_at: float = 100.0,
        jump: float = 0.01,
        seed: int = 0,
        max_rows: int = 1_000_000,
    ):
        ref = check_scores(reference, "reference scores")
        if ref.size == 0:
            raise ValidationError("a drift monitor needs at least one reference score")
        if not alarm_at > 1.0:
            raise ValidationError(f"alarm_at must be more than 1, got {alarm_at!r}")
        if not 0.0 < jump < 1.0:
            raise ValidationError(f"jump must be in (0, 1), got {jump!r}")
        self.alarm_at = float(alarm_at)
        self.jump = float(jump)
        self.max_rows = int(max_rows)
        self._ref = np.sort(ref)
        self._n_reference = ref.size
        self._rng = np.random.default_rng(seed)
        self._capital = np.full(3, 1.0 / 3.0)  # the three bets' shares, summing to 1
        self._log10 = 0.0  # log10 of the martingale's value
        self._max_log10 = 0.0
        self._rows = 0
        self._alarm_row: int | None = None
        self._lock = threading.Lock()

    def p_values(self, scores: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The online smoothed p-values of a batch (each among the reference, the earlier
        batch rows and itself); does not change the monitor."""
        s = np.asarray(scores, dtype=np.float64)
        ref = self._ref
        above, equal = rank_counts(ref, s)
        n_before = ref.size + np.arange(s.size)
        for start in range(0, s.size, 512):  # earlier rows of the batch, a block at a time
            block = s[start : start + 512]
            earlier = s[: start + block.size]
            mask = np.arange(earlier.size)[None, :] < (start + np.arange(block.size))[:, None]
            above[start : start + block.size] += ((earlier[None, :] > block[:, None]) & mask).sum(1)
            equal[start : start + block.size] += ((earlier[None, :] == block[:, None]) & mask).sum(
                1
            )
        return (above + u * (equal + 1.0)) / (n_before + 1.0)

    def update(self, scores: Any) -> float:
        """Bet on a batch of scores (in arrival order); the martingale's log10 value after."""
        s = check_scores(scores, "scores")
        if s.size == 0:
            return self._log10
        with self._lock:
            p = self.p_values(s, self._rng.random(s.size))
            for j, pj in enumerate(p):  # the martingale is sequential: one bet per row
                c = (1.0 - self.jump) * self._capital + self.jump / 3.0  # capital sums to 1
                c = c * (1.0 + _BETS * (pj - 0.5))
                total = float(c.sum())
                self._capital = c / total
                self._log10 += math.log10(total)
                if self._log10 > self._max_log10:
                    self._max_log10 = self._log10
                if self._alarm_row is None and self._log10 >= math.log10(self.alarm_at):
                    self._alarm_row = self._rows + j + 1
            self._rows += s.size
            room = self.max_rows - (self._ref.size - self._n_reference)
            if room > 0:
                keep = np.sort(s[:room])
                self._ref = np.insert(self._ref, np.searchsorted(self._ref, keep), keep)
            return self._log10

    @property
    def alarm(self) -> bool:
        """Whether the martingale has reached ``alarm_at`` (it stays raised)."""
        return self._alarm_row is not None

    def summary(self) -> dict[str, Any]:
        """Rows seen, the martingale (now and its highest, log10), the alarm and the row it
        sounded at, and the reference sizes."""
        with self._lock:
            return {
                "rows": self._rows,
                "log10_martingale": round(self._log10, 4),
                "max_log10_martingale": round(self._max_log10, 4),
                "alarm": self._alarm_row is not None,
                "alarm_row": self._alarm_row,
                "alarm_at": self.alarm_at,
                "reference_rows": self._n_reference,
                "stream_rows_kept": int(self._ref.size - self._n_reference),
            }
