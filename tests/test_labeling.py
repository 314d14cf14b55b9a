"""Which rows to label next (suggest), what each strategy buys (simulate_labeling), which
labels look wrong (label_issues): on planted clusters whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from embedlab.core.errors import ValidationError
from embedlab.data.embedding_set import EmbeddingSet, Provenance
from embedlab.labeling.label_issues import label_issues
from embedlab.labeling.simulate import labels_to_reach, parse_budgets, simulate_labeling
from embedlab.labeling.suggest import suggest

K, PER, DIM = 12, 40, 24


def blobs(seed: int = 0, k: int = K, per: int = PER, spread: float = 0.25):
    """``k`` well-separated clusters of ``per`` rows (unequal sizes: cluster c has
    per + 2c rows), their labels c0..c{k-1}."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, DIM)).astype(np.float32)
    sizes = per + 2 * np.arange(k)
    y = np.repeat(np.arange(k), sizes)
    X = centres[y] + spread * rng.normal(size=(len(y), DIM)).astype(np.float32)
    return X.astype(np.float32), np.array([f"c{v}" for v in y], dtype=object)


class LookupEncoder:
    """Texts "r<i>" → row i of a fixed matrix (a model over planted vectors)."""

    def __init__(self, X: np.ndarray) -> None:
        self.X = X

    @property
    def dim(self) -> int:
        return self.X.shape[1]

    @property
    def spec(self) -> dict:
        return {"kind": "lookup", "name": "lookup", "fingerprint": "lookup", "dim": self.dim}

    def encode(self, texts, *, progress=None) -> np.ndarray:
        return self.X[[int(t[1:]) for t in texts]]


def model_on(X, y, rows):
    from embedlab.models.openset import OpenSetClassifier
    from embedlab.models.pipeline import Pipeline

    clf = OpenSetClassifier(head="linear", detector="max-cosine")
    pipe = Pipeline(encoder=LookupEncoder(X), classifier=clf, adapt=False)
    return pipe.fit([f"r{i}" for i in rows], list(y[rows]))


def test_cold_start_covers_every_cluster_and_is_reproducible():
    X, y = blobs()
    a = suggest(X, K, seed=3)
    assert a.strategy == "typiclust" and len(a) == K
    assert len(set(y[a.positions])) == K  # one representative per planted cluster
    assert all("unlabelled region" in r for r in a.reasons)
    b = suggest(X, K, seed=3)
    assert np.array_equal(a.positions, b.positions) and a.reasons == b.reasons
    # random draws miss clusters at this budget (the yardstick typiclust beats)
    r = suggest(X, K, strategy="random", seed=3)
    assert len(set(y[r.positions])) < K


def test_labelled_rows_are_skipped_and_cover_their_regions():
    X, y = blobs()
    es = EmbeddingSet(X, ids=[f"id{i}" for i in range(len(X))])
    done = [f"id{i}" for i in np.flatnonzero(np.isin(y, [f"c{c}" for c in range(6)]))]
    s = suggest(es, 6, labeled=done, seed=0)
    assert not set(s.ids) & set(done)
    # TypiClust draws labelled + n clusters: the uncovered blobs split, and every pick is there
    assert set(y[s.positions]) <= {f"c{c}" for c in range(6, K)}
    assert any("given as labelled" in n for n in s.notes)
    # vectors labelled outside the pool cover their regions the same way
    outside = X[np.isin(y, [f"c{c}" for c in range(6)])][::5]
    t = suggest(X, 6, labeled_vectors=outside, seed=0)
    assert set(y[t.positions]) <= {f"c{c}" for c in range(6, K)}


def test_coreset_reaches_far_rows_first():
    X, y = blobs()
    s = suggest(X, K, strategy="coreset", seed=0)
    assert len(set(y[s.positions])) >= K - 1
    assert all("farthest" in r for r in s.reasons)


def test_margin_with_a_model_asks_about_ambiguous_and_unknown_rows():
    X, y = blobs(spread=0.2)
    # a pool row halfway between clusters 0 and 1, and a cluster the model never saw
    mid = (X[y == "c0"].mean(0) + X[y == "c1"].mean(0)) / 2
    X = np.vstack([X, mid[None]]).astype(np.float32)
    y = np.append(y, "mid")
    known = np.flatnonzero(np.isin(y, [f"c{c}" for c in range(K - 1)]))
    train = known[::4]
    pipe = model_on(X, y, train)
    pool = np.setdiff1d(np.arange(len(X)), train)
    es = EmbeddingSet(X[pool], ids=[str(i) for i in pool], provenance=Provenance(dim=DIM))
    s = pipe.suggest(es, 10, seed=0)
    assert s.strategy == "margin"  # 10 labels per class: auto turns to the model
    picked = y[pool[s.positions]]
    assert "mid" in picked
    assert any(r.startswith("ambiguous between") for r in s.reasons)
    unknown = f"c{K - 1}"
    assert unknown in picked  # the novelty share goes to the cluster no class covers
    assert any("unlike any class" in r or "far from the known" in r for r in s.reasons)
    assert s.predicted is not None and len(s.predicted) == 10
    # a model's own training rows count as labelled: auto below 4 per class stays typical
    few = model_on(X, y, known[np.unique(y[known], return_index=True)[1]])
    assert few.suggest(es, 5, seed=0).strategy == "typiclust"


def test_streamed_pool_matches_the_in_memory_choice(tmp_path):
    from embedlab.data.sharded import ShardWriter

    X, y = blobs(per=60)
    prov = Provenance(dim=DIM)
    w = ShardWriter(tmp_path / "pool", {"input": "blobs"})
    starts = range(0, len(X), 250)
    for i, s in enumerate(starts):
        part = np.arange(s, min(s + 250, len(X)))
        w.write(i, EmbeddingSet(X[part], ids=[f"r{j}" for j in part], provenance=prov), s)
    w.finish(len(starts))
    streamed = suggest(tmp_path / "pool", K, sample=300, seed=1)
    assert any("streamed" in n for n in streamed.notes)
    assert len(set(y[streamed.positions])) == K
    assert [f"r{p}" for p in streamed.positions] == list(streamed.ids)
    again = suggest(tmp_path / "pool", K, sample=300, seed=1)
    assert np.array_equal(streamed.positions, again.positions)
    rnd = suggest(tmp_path / "pool", 20, strategy="random", sample=300, seed=1)
    assert len(set(rnd.positions.tolist())) == 20


def test_bad_input_is_one_clear_line():
    X, y = blobs()
    with pytest.raises(ValidationError, match="larger than the"):
        suggest(X, len(X) + 1)
    with pytest.raises(ValidationError, match="strategy must be one of"):
        suggest(X, 3, strategy="smart")
    with pytest.raises(ValidationError, match="needs a fitted model"):
        suggest(X, 3, strategy="margin")
    with pytest.raises(ValidationError, match="carries a label already"):
        suggest(EmbeddingSet(X, labels=y), 3)
    with pytest.raises(ValidationError, match="positive number"):
        suggest(X, 0)
    pipe = model_on(X, y, np.arange(0, len(X), 3))
    with pytest.raises(ValidationError, match="dimensions"):
        suggest(X[:, :10], 3, model=pipe)
    other = EmbeddingSet(X, provenance=Provenance(encoder={"fingerprint": "x", "dim": DIM}))
    with pytest.raises(ValidationError, match="another encoder"):
        suggest(other, 3, model=pipe)


def test_simulation_shows_typicality_beats_random_at_a_cold_start():
    X, y = blobs(spread=0.6)
    Xt, yt = blobs(seed=0, spread=0.6)  # the same clusters, fresh noise below
    Xt = Xt + 0.05 * np.random.default_rng(9).normal(size=Xt.shape).astype(np.float32)
    pts = simulate_labeling(
        X, y, Xt, yt, budgets=[K, 3 * K], strategies=["random", "typiclust", "stratified"],
        seeds=[0, 1],
    )  # fmt: skip
    assert {p["strategy"] for p in pts} == {"random", "typiclust", "stratified"}
    first = {
        s: np.mean([p["accuracy"] for p in pts if p["strategy"] == s and p["budget"] == K])
        for s in ("random", "typiclust", "stratified")
    }
    assert first["typiclust"] > first["random"]
    assert first["stratified"] == pytest.approx(1.0, abs=0.05)  # every class once
    assert parse_budgets("150:600:150") == [150, 300, 450, 600]
    assert parse_budgets("5,1,3") == [1, 3, 5]
    with pytest.raises(ValidationError):
        parse_budgets("10:5:1")
    with pytest.raises(ValidationError, match="more than the pool"):
        simulate_labeling(X, y, Xt, yt, budgets=[len(X) + 1])
    assert labels_to_reach(np.array([10, 20]), np.array([0.5, 0.9]), 0.7) == pytest.approx(15)
    assert labels_to_reach(np.array([10, 20]), np.array([0.5, 0.6]), 0.7) is None


def test_label_issues_find_flipped_labels_and_never_out_of_scope_rows():
    X, y = blobs(spread=0.35)
    rng = np.random.default_rng(0)
    flipped = rng.choice(len(y), size=len(y) // 20, replace=False)
    noisy = y.copy()
    noisy[flipped] = np.array([f"c{(int(v[1:]) + 1) % K}" for v in y[flipped]], dtype=object)
    noisy[:5] = "oos"  # out-of-scope rows: never label errors
    found = label_issues(X, noisy, seed=0)
    truth = set(flipped.tolist()) - set(range(5))
    hits = len(truth & set(found.rows.tolist()))
    assert hits / len(truth) >= 0.8
    assert hits / max(1, len(found)) >= 0.8
    assert not set(found.rows.tolist()) & set(range(5))
    assert found.checked == len(y) - 5 and any("out of scope" in n for n in found.notes)
    i = int(np.flatnonzero(np.isin(found.rows, list(truth)))[0])
    assert found.suggested[i] == y[found.rows[i]]  # the suggested label is the true one
    table = found.to_table(ids=[f"id{k}" for k in range(len(y))])
    assert table.column_names[:3] == ["rank", "row", "id"]
    again = label_issues(X, noisy, seed=0)
    assert np.array_equal(found.rows, again.rows)
    with pytest.raises(ValidationError, match="two classes"):
        label_issues(X[:10], ["a"] * 10)
    with pytest.raises(ValidationError, match="filter_by"):
        label_issues(X, noisy, filter_by="vibes")


def test_cli_and_service_suggest_from_a_fitted_model(quick_model, tmp_path):
    import csv

    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from embedlab.cli import app
    from embedlab.data.datasets import demo_path
    from embedlab.serve import ServeConfig, create_app

    with open(demo_path("test"), encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    pool = tmp_path / "pool.csv"
    with open(pool, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i, r in enumerate(rows):
            w.writerow([r["text"], r["label"] if i < 5 else ""])  # 5 labelled already
    out = tmp_path / "to_label.csv"
    run = CliRunner().invoke(app, ["suggest", str(pool), "-m", str(quick_model), "-n", "8",
                                   "-o", str(out)])  # fmt: skip
    assert run.exit_code == 0, run.output
    with open(out, encoding="utf-8") as f:
        got = list(csv.DictReader(f))
    assert len(got) == 8 and {"reason", "predicted", "text"} <= set(got[0])
    assert not {g["text"] for g in got} & {r["text"] for r in rows[:5]}
    bad = CliRunner().invoke(app, ["suggest", str(pool), "-n", "1000", "-o", str(out), "--force"])
    assert bad.exit_code != 0 and "larger than the" in bad.output

    name = quick_model.name
    with TestClient(create_app(ServeConfig(paths=[str(quick_model)]))) as c:
        texts = [r["text"] for r in rows[:30]]
        r = c.post(f"/v1/models/{name}/suggest", json={"input": texts, "n": 4, "seed": 1})
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["data"]) == 4 and all(0 <= d["index"] < 30 for d in body["data"])
        assert body["data"][0]["text"] == texts[body["data"][0]["index"]]
        r = c.post(f"/v1/models/{name}/suggest", json={"input": texts[:3], "n": 5})
        assert r.status_code == 200 and len(r.json()["data"]) == 3  # all of them, ranked
        assert "more than the 3 texts" in r.json()["notes"][-1]


def test_a_multi_label_model_asks_about_labels_near_their_thresholds():
    from embedlab.models.multilabel import MultiLabelClassifier
    from embedlab.models.pipeline import Pipeline

    X, y = blobs()
    rows = np.arange(0, len(X), 3)
    cells = [f"{v},{'x' if i % 2 else 'z'}" for i, v in zip(rows, y[rows], strict=True)]
    clf = MultiLabelClassifier()
    pipe = Pipeline(encoder=LookupEncoder(X), classifier=clf, adapt=False)
    pipe.fit([f"r{i}" for i in rows], cells)
    s = pipe.suggest(EmbeddingSet(X, provenance=Provenance(dim=DIM)), 5, seed=0)
    assert s.strategy == "margin" and len(s) == 5
    assert any(r.startswith("undecided on") for r in s.reasons)
