"""Budget planner: the measured grid, Pareto front, recommendation, limits, outputs, errors."""

import hashlib
import json

import numpy as np
import pytest

from embedlab.compress.planner import Plan, PlanRow, _mark_pareto, plan
from embedlab.core.errors import ValidationError
from embedlab.data.pair_files import PairTable


def seed_of(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


class LayeredEncoder:
    """Synthetic 'transformer': label clusters that sharpen with depth (layer k adds signal).

    Texts are "<label> <i>"; out-of-scope texts ("oos <i>") are pure noise.
    """

    def __init__(self, dim: int = 32, layers: int = 3) -> None:
        self.dim, self.layers = dim, layers
        self.elastic = False
        self.spec = {"name": "layered", "dim": dim, "num_layers": layers, "fingerprint": "x"}
        self.timed: list[int] = []

    def _vec(self, text: str, k: int) -> np.ndarray:
        label = text.rsplit(" ", 1)[0]
        noise = np.random.default_rng(seed_of(text)).normal(size=self.dim)
        if label == "oos":
            return noise
        center = np.random.default_rng(seed_of("label:" + label)).normal(size=self.dim)
        return center * (0.4 * k) + noise

    def encode_layers(self, texts, layers, *, progress=None):
        out = {}
        for k in layers:
            V = np.stack([self._vec(t, k) for t in texts]).astype(np.float32)
            out[k] = V / np.linalg.norm(V, axis=1, keepdims=True)
        return out

    def layer_timings(self, texts, layers):
        self.timed = list(layers)
        return {k: 0.1 * k for k in layers}


def labelled(n_classes=6, per_class=60, n_oos=40):
    texts, labels = [], []
    for c in range(n_classes):
        texts += [f"class{c} {i}" for i in range(per_class)]
        labels += [f"class{c}"] * per_class
    texts += [f"oos {i}" for i in range(n_oos)]
    labels += ["oos"] * n_oos
    return texts, labels


@pytest.fixture(scope="module")
def classify_plan():
    texts, labels = labelled()
    return plan(texts, labels, encoder=LayeredEncoder(), dims=[32, 16, 8], progress=False)


def test_classify_grid_and_quality_rises_with_depth(classify_plan):
    p = classify_plan
    assert len(p.rows) == 3 * 3 * 4  # layers x dims x storages
    assert p.data["n_train"] == 288 and p.data["n_test"] == 72 and p.data["n_oos"] == 40
    assert p.data["head"] == "gaussian"  # 288 training rows >= 2 x 32 dimensions
    q = {(r.layer, r.dim, r.storage): r.quality for r in p.rows}
    assert q[(3, 32, "float32")] >= q[(1, 32, "float32")]
    assert q[(3, 32, "float32")] > 0.9
    for r in p.rows:
        assert 0.0 <= r.metrics["accuracy"] <= 1.0 and 0.0 <= r.metrics["auroc"] <= 1.0
        assert r.encode_ms == pytest.approx(0.1 * r.layer)
    kinds = {r.storage: r.bytes_per_vector for r in p.rows if r.layer == 1 and r.dim == 32}
    assert kinds == {"float32": 128, "int8": 32, "binary": 4, "pq": 4}
    assert p.reference.layer == 3 and p.reference.dim == 32 and p.reference.storage == "float32"


def test_auto_head_follows_the_training_size():
    texts, labels = labelled(per_class=8, n_oos=10)
    small = plan(texts, labels, encoder=LayeredEncoder(dim=64), dims=[64], progress=False)
    assert (small.data["head"], small.data["detector"]) == ("prototype", "max-cosine")
    assert "pq left out" in small.data["notes"][0]
    texts, labels = labelled(per_class=60)
    big = plan(texts, labels, encoder=LayeredEncoder(dim=32), dims=[32], progress=False)
    assert (big.data["head"], big.data["detector"]) == ("gaussian", "relative-mahalanobis")


def test_pareto_front_is_exactly_the_non_dominated_rows(classify_plan):
    rows = classify_plan.rows
    front = [r for r in rows if r.pareto]
    assert front

    def dominates(a, b):
        no_worse = (
            a.quality >= b.quality
            and a.bytes_per_vector <= b.bytes_per_vector
            and a.total_ms <= b.total_ms
        )
        strictly = (
            a.quality > b.quality
            or a.bytes_per_vector < b.bytes_per_vector
            or a.total_ms < b.total_ms
        )
        return no_worse and strictly

    for r in rows:
        assert r.pareto == (not any(dominates(o, r) for o in rows))


def test_recommendation_is_the_cheapest_within_tolerance(classify_plan):
    p = classify_plan
    best, rec = p.best, p.recommended
    assert best.quality == max(r.quality for r in p.rows)
    assert rec.quality >= best.quality * (1 - p.tolerance)
    cheaper = [
        r for r in p.rows if r.bytes_per_vector < rec.bytes_per_vector and r.quality >= rec.quality
    ]
    assert not cheaper


def test_limits_filter_and_can_leave_nothing():
    texts, labels = labelled()
    p = plan(texts, labels, encoder=LayeredEncoder(), dims=[32, 8], max_bytes=16, progress=False)
    assert p.recommended.bytes_per_vector <= 16
    assert all(r.feasible == (r.bytes_per_vector <= 16) for r in p.rows)
    assert not any(r.pareto and not r.feasible for r in p.rows)
    none = plan(texts, labels, encoder=LayeredEncoder(), dims=[32], max_ms=0.01, progress=False)
    assert none.best is None and none.recommended is None


def test_mark_pareto_on_a_known_case():
    def row(q, b, t):
        return PlanRow(1, 8, "float32", b, q, {"accuracy": q}, t, 0.0, "", None)

    rows = [row(0.9, 100, 1), row(0.8, 10, 1), row(0.8, 100, 1), row(0.95, 400, 1)]
    _mark_pareto(rows)
    assert [r.pareto for r in rows] == [True, True, False, True]


def test_retrieve_task():
    texts, labels = labelled(n_oos=20)
    p = plan(
        texts, labels, task="retrieve", encoder=LayeredEncoder(), dims=[32, 16], progress=False
    )
    assert p.metric == "mrr@10" and p.data["n_oos"] == 0  # oos rows are not queries
    specs = {r.storage: r.index for r in p.rows if r.dim == 32 and r.layer == 3}
    assert specs == {"float32": "flat", "int8": "sq8", "binary": "binary,rescore10", "pq": "pq4"}
    ref = p.reference
    assert ref.metrics["recall@10"] > 0.95 and 0 < ref.metrics["mrr@10"] <= 1
    assert any("rescores" in n for n in p.data["notes"])


def test_sts_task():
    rng = np.random.default_rng(0)
    first = [f"class{rng.integers(6)} {i}" for i in range(300)]
    same = rng.random(300) < 0.5
    second = [
        f"{a.split()[0]} {1000 + i}" if s else f"class{(int(a.split()[0][5:]) + 1) % 6} {2000 + i}"
        for i, (a, s) in enumerate(zip(first, same, strict=True))
    ]
    pairs = PairTable(first, second, same.astype(float) * 4 + rng.random(300))
    p = plan(task="sts", pairs=pairs, encoder=LayeredEncoder(), dims=[32], progress=False)
    assert p.metric == "spearman" and p.data["n_pairs"] == 60
    assert p.reference.quality > 0.5


def test_save_writes_csv_json_and_plot(classify_plan, tmp_path):
    from embedlab.data.readers import read_table

    paths = classify_plan.save(tmp_path / "out")
    assert read_table(paths["csv"]).num_rows == len(classify_plan.rows)
    doc = json.loads(paths["json"].read_text())
    assert doc["recommended"]["transform"].startswith("layer")
    assert doc["rows"][0]["accuracy"] == max(r.quality for r in classify_plan.rows)
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "cluster"}, "unknown task 'cluster'; choose one of: classify, retrieve, sts"),
        ({"metric": "spearman"}, "does not apply to classify; choose one of: accuracy, auroc"),
        ({"dims": [64]}, r"dims \[64\] are out of range: this encoder has 1..32"),
        ({"dims": [12]}, "use multiples of 8 or drop pq"),
        ({"layers": [0, 2]}, r"layers \[0\] are out of range: this model has layers 1..3"),
        ({"storages": ["fp16"]}, "unknown storage"),
        ({"test_size": 1.5}, "test_size must be between 0 and 1"),
        ({"head": "svm"}, "unknown head 'svm'"),
    ],
)
def test_bad_choices_are_named(kwargs, message):
    texts, labels = labelled()
    with pytest.raises(ValidationError, match=message):
        plan(texts, labels, encoder=LayeredEncoder(), progress=False, **kwargs)


def test_bad_data_is_named():
    enc = LayeredEncoder()
    with pytest.raises(ValidationError, match="single row, so none can be held out"):
        plan(["class0 1", "class0 2", "class1 1"], ["a", "a", "b"], encoder=enc, progress=False)
    with pytest.raises(ValidationError, match="at least 2 labels besides 'oos'"):
        plan(["class0 1", "class0 2"], ["a", "a"], encoder=enc, progress=False)
    with pytest.raises(ValidationError, match="auroc needs out-of-scope rows"):
        texts, labels = labelled(n_oos=0)
        plan(texts, labels, encoder=enc, metric="auroc", progress=False)
    with pytest.raises(ValidationError, match="pq needs at least 256 training rows"):
        texts, labels = labelled(per_class=10)
        plan(texts, labels, encoder=enc, storages=["pq"], dims=[32], progress=False)
    with pytest.raises(ValidationError, match="needs labelled texts"):
        plan(["a b"], None, encoder=enc, progress=False)
    with pytest.raises(ValidationError, match="needs scored sentence pairs"):
        plan(task="sts", encoder=enc, progress=False)
    enc.elastic = True
    with pytest.raises(ValidationError, match="full sentence-transformers encoder"):
        plan(*labelled(), encoder=enc, progress=False)


def test_plan_to_dict_round_trips_through_json(classify_plan):
    doc = json.loads(json.dumps(classify_plan.to_dict(), default=float))
    assert doc["task"] == "classify" and len(doc["rows"]) == len(classify_plan.rows)
    assert isinstance(Plan, type)
