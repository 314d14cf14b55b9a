"""Concepts (embedlab.concepts): a sparse dictionary of a space, named from its texts, that
explains each answer — on synthetic spaces whose structure is known, then through the
model bundle, the CLI, the report and the service on the packaged demo."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from embedlab.concepts import ConceptDictionary, ConceptSet, fit_concepts, linear_form
from embedlab.core.errors import StoreError, ValidationError

K, D = 8, 32
TOPICS = ["apple", "river", "stone", "cloud", "piano", "tiger", "rocket", "garden"]
WORDS = [
    "red", "deep", "grey", "soft", "loud", "fast", "bright", "green",
    "sweet", "cold", "heavy", "white", "quiet", "wild", "tall", "fresh",
]  # fmt: skip


def _unit(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


class TopicEncoder:
    """Text "<topic> <word> n<i>" → the topic's direction plus the word's direction (two
    words per topic) plus noise: a space built from known parts."""

    dim = D

    def __init__(self):
        self.spec = {"kind": "synthetic", "fingerprint": "topics", "dim": D}
        rng = np.random.default_rng(3)
        self.topics = rng.normal(size=(K, D)) * 1.2
        self.words = rng.normal(size=(2 * K, D)) * 0.8

    def encode(self, texts, *, progress=None):
        rows = []
        for t in texts:  # test helper: a seed per text
            head, word, _ = t.split()
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:4], "little")
            noise = np.random.default_rng(seed).normal(size=D) * 0.3
            rows.append(self.topics[TOPICS.index(head)] + self.words[WORDS.index(word)] + noise)
        return _unit(np.asarray(rows)).astype(np.float32)


def _texts(n, start=0):
    return [f"{TOPICS[i % K]} {WORDS[(i % K) + K * ((i // K) % 2)]} n{start + i}" for i in range(n)]


@pytest.fixture(scope="module")
def space():
    enc = TopicEncoder()
    texts = _texts(1600)
    return enc, texts, [t.split()[0] for t in texts], enc.encode(texts)


def test_the_dictionary_reconstructs_and_the_same_seed_gives_the_same_atoms(space):
    _, _, _, X = space
    a = ConceptDictionary(32, 4, epochs=15, random_state=1).fit(X)
    b = ConceptDictionary(32, 4, epochs=15, random_state=1).fit(X)
    c = ConceptDictionary(32, 4, epochs=15, random_state=2).fit(X)
    np.testing.assert_array_equal(a.decoder_, b.decoder_)
    assert not np.array_equal(a.decoder_, c.decoder_)
    R = a.reconstruct(X)
    assert np.einsum("nd,nd->n", _unit(R), X).mean() > 0.9
    assert len(a.dead_atoms()) <= 0.05 * 32
    codes = a.codes(X)
    assert codes.index.shape == (len(X), 4) and (np.diff(codes.value, axis=1) <= 1e-6).all()
    omp = ConceptDictionary(64, 4, method="omp").fit(X)
    assert np.einsum("nd,nd->n", _unit(omp.reconstruct(X)), X).mean() > 0.8


def test_bad_requests_get_one_line_errors(space):
    _, _, _, X = space
    with pytest.raises(ValidationError, match="at most 400"):
        ConceptDictionary(1000, 4).fit(X)
    with pytest.raises(ValidationError, match="k must be below"):
        ConceptDictionary(8, 8).fit(X)
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValidationError, match="NaN"):
        ConceptDictionary(32, 4).fit(bad)
    with pytest.raises(ValidationError, match="whole number or 'auto'"):
        ConceptDictionary("many", 4).fit(X)
    with pytest.raises(ValidationError, match="not fitted"):
        ConceptDictionary(32, 4).codes(X)


def test_concepts_are_named_by_their_words_and_labels(space):
    _, texts, labels, X = space
    labels = list(labels)
    labels[:50] = ["oos"] * 50  # out-of-scope rows do not count for purity
    found = fit_concepts(X, texts, labels, n_atoms=48, k=3, epochs=15, ignore_labels=["oos"])
    live = [c for c in found.concepts if c.frequency > 0]
    # an atom that only ever enters with a negative value (least-squares refit) has no mass
    named = [c for c in live if c.label is not None]
    assert len(named) >= 0.9 * len(live) and all(c.words and c.texts for c in named)
    assert all(0 < c.purity <= 1 for c in live if c.purity is not None)
    assert all(lab != "oos" for c in live for lab, _ in c.label_mix)
    # the topics are the structure: most atoms belong to one
    assert np.mean([c.purity >= 0.5 for c in live if c.purity is not None]) >= 0.6
    summary = found.summary(X, labels)
    assert summary["mean_cosine"] > 0.85 and summary["purity_share_ge_0_5"] >= 0.6


@pytest.mark.parametrize("head", ["linear", "prototype", "gaussian", "knn"])
def test_explanations_add_up_and_point_at_what_matters(space, head):
    from embedlab.models.openset import OpenSetClassifier

    _, texts, labels, X = space
    clf = OpenSetClassifier(head=head, detector="max-cosine").fit(X, labels)
    found = fit_concepts(X, texts, labels, n_atoms=64, k=8, epochs=15)
    e = found.explain(X[:300], clf.head_, clf.detector_)
    total = e.label_bias + e.label_contribution.sum(1) + e.label_residual
    np.testing.assert_allclose(total, e.margin, rtol=1e-5, atol=1e-4)
    assert e.label_exact == (linear_form(clf.head_) is not None) == (head != "knn")
    np.testing.assert_allclose(
        e.novelty_residual + e.novelty_contribution.sum(1),
        clf.detector_.decision_function(X[:300]),
        atol=1e-5,
    )
    # deletion: the top-3 concepts move the margin more than 3 random active ones
    d = found.dictionary
    U, codes = _unit(X[:300]), d.codes(X[:300])
    order = np.argsort(-e.label_contribution, axis=1)[:, :3]
    rng = np.random.default_rng(0)
    rand = np.argsort(rng.random((len(order), 8)), axis=1)[:, :3]
    classes = list(clf.head_.classes_)
    c1 = np.asarray([classes.index(p) for p in e.predicted])
    c2 = np.asarray([classes.index(p) for p in e.runner_up])

    def margin_without(slots):
        part = np.zeros_like(U)
        for j in range(slots.shape[1]):  # three slots, vectorised over rows
            s = slots[:, j]
            rows = np.arange(len(U))
            part += codes.value[rows, s][:, None] * d.decoder_[codes.index[rows, s]]
        scores = clf.head_.class_scores(U - part)
        r = np.arange(len(U))
        return scores[r, c1] - scores[r, c2]

    base = clf.head_.class_scores(U)
    base = base[np.arange(len(U)), c1] - base[np.arange(len(U)), c2]
    drop_top = (base - margin_without(order)).mean()
    drop_random = (base - margin_without(rand)).mean()
    assert drop_top >= 2 * drop_random


def test_a_concept_set_round_trips_and_refuses_damage(space, tmp_path):
    _, texts, labels, X = space
    found = fit_concepts(X, texts, labels, n_atoms=32, k=3, epochs=5)
    found.save(tmp_path / "c")
    assert {p.name for p in (tmp_path / "c").iterdir()} == {
        "concepts.json",
        "dictionary.safetensors",
        "concepts.csv",
    }
    back = ConceptSet.load(tmp_path / "c")
    assert back.names == found.names
    np.testing.assert_array_equal(back.codes(X).index, found.codes(X).index)
    header = (tmp_path / "c" / "concepts.csv").read_text().splitlines()[0]
    assert header.startswith("id,name,top_words,central_texts,frequency")
    raw = bytearray((tmp_path / "c" / "dictionary.safetensors").read_bytes())
    raw[-5] ^= 0xFF
    (tmp_path / "c" / "dictionary.safetensors").write_bytes(bytes(raw))
    with pytest.raises(StoreError, match="checksum"):
        ConceptSet.load(tmp_path / "c")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(Exception, match="not something embedlab wrote"):
        found.save(mine, overwrite=True)
    assert (mine / "notes.txt").read_text() == "keep me"


def test_a_model_carries_its_concepts_through_class_changes(space):
    from embedlab.models.openset import OpenSetClassifier
    from embedlab.models.pipeline import Pipeline

    enc, texts, labels, _ = space
    clf = OpenSetClassifier(head="prototype", detector="max-cosine")
    pipe = Pipeline(encoder=enc, classifier=clf, adapt=False).fit(texts, labels)
    with pytest.raises(ValidationError, match="no concepts"):
        pipe.predict_details(texts[:3], explain=True)
    with_c = pipe.fit_concepts(n_atoms=48, k=4, epochs=10)  # from the kept rows
    assert pipe.concepts_ is None and with_c.concepts_ is not None
    assert with_c.info["lineage"]["history"][-1]["op"] == "concepts"
    out = with_c.predict_details(texts[:5], explain=True)
    rows = out.explain(top=2)
    assert len(rows) == 5 and rows[0]["label"]["class"] == out.labels[0]
    cols = out.columns()
    assert {"concepts", "novelty_concepts", "explanation"} <= set(cols)
    assert json.loads(cols["explanation"][0])["label"]["exact"] is True
    fewer = with_c.remove_classes(["river"])
    assert fewer.concepts_ is not None
    assert all(lab != "river" for c in fewer.concepts_.concepts for lab, _ in c.label_mix)
    with pytest.raises(ValidationError, match="explain=True"):
        pipe.predict_details(texts[:3]).explain()


def test_concept_drift_finds_the_concept_that_rose(space):
    from embedlab.concepts.profile import class_profiles, concept_drift

    enc, texts, labels, X = space
    found = fit_concepts(X, texts, labels, n_atoms=48, k=4, epochs=10)
    new = enc.encode([t for t in _texts(1600, start=10_000) if t.startswith("stone ")] * 3)
    drift = concept_drift(found, np.vstack([X[:800], new]), X)
    top = found.concepts[drift["rose"][0]["concept"]]
    assert top.label == "stone" and drift["rose"][0]["z"] > 3
    profiles = class_profiles(found, X, labels)
    assert {p["class"] for p in profiles} == set(labels)


def test_the_service_counts_concepts_for_metrics():
    from embedlab.serve.metrics import Metrics

    m = Metrics(window=100)
    reference = np.array([0.5, 0.3, 0.2, 0.0])
    m.observe_concepts("model", np.array([[3, 0], [3, -1], [3, 1]]), reference, list("abcd"))
    m.refresh_model_health()
    text = m.registry.get_sample_value("embedlab_concept_shift", {"model": "model"})
    assert text > 0.3
    share = m.registry.get_sample_value(
        "embedlab_concept_share", {"model": "model", "concept": "3:d", "window": "recent"}
    )
    assert share == pytest.approx(1.0)


@pytest.mark.slow
def test_concepts_through_the_cli_report_and_service(quick_model, tmp_path):
    """encode → concepts of the space; concepts into the demo model in place; predict
    --explain; report --against; /v1/classify with explain and /metrics."""
    import pyarrow.csv as pacsv
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from embedlab.cli import app
    from embedlab.data.datasets import demo_path
    from embedlab.serve import ServeConfig, create_app

    runner = CliRunner()
    train, test = str(demo_path("train")), str(demo_path("test"))
    res = runner.invoke(app, ["encode", train, "-o", str(tmp_path / "space")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app, ["concepts", str(tmp_path / "space"), "-o", str(tmp_path / "c"), "--k", "4"]
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "c" / "concepts.csv").is_file() and "learnt 44 concepts" in res.output
    res = runner.invoke(app, ["concepts", str(tmp_path / "space"), "--k", "44"])
    assert res.exit_code != 0 and "-o DIR" in res.output
    bad_k = ["concepts", str(tmp_path / "space"), "-o", str(tmp_path / "d"), "--k", "60"]
    res = runner.invoke(app, bad_k)
    assert res.exit_code != 0 and "k must be below" in res.output

    model = tmp_path / "model"
    import shutil

    shutil.copytree(quick_model, model)
    args = ["concepts", str(model), "--texts", train, "--label-col", "label", "--in-place"]
    res = runner.invoke(app, [*args, "--k", "4", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["atoms"] == 44 and summary["concepts"][0]["words"]
    out = tmp_path / "why.csv"
    res = runner.invoke(app, ["predict", str(model), test, "-o", str(out), "--explain"])
    assert res.exit_code == 0, res.output
    table = pacsv.read_csv(out)
    assert {"concepts", "novelty_concepts", "explanation"} <= set(table.column_names)
    assert all(table.column("concepts").to_pylist())
    plain = ["predict", str(quick_model), test, "-o", str(tmp_path / "x.csv"), "--explain"]
    res = runner.invoke(app, plain)
    assert res.exit_code != 0 and "no concepts" in res.output
    page = tmp_path / "r.html"
    res = runner.invoke(app, ["report", str(model), test, "-o", str(page), "--against", train])
    assert res.exit_code == 0, res.output
    html = page.read_text()
    assert "Concepts" in html and "Concept drift" in html and "Each class" in html

    with TestClient(create_app(ServeConfig(paths=[str(model)]))) as client:
        name = model.name
        got = client.post(
            "/v1/classify", json={"model": name, "input": ["what is my balance"], "explain": True}
        )
        assert got.status_code == 200, got.text
        row = got.json()["data"][0]
        assert row["explanation"]["label"]["concepts"]
        plain = client.post("/v1/classify", json={"model": name, "input": ["hello there"]})
        assert "explanation" not in plain.json()["data"][0]
        metrics = client.get("/metrics").text
        assert "embedlab_concept_shift" in metrics and "embedlab_concept_share" in metrics
