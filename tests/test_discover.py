"""Issue 13: discovering new classes — cluster count estimated from the known classes,
noise set aside, names from distinctive words, the CLI loop discover → add-classes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score
from typer.testing import CliRunner

import embedlab.analysis.discover as discover_mod
from embedlab.analysis.discover import calibrate_cut, discover_classes
from embedlab.core.errors import ValidationError

WORDS = ["pizza", "flight", "alarm", "invoice", "garden", "piano", "tennis"]


def _blobs(rng, n_classes, per_class, d=32, spread=0.25, offset=0):
    centres = rng.normal(size=(n_classes, d))
    y = np.repeat(np.arange(n_classes), per_class) + offset
    X = centres[y - offset] + spread * rng.normal(size=(len(y), d))
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(0)
    Xk, yk = _blobs(rng, 12, 20)  # the known classes (the model's kept rows)
    Xn, yn = _blobs(rng, 5, 18, offset=100)  # five new classes among the rejected rows
    noise = rng.normal(size=(3, 32)).astype(np.float32) * 3  # three stray rows
    X = np.vstack([Xn, noise])
    y = np.r_[yn, [-1, -1, -1]]
    texts = [
        f"{WORDS[v - 100]} request number {i}" if v >= 0 else f"stray {i}" for i, v in enumerate(y)
    ]
    return Xk, yk.astype(str), X, y, texts


def test_finds_the_new_classes_without_being_told_how_many(world):
    Xk, yk, X, y, texts = world
    found = discover_classes(X, texts, reference=(Xk, yk), min_size=5)
    assert found.k == 5
    real = y >= 0
    assert normalized_mutual_info_score(y[real], found.labels[real]) > 0.95
    assert (found.labels[~real] == -1).all(), "stray rows are noise"
    # a member is at most as far from its centre as 99 % of known rows are from theirs:
    # a few of the 18 rows per class may fall beyond
    sizes = [c.size for c in found.clusters]
    assert min(sizes) >= 14 and sum(sizes) >= 84
    assert found.calibration["member_distance"] > 0
    # names come from each cluster's distinctive word; central texts are its own rows
    assert sorted(c.words[0] for c in found.clusters) == sorted(WORDS[:5])
    for c in found.clusters:
        assert all(c.words[0] in t for t in c.central_texts)
        assert found.central[found.labels == c.id].sum() == 3
    assert found.names()[~real].tolist() == [None] * 3
    assert found.calibration["rounds"][-1]["ari"] > 0.9


def test_discovery_is_deterministic_and_avoids_reserved_names(world):
    Xk, yk, X, _, texts = world
    a = discover_classes(X, texts, reference=(Xk, yk), reserved=["pizza_request"])
    b = discover_classes(X, texts, reference=(Xk, yk), reserved=["pizza_request"])
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.distance, b.distance)
    names = [c.name for c in a.clusters]
    assert "pizza_request" not in names and len(set(names)) == len(names)


def test_the_cut_follows_the_known_classes_granularity():
    rng = np.random.default_rng(1)
    tight, yt = _blobs(rng, 10, 20, spread=0.1)
    loose, yl = _blobs(rng, 10, 20, spread=0.6)
    assert calibrate_cut(tight, yt, per_class=20)[0] < calibrate_cut(loose, yl, per_class=20)[0]


def test_large_inputs_cluster_a_sample_and_assign_the_rest(world, monkeypatch):
    Xk, yk, X, y, texts = world
    monkeypatch.setattr(discover_mod, "MAX_TREE_ROWS", 40)
    found = discover_classes(X, texts, reference=(Xk, yk), min_size=3)
    real = y >= 0
    assert found.k == 5
    assert (found.labels[real] >= 0).mean() > 0.8, "most rows outside the tree join a cluster"
    clustered = real & (found.labels >= 0)
    assert normalized_mutual_info_score(y[clustered], found.labels[clustered]) > 0.99
    assert (found.labels[~real] == -1).all()


def test_bad_input(world):
    Xk, yk, X, _, texts = world
    with pytest.raises(ValidationError, match="texts for"):
        discover_classes(X, texts[:-1], reference=(Xk, yk))
    with pytest.raises(ValidationError, match="min_size"):
        discover_classes(X, texts, reference=(Xk, yk), min_size=1)
    with pytest.raises(ValidationError, match="reference"):
        discover_classes(X, texts)
    with pytest.raises(ValidationError, match="dimension"):
        discover_classes(X, texts, reference=(Xk[:, :8], yk))


def test_cli_discover_then_add_classes(quick_model, tmp_path):
    from embedlab.cli import app
    from embedlab.models.pipeline import Pipeline

    runner = CliRunner()
    unseen = [
        ("what is the wifi password", "a"),
        ("tell me the password for the wireless network", "a"),
        ("how do I get on the wifi here", "a"),
        ("what's the wifi password please", "a"),
        ("wifi password?", "a"),
        ("I need the wireless password", "a"),
        ("start the sprinklers in the garden", "b"),
        ("water the plants in the garden", "b"),
        ("turn on the garden sprinklers", "b"),
        ("the garden needs watering", "b"),
        ("switch the sprinklers on", "b"),
        ("irrigate the garden now", "b"),
    ]
    data = tmp_path / "new.csv"
    data.write_text("text\n" + "".join(f'"{t}"\n' for t, _ in unseen))
    out = tmp_path / "found"
    res = runner.invoke(
        app, ["discover", str(quick_model), str(data), "-o", str(out), "--all", "--min-size", "3"]
    )
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    import pyarrow.csv as pacsv

    rows = pacsv.read_csv(out / "clusters.csv").to_pylist()
    assert len(rows) == len(unseen)
    assert set(rows[0]) == {"text", "label", "cluster", "known_class", "distance", "central"}
    found = {r["cluster"] for r in rows if r["cluster"] >= 0 and not r["known_class"]}
    assert summary["k_estimated"] == len(found) >= 2
    by_text = {r["text"]: r["cluster"] for r in rows}
    assert by_text["what is the wifi password"] != by_text["water the plants in the garden"]
    assert "<svg" in (out / "report.html").read_text()
    # the reviewed file feeds add-classes as it is
    model2 = tmp_path / "v2"
    res = runner.invoke(
        app, ["add-classes", str(quick_model), str(out / "clusters.csv"), "-o", str(model2)]
    )
    assert res.exit_code == 0, res.output
    assert len(Pipeline.load(model2).classes_) == len(Pipeline.load(quick_model).classes_) + len(
        found
    )
    # rewriting needs --force; a model that rejects nothing has nothing to discover
    res = runner.invoke(app, ["discover", str(quick_model), str(data), "-o", str(out), "--all"])
    assert res.exit_code == 2
    res = runner.invoke(
        app,
        [
            "discover",
            str(quick_model),
            str(data),
            "-o",
            str(out),
            "--all",
            "--min-size",
            "3",
            "--force",
        ],
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app,
        ["discover", str(quick_model), str(data), "-o", str(tmp_path / "z"), "--min-size", "50"],
    )
    assert res.exit_code == 2 and "fewer than min_size 50" in res.output


def test_clusters_of_known_classes_are_told_from_new_ones():
    """Unusual rows of a known class (its outskirts) cluster beside it: that cluster is the
    known class again — named in ``known``, not counted in k, not suggested as a label —
    while a new class far from every known one stays new."""
    rng = np.random.default_rng(3)
    d = 32
    centres = rng.normal(size=(6, d))
    Xk = np.vstack([c + 0.25 * rng.normal(size=(30, d)) for c in centres]).astype(np.float32)
    yk = np.repeat([f"k{i}" for i in range(6)], 30)
    # the outskirts of k0: rows a bit farther from its centre than usual, in one direction
    push = rng.normal(size=d)
    outskirts = centres[0] + 0.1 * push + 0.25 * rng.normal(size=(15, d))
    new = rng.normal(size=d) * 1.0 + 0.2 * rng.normal(size=(15, d))
    X = np.vstack([outskirts, new]).astype(np.float32)
    texts = [f"outskirt {i}" for i in range(15)] + [f"new thing {i}" for i in range(15)]
    found = discover_classes(X, texts, reference=(Xk, yk), min_size=5, seed=0)
    known = found.known_classes()
    assert set(known[:15]) == {"k0"} and set(known[15:]) == {None}
    assert found.k == 1 and found.summary()["known_clusters"] == 1
    names = found.names()
    assert all(v is None for v in names[:15]) and len(set(names[15:])) == 1
    table = found.table().to_pylist()
    assert {r["known_class"] for r in table if r["text"].startswith("outskirt")} == {"k0"}
    assert {r["label"] for r in table if r["text"].startswith("outskirt")} == {"oos"}
