"""Issue 26: the default (adapted) full fit on CLINC150's report domains, calibrated on the
intents' val rows (``Pipeline.fit(..., validation=val)``) instead of held-out train rows;
prints the realised in-scope rejection on test at the 2 % target, and on val itself.

Usage (from benchmarks/, about 4 minutes on 2 cores):
  ../.venv/bin/python calibrate_on_val.py
"""

from __future__ import annotations

import json

import numpy as np
from fit_compare import domain_intents

from embedlab.data.datasets import load_clinc150
from embedlab.models.pipeline import Pipeline


def rows(keep: set[str], *splits: str) -> tuple[list[str], np.ndarray]:
    """The report intents' rows (and the out-of-scope ones) of ``splits``."""
    t = load_clinc150(*splits)
    y = np.asarray(t.labels, dtype=object)
    mask = np.isin(y, list(keep)) | (y == "oos")
    return [x for x, k in zip(t.texts, mask, strict=True) if k], y[mask]


def main() -> None:
    keep = domain_intents("report")
    train, val, test = (
        rows(keep, "train", "oos_train"),
        rows(keep, "val"),
        rows(keep, "test", "oos_test"),
    )
    pipe = Pipeline().fit(*train, validation=val)
    m = pipe.evaluate(*test)
    print(
        json.dumps(
            {
                "calibrated_on": "val",
                "test_in_scope_rejected": m.get("in_scope_rejected"),
                "test_accuracy": m["accuracy"],
                "adapted": bool(pipe.info.get("adapted")),
                "val_rejected": float(pipe.predict_details(val[0]).out_of_scope.mean()),
            }
        )
    )


if __name__ == "__main__":
    main()
