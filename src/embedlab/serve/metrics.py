"""The service's Prometheus metrics, in a registry of each app's own (nothing
process-global): requests, latency, batch sizes, queue, errors, reloads, and per model the
out-of-scope rate and novelty quantiles over a recent window."""

from collections import deque

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]


class Metrics:
    """This app's Prometheus metrics, in a registry of its own."""

    def __init__(self, window: int) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "embedlab_requests",
            "Requests by endpoint and status",
            ["endpoint", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "embedlab_request_seconds",
            "Request latency",
            ["endpoint"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.batch_rows = Histogram(
            "embedlab_batch_rows",
            "Rows per encoder call",
            registry=r,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )
        self.queue = Gauge("embedlab_queue_rows", "Rows waiting for the encoder", registry=r)
        self.errors = Counter("embedlab_errors", "Errors by kind", ["kind"], registry=r)
        self.oos_rate = Gauge(
            "embedlab_model_oos_rate",
            "Out-of-scope share over the recent window",
            ["model"],
            registry=r,
        )
        self.novelty = Gauge(
            "embedlab_model_novelty_quantile",
            "Novelty-score quantiles over the recent window",
            ["model", "quantile"],
            registry=r,
        )
        self.drift_log10 = Gauge(
            "embedlab_drift_log10_martingale",
            "log10 of the model's conformal test martingale over the inputs served since it "
            "was loaded (grows when inputs stop looking like its calibration data)",
            ["model"],
            registry=r,
        )
        self.drift_alarm = Gauge(
            "embedlab_drift_alarm",
            "1 once the drift martingale has reached its alarm level (100: on inputs that "
            "look like the calibration data, at most 1 % chance ever), else 0",
            ["model"],
            registry=r,
        )
        self.reloads = Counter(
            "embedlab_reloads",
            "Versions of served directories loaded (ok) or refused (refused)",
            ["name", "outcome"],
            registry=r,
        )
        self.concept_shift = Gauge(
            "embedlab_concept_shift",
            "Total variation distance between the concepts active over the recent window "
            "and in the model's training rows (0: the same mix, 1: disjoint)",
            ["model"],
            registry=r,
        )
        self.concept_share = Gauge(
            "embedlab_concept_share",
            "Share of the recent window's texts a concept is active on, for the concepts "
            "that moved most from their training share (id:name)",
            ["model", "concept", "window"],
            registry=r,
        )
        self.window = window
        self._recent: dict[str, deque] = {}
        self._concepts: dict[str, tuple[deque, np.ndarray, list[str]]] = {}
        self._concept_labels: dict[str, list[tuple[str, str, str]]] = {}

    def observe_model(self, model: str, novelty: np.ndarray, oos: np.ndarray) -> None:
        """Remember a request's novelty scores and decisions (the window's last rows)."""
        recent = self._recent.setdefault(model, deque(maxlen=self.window))
        recent.extend(zip(novelty.tolist(), oos.tolist(), strict=True))

    def observe_concepts(
        self, model: str, atoms: np.ndarray, reference: np.ndarray, names: list[str]
    ) -> None:
        """Remember which concepts were active on a request's texts (``atoms``: (n, k) ids,
        −1 for none); ``reference``: each concept's share of the training rows."""
        entry = self._concepts.get(model)
        if entry is None or len(entry[1]) != len(reference):
            entry = (deque(maxlen=self.window), np.asarray(reference, np.float64), list(names))
            self._concepts[model] = entry
        entry[0].extend(np.asarray(atoms, dtype=np.int32))

    def forget_concepts(self, model: str) -> None:
        """Drop a model's concept window (a new version with other concepts is served)."""
        self._concepts.pop(model, None)

    def observe_drift(self, model: str, summary: dict) -> None:
        """Set the model's drift gauges from its monitor's summary."""
        self.drift_log10.labels(model).set(summary["log10_martingale"])
        self.drift_alarm.labels(model).set(1.0 if summary["alarm"] else 0.0)

    def refresh_model_health(self) -> None:
        """Set the model-health gauges from the windows (when /metrics is read, not on every
        request)."""
        for model, recent in list(self._recent.items()):
            if not recent:
                continue
            values, oos = np.asarray(list(recent), dtype=np.float64).T
            self.oos_rate.labels(model).set(float(oos.mean()))
            finite = values[np.isfinite(values)]
            if finite.size:
                qs = (0.5, 0.9, 0.99)
                for q, v in zip(qs, np.quantile(finite, qs), strict=True):
                    self.novelty.labels(model, str(q)).set(float(v))
        for model, (recent, reference, names) in list(self._concepts.items()):
            if recent:
                self._refresh_concepts(model, np.stack(list(recent)), reference, names)

    def _refresh_concepts(
        self, model: str, atoms: np.ndarray, reference: np.ndarray, names: list[str], top: int = 10
    ) -> None:
        ids = atoms[atoms >= 0]
        share = np.bincount(ids, minlength=len(reference)) / len(atoms)
        p, q = share / max(share.sum(), 1e-12), reference / max(reference.sum(), 1e-12)
        self.concept_shift.labels(model).set(float(0.5 * np.abs(p - q).sum()))
        for labels in self._concept_labels.pop(model, []):  # last refresh's top concepts
            self.concept_share.remove(*labels)
        moved = np.argsort(-np.abs(share - reference), kind="stable")[:top]
        shown = []
        for c in moved:
            name = f"{int(c)}:{names[c][:60]}"
            for window, value in (("recent", share[c]), ("training", reference[c])):
                self.concept_share.labels(model, name, window).set(float(value))
                shown.append((model, name, window))
        self._concept_labels[model] = shown
