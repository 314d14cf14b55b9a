"""`embedlab serve` beyond classify: search over served indexes (with a label filter), classes
added at run time (a new version, saved, swapped in), hot reload of new versions written to
disk (a broken one refused, in-flight traffic unharmed), the token budget of micro-batching,
and the playground page in a real browser (Debian's chromium through playwright)."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")
import httpx
from fastapi.testclient import TestClient

from embedlab.compress.index import Index
from embedlab.models.pipeline import Pipeline
from embedlab.serve import ServeConfig, create_app
from embedlab.serve.batching import MicroBatcher
from embedlab.serve.keys import KeyStore

JOKES = ["tell me a joke", "make me laugh", "say something funny", "know any good jokes"]


@pytest.fixture
def served(quick_model, demo_index, tmp_path):
    """Copies of the quick model and the demo index (they get changed)."""
    model, index = tmp_path / "alarms", tmp_path / "examples"
    shutil.copytree(quick_model, model)
    shutil.copytree(demo_index, index)
    return model, index


def _metric(text: str, prefix: str) -> float:
    return sum(float(ln.split()[-1]) for ln in text.splitlines() if ln.startswith(prefix))


def test_search_matches_the_index_and_filters_by_label(served):
    model, index_dir = served
    app = create_app(ServeConfig(paths=[str(model), str(index_dir)]))
    queries = ["wake me up at seven", "will it rain tomorrow"]
    index = Index.load(index_dir)
    Q = Pipeline.load(model).encoder_.encode(queries)  # the same (default) encoder
    with TestClient(app) as c:
        listed = c.get("/v1/indexes").json()["data"]
        assert listed[0]["id"] == "examples" and listed[0]["size"] == len(index)
        assert "weather_forecast" in listed[0]["labels"]
        r = c.post("/v1/search", json={"index": "examples", "input": queries, "k": 4})
        assert r.status_code == 200, r.text
        ids, scores = index.search(Q, 4)
        for row, want_ids, want_scores in zip(r.json()["data"], ids, scores, strict=True):
            assert [h["id"] for h in row["hits"]] == list(want_ids)
            np.testing.assert_allclose([h["score"] for h in row["hits"]], want_scores, atol=1e-5)
            assert all({"label", "text", "rank"} <= set(h) for h in row["hits"])
        r = c.post(
            "/v1/search",
            json={"index": "examples", "input": queries, "k": 3, "labels": ["book_flight"]},
        )
        hits = [row["hits"] for row in r.json()["data"]]
        assert all(len(h) == 3 and {x["label"] for x in h} == {"book_flight"} for h in hits)
        # the filtered ranking is the exact ranking among that label's rows
        rows = index.rows.to_pydict()
        labels = dict(zip(rows["id"], rows["label"], strict=True))
        mask = np.asarray([labels[i] == "book_flight" for i in index.ids])
        sims = (Q / np.linalg.norm(Q, axis=1, keepdims=True)) @ index_vectors(index_dir).T
        best = np.argsort(-np.where(mask, sims, -np.inf), axis=1)[:, :3]
        assert [[x["id"] for x in h] for h in hits] == index.ids[best].tolist()
        r = c.post("/v1/search", json={"index": "nope", "input": ["x"]})
        assert r.status_code == 404 and "examples" in r.json()["error"]["message"]
        r = c.post("/v1/search", json={"index": "examples", "input": ["x"], "k": 0})
        assert r.status_code == 422


def index_vectors(index_dir) -> np.ndarray:
    """The stored unit vectors of a flat index, in id order (through FAISS's own API)."""
    index = Index.load(index_dir)
    return index._faiss.reconstruct_n(0, len(index))


def test_classes_added_at_run_time_are_saved_and_served(served):
    model, _ = served
    app = create_app(ServeConfig(paths=[str(model)]))
    examples = [{"text": t, "label": "tell_joke"} for t in JOKES]
    with TestClient(app) as c:
        before = c.get("/v1/models").json()["data"][0]
        assert before["version"] == 1 and before["can_add_classes"]
        r = c.post("/v1/models/alarms/classes", json={"examples": examples})
        assert r.status_code == 200, r.text
        assert r.json()["version"] == 2 and r.json()["added"] == ["tell_joke"]
        r = c.post("/v1/classify", json={"model": "alarms", "input": ["tell me a funny joke"]})
        assert r.json()["version"] == 2 and r.json()["data"][0]["label"] == "tell_joke"
        # persisted: the directory now holds version 2, which predicts the same
        on_disk = Pipeline.load(model)
        assert on_disk.info["lineage"]["version"] == 2
        assert on_disk.predict(["tell me a funny joke"]).tolist() == ["tell_joke"]
        # a known class is a conflict with the model's state; nothing changes
        r = c.post("/v1/models/alarms/classes", json={"examples": examples})
        assert r.status_code == 409 and "tell_joke" in r.json()["error"]["message"]
        assert c.get("/v1/models").json()["data"][0]["version"] == 2
        assert c.post("/v1/models/nope/classes", json={"examples": examples}).status_code == 404
        assert c.post("/v1/models/alarms/classes", json={"examples": []}).status_code == 422
        # the watcher does not reload what the service itself wrote
        assert c.portal.call(app.state.reload_changed) == []
    ro = create_app(ServeConfig(paths=[str(model)], read_only=True))
    with TestClient(ro) as c:
        r = c.post("/v1/models/alarms/classes", json={"examples": examples})
        assert r.status_code == 409 and "--read-only" in r.json()["error"]["message"]


def test_changing_a_model_needs_a_write_key(served, tmp_path):
    model, _ = served
    store = KeyStore(tmp_path / "keys.json")
    _, reader = store.create("reader")
    _, writer = store.create("writer", write=True)
    app = create_app(ServeConfig(paths=[str(model)], keys_file=str(tmp_path / "keys.json")))
    body = {"examples": [{"text": t, "label": "tell_joke"} for t in JOKES]}
    with TestClient(app) as c:
        url = "/v1/models/alarms/classes"
        assert c.post(url, json=body).status_code == 401
        r = c.post(url, json=body, headers={"Authorization": f"Bearer {reader}"})
        assert r.status_code == 403 and "--write" in r.json()["error"]["message"]
        r = c.post(url, json=body, headers={"Authorization": f"Bearer {writer}"})
        assert r.status_code == 200 and r.json()["version"] == 2


def test_a_new_version_on_disk_is_swapped_in_and_a_broken_one_refused(served):
    model, _ = served
    app = create_app(ServeConfig(paths=[str(model)]))
    body = {"model": "alarms", "input": ["tell me a funny joke"]}
    with TestClient(app) as c:
        assert c.portal.call(app.state.reload_changed) == []
        first = c.post("/v1/classify", json=body).json()
        assert first["version"] == 1 and first["data"][0]["label"] != "tell_joke"
        v2 = Pipeline.load(model).add_classes(JOKES, ["tell_joke"] * len(JOKES))
        v2.save(model, overwrite=True)  # what `embedlab add-classes DIR ... --in-place` does
        assert c.portal.call(app.state.reload_changed) == [("alarms", "ok")]
        after = c.post("/v1/classify", json=body).json()
        assert after["version"] == 2 and after["data"][0]["label"] == "tell_joke"
        (model / "bundle.json").write_text('{"format": "embedlab.bundle", "broken', "utf-8")
        assert c.portal.call(app.state.reload_changed) == [("alarms", "refused")]
        assert c.portal.call(app.state.reload_changed) == []  # the same bad version: once
        still = c.post("/v1/classify", json=body)
        assert still.status_code == 200 and still.json()["version"] == 2
        metrics = c.get("/metrics").text
        assert _metric(metrics, 'embedlab_reloads_total{name="alarms",outcome="refused"}') == 1
        assert _metric(metrics, 'embedlab_reloads_total{name="alarms",outcome="ok"}') == 1


def test_hot_reload_under_traffic_on_a_real_server(served):
    """`serve --watch` on 127.0.0.1 with 3 clients sending requests the whole time: a new
    version written to disk is swapped in with no failed request and no client seeing an
    older version after a newer one; then a broken version is refused while serving goes on.
    Bounded: at most 60 s of traffic."""
    from embedlab.serve.process import running_server

    model, _ = served
    with running_server([str(model)], "--watch", "--watch-interval", "0.2") as (base, _p):
        stop = threading.Event()
        seen: list[list[tuple[int, int]]] = [[] for _ in range(3)]

        def client(i: int) -> None:
            with httpx.Client(base_url=base, timeout=30) as h:
                deadline = time.monotonic() + 60
                while not stop.is_set() and time.monotonic() < deadline:
                    r = h.post("/v1/classify", json={"model": "alarms", "input": JOKES[:2]})
                    version = r.json().get("version", -1) if r.status_code == 200 else -1
                    seen[i].append((r.status_code, version))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        v2 = Pipeline.load(model).add_classes(JOKES, ["tell_joke"] * len(JOKES))
        v2.save(model, overwrite=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(any(v == 2 for _, v in s[-3:]) for s in seen):
            time.sleep(0.1)
        (model / "bundle.json").write_text("{ not json", "utf-8")
        time.sleep(1.0)  # several looks of the watcher at the broken version
        stop.set()
        for t in threads:
            t.join(timeout=60)
        r = httpx.get(base + "/v1/models", timeout=10).json()["data"][0]
        metrics = httpx.get(base + "/metrics", timeout=10).text
    codes = [code for s in seen for code, _ in s]
    assert codes and set(codes) == {200}, f"failed requests during the swap: {set(codes)}"
    for s in seen:  # per client: versions never go back
        versions = [v for _, v in s]
        assert versions == sorted(versions) and versions[0] == 1 and versions[-1] == 2
    assert r["version"] == 2 and "tell_joke" in r["classes"]
    assert _metric(metrics, 'embedlab_reloads_total{name="alarms",outcome="refused"}') == 1


def test_batches_keep_to_the_token_budget():
    calls: list[list[str]] = []

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        time.sleep(0.01)
        return np.zeros((len(texts), 4), dtype=np.float32)

    async def run() -> list[np.ndarray]:
        b = MicroBatcher(encode, max_rows=64, max_wait_ms=50, max_tokens=100, cost=len)
        texts = [["x" * 30], ["y" * 30], ["z" * 10, "z" * 10], ["w" * 30], ["v" * 5]]
        return await asyncio.gather(*[b.encode(t) for t in texts])

    out = asyncio.run(run())
    assert [len(o) for o in out] == [1, 1, 2, 1, 1]
    for batch in calls:  # rows x the longest row's tokens within the budget
        assert len(batch) * max(map(len, batch)) <= 100 or len(batch) == 1
    assert sum(map(len, calls)) == 6 and len(calls) >= 2


def test_playground_page_is_self_contained(served):
    model, index = served
    app = create_app(ServeConfig(paths=[str(model), str(index)]))
    with TestClient(app) as c:
        r = c.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    page = r.text
    assert "<script src" not in page and "<link" not in page  # nothing from elsewhere
    assert "http://" not in page and "https://" not in page
    assert ".innerHTML" not in page  # texts are shown with textContent only


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (`make browser` installs it where apt works)",
)
def test_playground_in_headless_chromium(served):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    from embedlab.serve.process import running_server

    model, index = served
    text = "wake me up at seven tomorrow"
    with running_server([str(model), str(index)]) as (base, _proc):
        want = httpx.post(
            base + "/v1/classify", json={"model": "alarms", "input": [text], "top_k": 5}, timeout=30
        ).json()
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = browser.new_page()
                page.set_default_timeout(30_000)
                external: list[str] = []
                page.on(
                    "request",
                    lambda req: None if req.url.startswith(base) else external.append(req.url),
                )
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.goto(base + "/")
                # selectors, not wait_for_function: the page's CSP forbids eval, which that uses
                page.wait_for_selector("#model option", state="attached")
                page.fill("#text", text)
                page.click("#go")
                page.wait_for_selector("#neighbours-box:not([hidden])")
                label = page.text_content("#label")
                top = page.eval_on_selector_all(
                    "#top tbody tr", "rows => rows.map(r => r.cells[0].textContent)"
                )
                neighbours = page.eval_on_selector_all(
                    "#neighbours tbody tr", "rows => rows.map(r => r.cells[1].textContent)"
                )
                novelty = page.text_content("#novelty")
                threshold = page.text_content("#threshold")
                # an error from the API is shown, not thrown
                page.fill("#text", "x" * 20_000)
                page.click("#go")
                page.wait_for_selector("#error:not(:empty)")
                shown_error = page.text_content("#error")
            finally:
                browser.close()
    row = want["data"][0]
    assert label == row["label"] == "set_alarm"
    assert top == [t["label"] for t in row["top"]]
    assert float(novelty) == pytest.approx(row["novelty"], abs=1e-3)
    assert float(threshold) == pytest.approx(want["threshold"], abs=1e-3)
    assert len(neighbours) == 5 and neighbours.count("set_alarm") >= 3
    assert "--max-chars" in shown_error
    assert not external and not errors, (external, errors)


def test_an_encoder_no_entry_uses_is_let_go(served):
    from embedlab.serve.registry import Registry

    model, index = served
    reg = Registry([model, index])
    assert len(reg.encoders) == 1  # the model and the index share the packaged encoder
    new = reg.load_entry(model)
    new.encoder_key = "a new version's own encoder"
    reg.swap(new)
    assert set(reg.encoders) == {reg.indexes["examples"].encoder_key, new.encoder_key}
    newer = reg.load_entry(model)
    reg.swap(newer)
    assert len(reg.encoders) == 1


@pytest.mark.slow
def test_run_time_classes_in_a_hierarchy_need_a_parent(tmp_path):
    from typer.testing import CliRunner

    from embedlab.cli import app as cli
    from embedlab.data.datasets import demo_path

    model = tmp_path / "areas"
    fit = ["fit", str(demo_path("train")), "--hierarchy", str(demo_path("hierarchy"))]
    fit += ["-o", str(model), "--no-adapt", "--no-cache", "--head", "prototype"]
    assert CliRunner().invoke(cli, fit).exit_code == 0
    app = create_app(ServeConfig(paths=[str(model)]))
    examples = [{"text": t, "label": "tell_joke"} for t in JOKES]
    with TestClient(app) as c:
        r = c.post("/v1/models/areas/classes", json={"examples": examples})
        assert r.status_code == 409 and "parent" in r.json()["error"]["message"]
        body = {"examples": examples, "parents": {"tell_joke": "small_talk"}}
        r = c.post("/v1/models/areas/classes", json=body)
        assert r.status_code == 200, r.text
        r = c.post("/v1/classify", json={"model": "areas", "input": ["tell me a funny joke"]})
        row = r.json()["data"][0]
        assert row["label"] == "tell_joke" and row["levels"] == {"level1": "small_talk"}


def test_a_label_filter_on_an_index_without_labels_is_refused(served, tmp_path):
    model, index_dir = served
    plain = tmp_path / "plain"
    index = Index.load(index_dir)
    Index("flat", index.dim, encoder=index.encoder).add(index_vectors(index_dir)).save(plain)
    app = create_app(ServeConfig(paths=[str(model), str(plain)]))
    with TestClient(app) as c:
        body = {"index": "plain", "input": ["wake me up"], "labels": ["set_alarm"]}
        r = c.post("/v1/search", json=body)
        assert r.status_code == 422 and "keeps no labels" in r.json()["error"]["message"]
        r = c.post("/v1/search", json={"index": "plain", "input": ["wake me up"], "k": 2})
        assert r.status_code == 200 and len(r.json()["data"][0]["hits"]) == 2


@pytest.mark.slow
def test_a_multi_label_model_is_served_and_takes_run_time_labels(tmp_path, st_encoder_uncached):
    from embedlab.models.multilabel import MultiLabelClassifier

    texts = ["my refund has not come", "the parcel is late", "late and no refund either"]
    texts += ["where is my money back", "still waiting for the box", "hello there"]
    labels = ["refund", "late", "late,refund", "refund", "late", "oos"]
    pipe = Pipeline(st_encoder_uncached, MultiLabelClassifier(cv=2, head="linear"), adapt=False)
    pipe.fit(texts * 3, labels * 3).save(tmp_path / "tickets")
    app = create_app(ServeConfig(paths=[str(tmp_path / "tickets")]))
    with TestClient(app) as c:
        r = c.post("/v1/classify", json={"model": "tickets", "input": ["late and no refund"]})
        assert r.status_code == 200, r.text
        row = r.json()["data"][0]
        assert row["label"] == ",".join(row["labels"]) and row["labels"]
        examples = [{"text": t, "label": "invoice"} for t in ["send the invoice", "my invoice"]]
        examples += [{"text": "invoice for the late parcel", "label": "invoice,late"}]
        r = c.post("/v1/models/tickets/classes", json={"examples": examples})
        assert r.status_code == 200, r.text
        assert r.json()["added"] == ["invoice"] and r.json()["version"] == 2
    assert Pipeline.load(tmp_path / "tickets").classes_.tolist() == ["invoice", "late", "refund"]
