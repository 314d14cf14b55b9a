"""One encoder-adaptation setting on CLINC150: adapt on train, then every head / detector.

Usage: .venv/bin/python benchmarks/adapt_sweep.py EPOCHS LR SHOTS SCALE MARGIN
  e.g. benchmarks/adapt_sweep.py 2 1e-4 0 30 0.2     (full train, the default settings)
       benchmarks/adapt_sweep.py 4 1e-4 10 30 0.2    (10 shots per intent, seed 0)

Adapts the packaged MiniLM on all train rows (or SHOTS per intent), encodes train, test and
oos_test with the adapted model, and prints the in-scope test accuracy of each head (no
rejection) and the OOS AUROC of each detector. These runs chose the defaults of
``embedlab.models.adapt.AdaptConfig`` (docs/benchmarks.md).
"""

from __future__ import annotations

import sys
import tempfile
import time

import numpy as np

from embedlab.core.metrics import auroc
from embedlab.data.datasets import load_clinc150
from embedlab.detect import (
    EnergyDetector,
    KNNDistanceDetector,
    MahalanobisDetector,
    MaxCosineDetector,
    MaxProbDetector,
)
from embedlab.encoders import SentenceTransformerEncoder
from embedlab.heads import GaussianClassifier, LinearClassifier, PrototypeClassifier
from embedlab.models.adapt import AdaptConfig, adapt_encoder


def main() -> None:
    epochs, lr, shots, scale, margin = (
        float(sys.argv[1]),
        float(sys.argv[2]),
        int(sys.argv[3]),
        float(sys.argv[4]),
        float(sys.argv[5]),
    )
    train, test, oos = (load_clinc150(s) for s in ("train", "test", "oos_test"))
    texts, labels = train.texts, np.asarray(train.labels, dtype=object)
    if shots:
        rng = np.random.default_rng(0)
        idx = np.concatenate(
            [
                rng.choice(np.flatnonzero(labels == c), shots, replace=False)
                for c in np.unique(labels)
            ]
        )
        texts, labels = [texts[i] for i in idx], labels[idx]
    cfg = AdaptConfig(epochs=epochs, learning_rate=lr, scale=scale, margin=margin, time_budget=3600)
    out = tempfile.mkdtemp(prefix="adapt-sweep-")
    adapted, report = adapt_encoder(SentenceTransformerEncoder(), texts, labels, out, cfg)
    print(report, flush=True)
    t0 = time.perf_counter()
    Xtr = adapted.encode(texts)
    Xte, Xoo = adapted.encode(test.texts), adapted.encode(oos.texts)
    print(f"encode seconds {time.perf_counter() - t0:.1f}")
    yte = np.asarray(test.labels, dtype=object)
    for head in (PrototypeClassifier(), LinearClassifier(), GaussianClassifier()):
        head.fit(Xtr, labels)
        print(f"{head!r:55s} accuracy {100 * (head.predict(Xte) == yte).mean():.2f}%")
    for det in (
        MaxCosineDetector(),
        MahalanobisDetector(relative=True),
        KNNDistanceDetector(),
        EnergyDetector(),
        MaxProbDetector(head=PrototypeClassifier()),
    ):
        det.fit(Xtr, labels)
        a = auroc(det.decision_function(Xte), det.decision_function(Xoo))
        print(f"{det!r:55s} AUROC {100 * a:.2f}%")


if __name__ == "__main__":
    main()
