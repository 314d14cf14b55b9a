"""Aligning two encoders' spaces, and moving models and indexes through the map
(embedlab.align) — on synthetic encoders whose relation is known."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from embedlab.align import (
    Alignment,
    fit_alignment,
    map_fidelity,
    migrate_classifier,
    migrate_index,
    migrate_model,
    min_calibration_texts,
    random_rotation,
)
from embedlab.core.errors import StoreError, ValidationError

D_OLD, D_NEW, K = 24, 16, 6


def _unit(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


class ClusterEncoder:
    """Text "c<k> <n>" → class k's centre plus a per-text offset (hash-seeded), then a fixed
    linear map ``M`` (and a bend ``warp``): two instances with different maps are two
    encoders of the same texts."""

    def __init__(self, M: np.ndarray, name: str, warp: float = 0.0):
        self.M, self.name, self.warp = M, name, warp
        rng = np.random.default_rng(7)
        self.centres = rng.normal(size=(K, D_OLD)) * 1.5

    @property
    def dim(self):
        return self.M.shape[1]

    @property
    def spec(self):
        return {"kind": "synthetic", "fingerprint": self.name, "dim": self.dim}

    def encode(self, texts, *, progress=None):
        rows = []
        for t in texts:  # test helper: per-text seeds
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:4], "little")
            k = int(t.split()[0][1:])
            rows.append(self.centres[k] + np.random.default_rng(seed).normal(size=D_OLD))
        Z = np.asarray(rows) @ self.M
        if self.warp:
            Z = Z + self.warp * np.tanh(Z)
        return _unit(Z).astype(np.float32)


def _texts(n, start=0):
    return [f"c{i % K} {start + i}" for i in range(n)]


@pytest.fixture(scope="module")
def encoders():
    rng = np.random.default_rng(0)
    old = ClusterEncoder(np.eye(D_OLD), "old")
    Q, _ = np.linalg.qr(rng.normal(size=(D_OLD, D_OLD)))
    new = ClusterEncoder(Q[:, :D_NEW] * 2.0, "new", warp=0.3)
    return old, new


def test_procrustes_recovers_a_rotation_exactly():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 20)).astype(np.float32)
    Q, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    Y = (3.0 * X @ Q + 0.5).astype(np.float32)
    al = fit_alignment(X, Y, method="procrustes")
    np.testing.assert_allclose(al.forward(X), Y, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(al.backward(Y), X, rtol=1e-3, atol=1e-3)
    fid = al.info["fidelity"]["forward"]
    assert fid["mean_cosine"] > 0.999 and fid["neighbour_overlap@10"] > 0.99


def test_auto_picks_the_best_method_and_beats_a_random_rotation(encoders):
    old, new = encoders
    texts = _texts(600)
    A, B = old.encode(texts), new.encode(texts)
    al = fit_alignment(A, B, labels=[t.split()[0] for t in texts], old=old.spec, new=new.spec)
    tried = al.info["methods_tried"]
    assert set(tried) == {"procrustes", "ridge", "relative"}  # residual: same dims only
    assert al.method == max(tried, key=lambda m: tried[m]["mean_cosine"])
    test = _texts(300, start=10_000)
    mapped = al.forward(old.encode(test))
    truth = new.encode(test)
    assert np.allclose(np.linalg.norm(mapped, axis=1), 1, atol=1e-5)  # new vectors are unit
    fitted = map_fidelity(mapped, truth)
    floor = map_fidelity(random_rotation(D_OLD, D_NEW, seed=99)(old.encode(test)), truth)
    assert fitted["mean_cosine"] > 0.95 > floor["mean_cosine"] + 0.5
    assert fitted["neighbour_overlap@10"] > floor["neighbour_overlap@10"] + 0.3
    # cross-fitted fidelity predicts the fidelity on unseen texts
    assert abs(al.info["fidelity"]["forward"]["mean_cosine"] - fitted["mean_cosine"]) < 0.02
    per_class = al.info["per_class"]
    assert set(per_class["classes"]) == {f"c{k}" for k in range(K)}
    assert len(per_class["weakest"]) == K


def test_residual_map_keeps_a_student_near_identity_with_few_texts():
    """A new encoder that reproduces the old one up to noise: with 60 texts in 64
    dimensions the residual map stays near the identity; ridge shrinks toward zero."""
    rng = np.random.default_rng(3)
    X = _unit(rng.normal(size=(60, 64))).astype(np.float32)
    Y = _unit(X + 0.3 * rng.normal(size=X.shape) / 8).astype(np.float32)
    al = fit_alignment(X, Y)
    assert al.method == "residual"
    tried = al.info["methods_tried"]
    assert tried["residual"]["mean_cosine"] > tried["ridge"]["mean_cosine"] + 0.05
    with pytest.raises(ValidationError, match="one dimension"):
        fit_alignment(X, Y[:, :32], method="residual")


def test_bad_calibration_gets_one_line_errors(encoders):
    old, new = encoders
    A, B = old.encode(_texts(40)), new.encode(_texts(40))
    with pytest.raises(ValidationError, match="at least 50 are needed"):
        fit_alignment(A, B)
    assert min_calibration_texts(1024, 768) == 96
    A, B = old.encode(_texts(80)), new.encode(_texts(80))
    with pytest.raises(ValidationError, match="same texts, in the same order"):
        fit_alignment(A, B[:-1])
    bad = A.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValidationError, match="NaN"):
        fit_alignment(bad, B)
    with pytest.raises(ValidationError, match="unknown method"):
        fit_alignment(A, B, method="magic")
    al = fit_alignment(A, B, method="ridge")
    with pytest.raises(ValidationError, match="24-dimensional|dim"):
        al.forward(B)


def test_saved_map_round_trips_and_refuses_damage(encoders, tmp_path):
    old, new = encoders
    texts = _texts(200)
    al = fit_alignment(
        old.encode(texts), new.encode(texts), method="relative", old=old.spec, new=new.spec
    )
    al.save(tmp_path / "map")
    back = Alignment.load(tmp_path / "map")
    X = old.encode(_texts(20, start=500))
    np.testing.assert_array_equal(back.forward(X), al.forward(X))
    assert back.old == old.spec and back.method == "relative"
    with pytest.raises(StoreError, match="already exists"):
        al.save(tmp_path / "map")
    (tmp_path / "map" / "map.safetensors").write_bytes(b"damaged")
    with pytest.raises(StoreError, match="checksum"):
        Alignment.load(tmp_path / "map")
    with pytest.raises(StoreError, match="no map"):
        Alignment.load(tmp_path)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(Exception, match="not something embedlab wrote"):
        al.save(foreign, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_direction_and_encoder_checks(encoders):
    old, new = encoders
    texts = _texts(100)
    al = fit_alignment(old.encode(texts), new.encode(texts), old=old.spec, new=new.spec)
    al.check_old(old.spec, "this model")
    with pytest.raises(ValidationError, match="other way"):
        al.check_old(new.spec, "this model")
    other = {"kind": "synthetic", "fingerprint": "third", "dim": 24}
    with pytest.raises(ValidationError, match="another encoder"):
        al.check_old(other, "this index")


@pytest.mark.parametrize("head", ["prototype", "gaussian", "linear"])
def test_a_migrated_model_predicts_like_a_native_refit(encoders, head):
    from embedlab.models.openset import OpenSetClassifier
    from embedlab.models.pipeline import Pipeline

    old, new = encoders
    train = _texts(600, start=20_000)
    labels = [t.split()[0] for t in train]

    def fitted(enc):
        clf = OpenSetClassifier(head=head, detector="max-cosine", target_fpr=0.1)
        return Pipeline(encoder=enc, classifier=clf, adapt=False).fit(train, labels)

    model = fitted(old)
    calib = _texts(300, start=50_000)
    al = fit_alignment(old.encode(calib), new.encode(calib), old=old.spec, new=new.spec)
    moved = migrate_model(model, al, encoder=new)
    native = fitted(new)
    test = _texts(300, start=90_000)
    truth = np.array([t.split()[0] for t in test])
    acc_moved = (moved.predict(test, reject=False) == truth).mean()
    acc_native = (native.predict(test, reject=False) == truth).mean()
    assert acc_moved >= 0.95 * acc_native
    assert moved.encoder_ is new and model.encoder_ is old  # the old model is unchanged
    # the threshold was recalibrated on the same held-out rows, mapped: near its target
    held_rate = (moved.predict(test) == "oos").mean()
    assert held_rate < 0.25
    lineage = moved.info["lineage"]
    assert lineage["version"] == 2 and lineage["history"][-1]["op"] == "migrate"
    assert moved.info["migrated"]["new_encoder"] == "new"
    with pytest.raises(ValidationError, match="other way"):
        migrate_model(native, al, encoder=old)


def test_migrating_an_index_and_querying_an_old_one_through_the_map(encoders):
    from embedlab.compress.index import Index

    old, new = encoders
    corpus = _texts(600, start=100_000)
    calib = _texts(300, start=50_000)
    al = fit_alignment(old.encode(calib), new.encode(calib), old=old.spec, new=new.spec)
    index = Index("flat", D_OLD, old.spec).add(old.encode(corpus), ids=corpus)
    queries = _texts(60, start=200_000)
    qlabel = np.array([q.split()[0] for q in queries])

    def same_label(ids):
        return (np.vectorize(lambda s: s.split()[0])(ids) == qlabel[:, None]).mean()

    native = Index("flat", D_NEW, new.spec).add(new.encode(corpus), ids=corpus)
    base = same_label(native.search(new.encode(queries), 10, encoder=new.spec)[0])
    through = same_label(index.search(al.backward(new.encode(queries)), 10, encoder=old.spec)[0])
    moved = migrate_index(index, al)
    assert moved.encoder == new.spec and list(moved.ids) == corpus
    after = same_label(moved.search(new.encode(queries), 10, encoder=new.spec)[0])
    assert through >= 0.9 * base and after >= 0.9 * base
    with pytest.raises(ValidationError, match="other way"):
        migrate_index(moved, al)
    pq = Index("pq4", D_OLD, old.spec).add(old.encode(corpus), ids=corpus)
    with pytest.raises(ValidationError, match="--set"):
        migrate_index(pq, al)
    moved_pq = migrate_index(pq, al, vectors=old.encode(corpus))
    assert moved_pq.spec == "pq4" and len(moved_pq) == len(corpus)


@pytest.mark.slow
def test_align_migrate_search_and_info_through_the_cli(quick_model, demo_index, tmp_path):
    """The packaged MiniLM → its own layer-3 cut (another encoder, offline): align on the
    demo's training texts, migrate the demo model and index, predict with the moved model,
    search the old index with layer-3 queries through the map."""
    import json

    from typer.testing import CliRunner

    from embedlab.cli import app
    from embedlab.data.datasets import demo_path
    from embedlab.models.pipeline import Pipeline

    runner = CliRunner()
    mp, moved = tmp_path / "map", tmp_path / "moved"
    train = str(demo_path("train"))
    res = runner.invoke(
        app,
        [
            "align", str(quick_model), "default", "--new-layer", "3", "--texts", train,
            "-o", str(mp), "--label-col", "label",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "held-out cosine" in res.output
    doc = json.loads((mp / "map.json").read_text())
    assert doc["new"]["layer"] == 3 and doc["calibration_texts"] == 178
    res = runner.invoke(app, ["info", str(mp), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["method"] == doc["method"]

    res = runner.invoke(app, ["migrate", str(quick_model), "--map", str(mp), "-o", str(moved)])
    assert res.exit_code == 0, res.output
    model = Pipeline.load(moved)
    assert model.encoder_.spec["layer"] == 3
    assert model.info["lineage"]["history"][-1]["op"] == "migrate"
    test = demo_path("test")
    res = runner.invoke(app, ["evaluate", str(moved), str(test), "--json"])
    assert res.exit_code == 0, res.output
    assert doc["per_class"]["weakest"]
    page = tmp_path / "r.html"
    res = runner.invoke(app, ["report", str(moved), str(test), "-o", str(page), "--map", str(mp)])
    assert res.exit_code == 0, res.output
    html = page.read_text()
    assert "Encoder map" in html and doc["per_class"]["weakest"][0] in html
    # the moved model goes back the way it came: refused, and nothing is written
    res = runner.invoke(app, ["migrate", str(moved), "--map", str(mp), "-o", str(tmp_path / "x")])
    assert res.exit_code != 0 and "other way" in res.output
    assert not (tmp_path / "x").exists()
    # an output that is the input is refused before any work
    res = runner.invoke(
        app, ["migrate", str(quick_model), "--map", str(mp), "-o", str(quick_model), "--force"]
    )
    assert res.exit_code != 0

    res = runner.invoke(
        app, ["search", str(demo_index), "what is my balance", "--query-map", str(mp), "--json"]
    )
    assert res.exit_code == 0, res.output
    hits = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert len(hits) == 10 and hits[0]["label"] == "check_balance"
    # the service searches the old index with layer-3 queries through the map
    from fastapi.testclient import TestClient

    from embedlab.core.errors import ValidationError as Invalid
    from embedlab.serve import ServeConfig, create_app

    name = demo_index.resolve().name
    cfg = ServeConfig(paths=[str(demo_index)], query_maps={name: str(mp)})
    with TestClient(create_app(cfg)) as client:
        listed = client.get("/v1/indexes").json()["data"][0]
        assert listed["query_encoder"] == doc["new"]["fingerprint"]
        found = client.post(
            "/v1/search", json={"index": name, "input": ["what is my balance"], "k": 3}
        )
        assert found.status_code == 200, found.text
        assert found.json()["data"][0]["hits"][0]["label"] == "check_balance"
    with pytest.raises(Invalid, match="not served indexes"):
        create_app(ServeConfig(paths=[str(demo_index)], query_maps={"nope": str(mp)}))

    res = runner.invoke(
        app, ["migrate", str(demo_index), "--map", str(mp), "-o", str(tmp_path / "index3")]
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["search", str(tmp_path / "index3"), "what is my balance", "--json"])
    assert res.exit_code == 0, res.output


def test_a_multi_label_classifier_moves_with_its_label_sets(encoders):
    from embedlab.models.multilabel import MultiLabelClassifier

    old, new = encoders
    train = _texts(480, start=300_000)
    # every row carries its class and, for one row in three, the next class too
    sets = [
        t.split()[0] + (f",c{(int(t.split()[0][1:]) + 1) % K}" if i % 3 == 0 else "")
        for i, t in enumerate(train)
    ]
    clf = MultiLabelClassifier(head="prototype", cv=2).fit(old.encode(train), sets)
    calib = _texts(300, start=50_000)
    al = fit_alignment(old.encode(calib), new.encode(calib), old=old.spec, new=new.spec)
    moved = migrate_classifier(clf, al)
    assert list(moved.classes_) == list(clf.classes_)
    assert moved.head_ == clf.head_ and moved.train_Y_.sum() == clf.train_Y_.sum()
    native = MultiLabelClassifier(head="prototype", cv=2).fit(new.encode(train), sets)
    test = _texts(240, start=400_000)
    X = new.encode(test)
    agree = np.asarray(moved.predict(X)) == np.asarray(native.predict(X))
    assert agree.mean() > 0.9


def test_a_hierarchy_travels_with_a_migrated_model(encoders):
    from embedlab.models.hierarchy import Hierarchy
    from embedlab.models.openset import OpenSetClassifier
    from embedlab.models.pipeline import Pipeline

    old, new = encoders
    train = _texts(360, start=500_000)
    labels = [t.split()[0] for t in train]
    tree = Hierarchy.from_parents({f"c{k}": ("low" if k < 3 else "high") for k in range(K)})
    clf = OpenSetClassifier(head="prototype", detector="max-cosine", target_fpr=0.1)
    model = Pipeline(encoder=old, classifier=clf, adapt=False, hierarchy=tree).fit(train, labels)
    calib = _texts(300, start=50_000)
    al = fit_alignment(old.encode(calib), new.encode(calib), old=old.spec, new=new.spec)
    moved = migrate_model(model, al, encoder=new)
    assert moved.hierarchy is tree
    test = _texts(120, start=600_000)
    out = moved.predict_details(test, reject=False)
    coarse = next(iter(out.levels.values()))
    want = np.array(["low" if int(t.split()[0][1:]) < 3 else "high" for t in test])
    assert (np.asarray(coarse) == want).mean() > 0.9


def test_models_that_cannot_move_say_why(encoders):
    from embedlab.models.openset import OpenSetClassifier
    from embedlab.models.pipeline import Pipeline

    old, new = encoders
    calib = _texts(300, start=50_000)
    al = fit_alignment(old.encode(calib), new.encode(calib), old=old.spec, new=new.spec)
    zero = Pipeline(encoder=old, adapt=False).fit_labels_only([f"c{k}" for k in range(K)])
    with pytest.raises(ValidationError, match="fit --labels-only"):
        migrate_model(zero, al, encoder=new)
    train = _texts(240, start=700_000)
    labels = [t.split()[0] for t in train]
    clf = OpenSetClassifier(head="prototype", keep_rows=False)
    lean = Pipeline(encoder=old, classifier=clf, adapt=False).fit(train, labels)
    with pytest.raises(ValidationError, match="keeps no training vectors"):
        migrate_model(lean, al, encoder=new)
    # the map's new side must be the encoder the moved model is given
    with pytest.raises(ValidationError):
        migrate_model(lean, al, encoder=old)


def test_an_index_moved_from_a_set_checks_the_set_is_its_own(encoders, tmp_path):
    from embedlab.compress.index import Index
    from embedlab.data.embedding_set import EmbeddingSet, Provenance

    old, new = encoders
    corpus = _texts(300, start=800_000)
    calib = _texts(300, start=50_000)
    al = fit_alignment(old.encode(calib), new.encode(calib), old=old.spec, new=new.spec)
    X = old.encode(corpus)
    pq = Index("pq4", D_OLD, old.spec).add(X, ids=corpus)
    prov = Provenance(encoder=old.spec, dim=D_OLD)
    EmbeddingSet(X, ids=corpus, provenance=prov).save(tmp_path / "own")
    EmbeddingSet(X, ids=corpus[::-1], provenance=prov).save(tmp_path / "shuffled")
    EmbeddingSet(X[:100], ids=corpus[:100], provenance=prov).save(tmp_path / "short")
    moved = migrate_index(pq, al, vectors=tmp_path / "own")
    assert list(moved.ids) == corpus and moved.encoder == new.spec
    with pytest.raises(ValidationError, match="ids are not the index's"):
        migrate_index(pq, al, vectors=tmp_path / "shuffled")
    with pytest.raises(ValidationError, match="100 rows"):
        migrate_index(pq, al, vectors=tmp_path / "short")
    with pytest.raises(ValidationError, match="vectors for an index"):
        migrate_index(pq, al, vectors=X[:50])


def test_serve_query_map_options_are_checked():
    from embedlab.cli.serving import _query_maps
    from embedlab.core.errors import EmbedlabError

    assert _query_maps(["idx=maps/a", "other=/m=b"]) == {"idx": "maps/a", "other": "/m=b"}
    for bad in ("idx", "=maps/a", "idx="):
        with pytest.raises(EmbedlabError, match="INDEX=MAP"):
            _query_maps([bad])


def test_a_moved_linear_head_keeps_the_c_it_tuned(encoders):
    from embedlab.heads import LinearClassifier
    from embedlab.models.openset import OpenSetClassifier

    old, new = encoders
    train = _texts(300, start=900_000)
    labels = [t.split()[0] for t in train]
    clf = OpenSetClassifier(head=LinearClassifier(C="auto"), detector="max-cosine")
    clf.fit(old.encode(train), labels)
    calib = _texts(300, start=50_000)
    al = fit_alignment(old.encode(calib), new.encode(calib), old=old.spec, new=new.spec)
    moved = migrate_classifier(clf, al)
    assert moved.head_.C == clf.head_.C_ == moved.head_.C_
    assert clf.head_.C == "auto"  # the old model is unchanged
