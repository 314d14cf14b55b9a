"""What a labelled batch says about a single-label model's promises: the realised
in-scope rejection rate beside the target, prediction-set coverage and size beside the
top-3, and whether the batch looks exchangeable with the model's calibration data (a drift
martingale run over it)."""

from __future__ import annotations

from typing import Any

import numpy as np

from embedlab.core.conformal import achievable_alpha
from embedlab.detect.drift import DriftMonitor

__all__ = ["batch_guarantees"]


def batch_guarantees(
    classifier: Any, X: np.ndarray, y: np.ndarray, is_oos: np.ndarray, *, level: float = 0.9
) -> dict[str, Any]:
    """Figures of the model's guarantees on the labelled rows (X, y): calibration method
    and size, target and realised in-scope rejection rate, the coverage and mean size of
    its prediction sets at ``level`` (when it has labelled calibration rows) beside the
    head's top-3, and the drift martingale's verdict on the batch in its order."""
    cal, rate = classifier.p_reference(), classifier.rate()
    out: dict[str, Any] = {
        "calibration": getattr(classifier, "calibration_method_", "unknown"),
        "calibration rows": len(cal),
        "target in-scope rejection": "none (closed set)" if rate is None else rate,
        "smallest promisable rate": achievable_alpha(len(cal)) if len(cal) else None,
    }
    with_sets = getattr(classifier, "set_scores_", None) is not None
    d = classifier.predict_details(X, top_k=3, sets=level if with_sets else None)
    inside = ~is_oos
    if inside.any():
        out["in-scope rejected here"] = float(d.out_of_scope[inside].mean())
        truth = y[inside].astype(str)
        top3 = d.top_labels[inside].astype(str)
        if with_sets:
            sets = [s for s, keep in zip(d.prediction_sets, inside, strict=True) if keep]
            covered = np.fromiter(
                (t in s for t, s in zip(truth, sets, strict=True)), bool, count=len(truth)
            )
            out[f"set coverage at {level:.0%}"] = float(covered.mean())
            out["mean set size"] = float(np.mean([len(s) for s in sets]))
        out["top-3 coverage"] = float((top3 == truth[:, None]).any(1).mean())
    if len(cal):
        monitor = DriftMonitor(cal)
        monitor.update(d.p_score)
        summary = monitor.summary()
        out["drift martingale (max, log10)"] = summary["max_log10_martingale"]
        out["looks exchangeable with calibration"] = "no" if summary["alarm"] else "yes"
    return out
