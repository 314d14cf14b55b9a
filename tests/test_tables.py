"""Learned tables for categorical columns (embedlab.tables): layouts under a byte budget,
keys and vocabularies, the model's fit / predict / save / load, the planner and the CLI."""

from __future__ import annotations

import json
import pickle
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from embedlab.cli import app
from embedlab.core.errors import StoreError, ValidationError
from embedlab.tables import KINDS, TableModel, TablesWarning, lay_out, parse_bytes
from embedlab.tables.columns import MISSING_KEY, CategoricalStats, column_keys
from embedlab.tables.layout import Lookup
from embedlab.tables.planning import plan_tables
from embedlab.tables.synthetic import synthetic_records

runner = CliRunner()


def _stats(cards, seed=0, n=20_000):
    rng = np.random.default_rng(seed)
    out = []
    for i, c in enumerate(cards):
        values = np.array([f"v{j}" for j in rng.zipf(1.3, n) % c], dtype=object)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TablesWarning)
            out.append(CategoricalStats.of(values, f"c{i}")[0])
    return out


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fraction", [1 / 2, 1 / 8, 1 / 32])
def test_layout_stays_within_budget(kind, fraction):
    stats = _stats([3, 50, 2_000, 15_000])
    full = lay_out(stats).full_bytes
    budget = int(full * fraction)
    layout = lay_out(stats, kind=kind, budget=budget)
    assert 0 < layout.bytes <= budget
    small = next(c for c in layout.columns if c.name == "c0")
    assert small.kind == ("unified" if kind == "unified" else "full")  # small columns stay full
    big = next(c for c in layout.columns if c.name == "c3")
    if kind != "unified":
        assert big.kind == kind  # the big one is squeezed by its own kind
    assert (
        layout.to_json()
        == type(layout).from_json(json.loads(json.dumps(layout.to_json()))).to_json()
    )


def test_layout_narrows_before_starving_and_refuses_impossible_budgets():
    stats = _stats([10, 12, 8])
    full = lay_out(stats, dim=16)
    tight = lay_out(stats, kind="hash", budget=full.full_bytes // 8, dim=16)
    assert tight.dim < 16 and all(c.kind == "full" for c in tight.columns)
    with pytest.raises(ValidationError, match="cannot give"):
        lay_out(_stats([1_000] * 10, n=2_000), kind="qr", budget=64, dim=16)
    with pytest.raises(ValidationError, match="unknown table kind"):
        lay_out(stats, kind="bloom")
    assert parse_bytes("2MB") == 2_000_000 and parse_bytes("1KiB") == 1024
    with pytest.raises(ValidationError):
        parse_bytes("two megabytes")


def test_keys_are_deterministic_and_missing_has_its_own():
    a = column_keys(np.array(["x", "3", None, "", 3.0, float("nan")], dtype=object), "col")
    b = column_keys(np.array(["x", "3", None, "", 3.0, float("nan")], dtype=object), "col")
    assert np.array_equal(a, b)
    assert a[1] == a[4]  # "3" and 3.0 are one value
    assert (a[[2, 3, 5]] == MISSING_KEY).all() and (a[[0, 1]] != MISSING_KEY).all()
    other = column_keys(np.array(["x"], dtype=object), "another column")
    assert other[0] != a[0]  # salted by the column


def test_every_kind_gives_distinct_rows_in_range():
    stats = _stats([400])
    for kind in ("full", "mixed", "qr", "hash"):
        layout = lay_out(stats, kind=kind, budget=lay_out(stats).full_bytes // 4)
        col = layout.columns[0]
        lk = Lookup.fitted(col, stats[0])
        idx = lk.indices(stats[0].keys, layout.shared_rows)
        if kind == "mixed":
            block, within = idx
            sizes = [n + (2 if b == 0 else 0) for b, (n, _) in enumerate(col.blocks)]
            assert (within >= 0).all() and (within < np.array(sizes)[block]).all()
            kept = np.arange(len(block)) < col.kept
            pairs = set(zip(block[kept].tolist(), within[kept].tolist(), strict=True))
            assert len(pairs) == kept.sum()  # every kept value has a row of its own
        elif kind == "full":
            assert idx[0].max() < col.rows
            assert len(set(idx[0][: col.kept].tolist())) == col.kept
        elif kind == "qr":
            assert idx[0].max() < col.q and idx[1].max() < col.m
            pairs = set(zip(idx[0].tolist(), idx[1].tolist(), strict=True))
            assert len(pairs) > 0.9 * len(stats[0].keys)  # nearly collision-free pairs


def _small_synthetic(n=30_000, seed=0):
    data = synthetic_records(n + 10_000, (50, 500, 5_000), exponent=1.2, seed=seed)
    return data.split(n)


def test_model_learns_and_full_beats_hash_at_a_sixteenth():
    train, test = _small_synthetic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TablesWarning)
        full = TableModel(cat_cols=list(train.columns), tables="full").fit(train.columns, train.y)
        f = full.evaluate(test.columns, test.y)
        budget = full.layout_.full_bytes // 16
        hashed = TableModel(cat_cols=list(train.columns), tables="hash", budget=budget)
        h = hashed.fit(train.columns, train.y).evaluate(test.columns, test.y)
    prior = -np.mean(test.y * np.log(train.y.mean()) + (1 - test.y) * np.log(1 - train.y.mean()))
    assert test.bayes_log_loss < f["log_loss"] < prior - 0.05
    assert f["log_loss"] < h["log_loss"]
    assert hashed.layout_.bytes <= budget and f["auc"] > 0.7


def test_same_seed_same_model_and_save_load_pickle(tmp_path):
    rng = np.random.default_rng(1)
    n = 600
    data = {
        "shop": rng.choice(["a", "b", "c", None], n).astype(object),
        "item": np.array([f"i{v}" for v in rng.integers(0, 80, n)], dtype=object),
        "price": np.where(rng.random(n) < 0.05, np.nan, rng.gamma(2.0, 10.0, n)),
    }
    y = np.where((data["shop"] == "a") | (data["price"] > 30), "yes", "no")
    make = lambda: TableModel(cat_cols=["shop", "item"], num_cols=["price"], tables="qr",  # noqa: E731
                              budget=2_000, seed=3).fit(data, y)  # fmt: skip
    one, two = make(), make()
    p1 = one.predict_proba(data)
    assert np.array_equal(p1, two.predict_proba(data))
    one.save(tmp_path / "m")
    loaded = TableModel.load(tmp_path / "m")
    assert np.allclose(loaded.predict_proba(data), p1, atol=1e-6)
    assert np.allclose(pickle.loads(pickle.dumps(one)).predict_proba(data), p1, atol=1e-6)
    new = {"shop": np.array(["z"], dtype=object), "item": np.array([None], dtype=object),
           "price": np.array([np.nan])}  # fmt: skip
    counts = {}
    assert loaded.predict_details(new, counts=counts).labels[0] in ("yes", "no")
    assert counts == {"unseen": {"shop": 1}, "numeric_filled": 1}  # item is hashed (qr)
    doc = json.loads((tmp_path / "m" / "tables.json").read_text())
    doc["classes"] = ["no", "maybe"]
    (tmp_path / "m" / "tables.json").write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="edited or damaged"):
        TableModel.load(tmp_path / "m")


def test_bad_columns_warn_or_say_why():
    rng = np.random.default_rng(0)
    n = 400
    data = {
        "const": np.array(["same"] * n, dtype=object),
        "age": rng.integers(18, 90, n),
        "city": rng.choice(["x", "y"], n).astype(object),
        "text_number": np.array(["12", "x"] * (n // 2), dtype=object),
    }
    y = rng.choice(["p", "q"], n)
    with pytest.warns(TablesWarning) as caught:
        m = TableModel(cat_cols=["const", "age", "city"], epochs=2).fit(data, y)
    said = " ".join(str(w.message) for w in caught)
    assert "one value only" in said and "holds numbers" in said
    assert [c.name for c in m.layout_.columns] == ["age", "city"]
    with pytest.raises(ValidationError, match="no column 'nope'"):
        TableModel(cat_cols=["nope"]).fit(data, y)
    with pytest.raises(ValidationError, match="not numbers"):
        TableModel(num_cols=["text_number"]).fit(data, y)
    with pytest.raises(ValidationError, match="one class"):
        TableModel(cat_cols=["city"]).fit(data, ["p"] * n)
    with pytest.raises(ValidationError, match="needs a text column"):
        TableModel().fit(data, y)


@pytest.mark.filterwarnings("ignore::embedlab.tables.TablesWarning")
def test_many_distinct_ids_are_bounded_by_the_budget():
    n = 100_000
    ids = np.arange(n).astype(str).astype(object)  # every id distinct
    y = (np.arange(n) % 3 == 0).astype(int)
    for kind in ("auto", "hash", "unified", "full"):
        m = TableModel(cat_cols=["id"], tables=kind, budget="64kB", epochs=1)
        m.fit({"id": ids}, y)
        assert m.layout_.bytes <= 64_000
        if kind == "full":  # keeps what fits, the rest share a row, and says so
            assert m.layout_.columns[0].rare_values > 95_000
            assert "share one row" in m.layout_.describe()[0]


def test_text_vectors_join_the_columns():
    rng = np.random.default_rng(0)
    n = 800
    vec = rng.normal(size=(n, 8)).astype(np.float32)
    texts = np.array(["t"] * n, dtype=object)
    texts[:20] = ""  # no text: zero vector and a flag
    city = rng.choice(["a", "b"], n).astype(object)
    y = np.where((vec[:, 0] > 0) ^ (city == "a"), 1, 0)
    data = {"text": texts, "city": city}
    both = TableModel(text_col="text", cat_cols=["city"], seed=0).fit(data, y, vectors=vec)
    text_only = TableModel(text_col="text", seed=0).fit(data, y, vectors=vec)
    assert both.evaluate(data, y, vectors=vec)["accuracy"] > 0.9
    assert text_only.evaluate(data, y, vectors=vec)["accuracy"] < 0.7  # xor needs the city
    with pytest.raises(ValidationError, match="8-d"):
        both.predict(data, vectors=vec[:, :4])


def test_planner_finds_the_front_and_recommends():
    train, _ = _small_synthetic(n=8_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TablesWarning)
        plan = plan_tables(train.columns, train.y, cat_cols=list(train.columns),
                           kinds=("hash", "qr"), fractions=(1 / 4, 1 / 16), epochs=3)  # fmt: skip
    assert {(r["kind"], r["fraction"]) for r in plan.rows} >= {("full", 1.0), ("qr", 1 / 16)}
    assert any(r["pareto"] for r in plan.rows)
    best = min(r["log_loss"] for r in plan.rows)
    assert plan.recommended["log_loss"] <= best * (1 + plan.tolerance)


def test_cli_fit_predict_evaluate_plan(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    n = 1_000
    shop = rng.choice(["north", "south", "east"], n)
    size = rng.normal(size=n)
    label = np.where((shop == "north") | (size > 1), "big", "small")
    path = tmp_path / "records.parquet"
    pq.write_table(pa.table({"shop": shop, "size": size, "label": label}), path)
    model = tmp_path / "m"
    args = ["--no-text", "--cat-cols", "shop", "--num-cols", "size", "--budget", "1kB"]
    res = runner.invoke(app, ["fit", str(path), *args, "-o", str(model)])
    assert res.exit_code == 0, res.output
    assert "tables" in res.output and (model / "tables.json").is_file()
    res = runner.invoke(app, ["evaluate", str(model), str(path), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1])["accuracy"] > 0.9
    out = tmp_path / "p.csv"
    res = runner.invoke(
        app, ["predict", str(model), str(path), "-o", str(out), "--chunk-rows", "300"]
    )
    assert res.exit_code == 0, res.output
    got = pq.read_table(path).num_rows, out.read_text().count("\n") - 1
    assert got[0] == got[1]
    stale = out.with_name(f".{out.name}.999999999.tmp")  # left by a killed run
    stale.write_text("half")
    res = runner.invoke(app, ["predict", str(model), str(path), "-o", str(out), "--force",
                              "--id-col", "nope"])  # fmt: skip
    assert res.exit_code == 2 and "no id column 'nope'" in res.output
    assert not stale.exists() and not list(tmp_path.glob(".p.csv.*.tmp"))
    own = tmp_path / "own.parquet"  # an input column called novelty is the user's: kept
    pq.write_table(pa.table({"shop": shop, "size": size, "novelty": size}), own)
    res = runner.invoke(app, ["predict", str(model), str(own), "-o", str(tmp_path / "o.csv")])
    assert res.exit_code == 0, res.output
    header = (tmp_path / "o.csv").read_text().splitlines()[0]
    assert '"novelty"' in header and "out_of_scope" not in header
    res = runner.invoke(app, ["fit", str(path), "--cat-cols", "shop", "--head", "knn", "-o",
                              str(tmp_path / "x")])  # fmt: skip
    assert res.exit_code == 2 and "--head auto, mlp or linear" in res.output
    res = runner.invoke(app, ["fit", str(path), "--cat-cols", "shop", "--multi-label", "-o",
                              str(tmp_path / "x")])  # fmt: skip
    assert res.exit_code == 2 and "do not apply" in res.output
    res = runner.invoke(app, ["plan", str(path), "--cat-cols", "shop", "--num-cols", "size",
                              "--target", "label", "--no-text", "-o", str(tmp_path / "plan"),
                              "--no-plot"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "recommended: --tables" in res.output and (tmp_path / "plan" / "plan.csv").is_file()


@pytest.mark.slow
def test_served_table_model_answers_records(table_model, quick_model):
    """POST /v1/models/{name}/records: the library's labels, unseen values counted, a
    missing column read as missing, bad numbers 422, an unknown name 404; listed in
    /v1/models as kind "tables"."""
    from fastapi.testclient import TestClient

    from embedlab.serve import ServeConfig, create_app
    from embedlab.serve.registry import Registry

    service = create_app(ServeConfig(), Registry([table_model, quick_model]))
    records = [
        {"text": "what is my balance", "channel": "web", "words": 4},
        {"text": "", "channel": "fax", "words": None},
        {"channel": "app"},
    ]
    model = TableModel.load(table_model)
    with TestClient(service) as client:
        res = client.post("/v1/models/records/records", json={"records": records, "top_k": 2})
        assert res.status_code == 200, res.text
        body = res.json()
        data = {k: np.array([r.get(k) for r in records], dtype=object)
                for k in ("text", "channel", "words")}  # fmt: skip
        expected = model.predict_details(data, top_k=2)
        assert [r["label"] for r in body["data"]] == expected.labels.tolist()
        assert body["unseen"] == {"channel": 1} and body["numeric_filled"] == 2
        assert len(body["data"][0]["top"]) == 2 and "novelty" not in body["data"][0]
        bad = client.post("/v1/models/records/records", json={"records": [{"words": "many"}]})
        assert bad.status_code == 422 and "not numbers" in bad.text
        missing = client.post("/v1/models/nope/records", json={"records": [{}]})
        assert missing.status_code == 404 and "table_model_not_found" in missing.text
        listed = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
        assert listed["records"]["kind"] == "tables"
        assert listed["records"]["columns"]["categorical"] == ["channel"]


def test_select_columns_leaves_out_a_column_that_only_adds_noise():
    rng = np.random.default_rng(0)
    n = 3_000
    shop = rng.choice(["a", "b", "c", "d"], n)
    noise = np.array([f"n{v}" for v in rng.integers(0, 1_500, n)], dtype=object)
    y = np.where(rng.random(n) < np.where(shop == "a", 0.9, 0.2), "yes", "no")
    data = {"shop": shop.astype(object), "noise": noise, "size": rng.normal(size=n)}
    m = TableModel(cat_cols=["shop", "noise"], num_cols=["size"], select_columns=True, seed=0)
    m.fit(data, y)
    chosen = m.info["column_selection"]
    assert "noise" in chosen["left_out"] and "shop" not in chosen["left_out"]
    assert chosen["held_out_log_loss_change_without"]["shop"] > 0
    assert "noise" not in m.input_columns_
    assert m.predict({"shop": np.array(["a"], dtype=object), "size": np.array([0.0])})[0] == "yes"


def test_regularised_training_is_reproducible():
    train, test = _small_synthetic(n=5_000)
    options = dict(column_dropout=0.2, table_l2=1e-3, epochs=3, seed=5)
    make = lambda: TableModel(cat_cols=list(train.columns), **options).fit(train.columns, train.y)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TablesWarning)
        a, b = make(), make()
    assert np.array_equal(a.predict_proba(test.columns), b.predict_proba(test.columns))


@pytest.mark.slow
def test_a_server_that_serves_signed_bundles_only_refuses_a_table_model(table_model, tmp_path):
    from embedlab.serve.registry import Registry
    from embedlab.store.signing import create_key

    key = create_key(tmp_path / "key.json")
    with pytest.raises(ValidationError, match="carries no signature"):
        Registry([table_model], key=key)
