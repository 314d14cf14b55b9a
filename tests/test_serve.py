"""`embedlab serve`: the endpoints against the library's own answers, limits, errors, the API
key matrix, micro-batching and back-pressure (in-process through httpx), and one real
uvicorn server on 127.0.0.1 started by the CLI, bounded in time."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import time

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")
import httpx
from fastapi.testclient import TestClient

from embedlab.models.pipeline import Pipeline
from embedlab.serve import ServeConfig, create_app
from embedlab.serve.keys import KeyStore, RateLimiter

TEXTS = ["wake me up at seven", "what is the capital of peru", "book a flight to rome"]


@pytest.fixture(scope="module")
def twin_models(quick_model, tmp_path_factory):
    """The quick model under two names (same encoder: one encoding serves both)."""
    root = tmp_path_factory.mktemp("served")
    a, b = root / "alarms", root / "twin"
    shutil.copytree(quick_model, a)
    shutil.copytree(quick_model, b)
    return a, b


@pytest.fixture(scope="module")
def client(twin_models):
    app = create_app(ServeConfig(paths=[str(p) for p in twin_models]))
    with TestClient(app) as c:
        yield c


def test_classify_gives_the_same_labels_as_predict(client, twin_models):
    r = client.post("/v1/classify", json={"model": "alarms", "input": TEXTS, "top_k": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    pipe = Pipeline.load(twin_models[0])
    d = pipe.predict_details(TEXTS)
    assert [row["label"] for row in body["data"]] == d.labels.tolist()
    assert [row["out_of_scope"] for row in body["data"]] == d.out_of_scope.tolist()
    np.testing.assert_allclose([row["novelty"] for row in body["data"]], d.novelty, rtol=1e-5)
    np.testing.assert_allclose([row["confidence"] for row in body["data"]], d.confidence, rtol=1e-5)
    assert all(len(row["top"]) == 2 for row in body["data"])
    assert body["data"][0]["confidence"] == body["data"][0]["top"][0]["confidence"]
    # one vocabulary: the JSON row's fields are the CSV columns' names
    assert {"label", "confidence", "novelty", "out_of_scope"} <= set(d.columns())
    assert set(body["data"][0]) == {
        "label",
        "confidence",
        "novelty",
        "out_of_scope",
        "top",
        "p_value",
    }
    np.testing.assert_allclose([row["p_value"] for row in body["data"]], d.p_value)


def test_several_models_share_one_encoding(client):
    def calls() -> float:
        text = client.get("/metrics").text
        return float(
            next(
                ln.split()[1]
                for ln in text.splitlines()
                if ln.startswith("embedlab_batch_rows_count")
            )
        )

    before = calls()
    r = client.post("/v1/classify", json={"models": ["alarms", "twin"], "input": TEXTS})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["model"] for x in results] == ["alarms", "twin"]
    assert results[0]["data"] == results[1]["data"]
    assert calls() == before + 1  # one encoder call for both models


def test_detect_and_models_and_health(client):
    r = client.post("/v1/detect", json={"model": "alarms", "input": TEXTS})
    rows = r.json()["data"]
    assert all(set(x) == {"out_of_scope", "novelty", "p_value", "threshold"} for x in rows)
    assert all((x["novelty"] > x["threshold"]) == x["out_of_scope"] for x in rows)
    models = client.get("/v1/models").json()
    assert models["object"] == "list"
    entry = {m["id"]: m for m in models["data"]}["alarms"]
    assert "set_alarm" in entry["classes"] and entry["version"] == 1 and entry["dim"] == 384
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["models"] == ["alarms", "twin"]
    metrics = client.get("/metrics").text
    assert 'embedlab_model_oos_rate{model="alarms"}' in metrics
    assert 'embedlab_model_novelty_quantile{model="alarms",quantile="0.5"}' in metrics
    assert "embedlab_request_seconds_bucket" in metrics
    assert 'embedlab_drift_log10_martingale{model="alarms"}' in metrics
    assert 'embedlab_drift_alarm{model="alarms"} 0.0' in metrics
    drift = entry["drift"]
    assert drift["rows"] >= len(TEXTS) and drift["alarm"] is False and drift["alarm_at"] == 100


def test_fdr_sets_and_drift_over_http(client, twin_models):
    pipe = Pipeline.load(twin_models[0])
    batch = [*TEXTS, "what is the boiling point of lead", "sing me a sea shanty"]
    r = client.post("/v1/detect", json={"model": "twin", "input": batch, "fdr": 0.2})
    assert r.status_code == 200, r.text
    expected = pipe.predict_details(batch, fdr=0.2)
    assert [x["out_of_scope"] for x in r.json()["data"]] == expected.out_of_scope.tolist()
    r = client.post("/v1/classify", json={"model": "twin", "input": batch, "sets": 0.9})
    sets = pipe.predict_details(batch, sets=0.9).prediction_sets
    assert [row["set"] for row in r.json()["data"]] == [list(x) for x in sets]
    bad = client.post("/v1/classify", json={"model": "twin", "input": batch, "fdr": 1.5})
    assert bad.status_code == 422 and "fdr" in bad.text
    before = {m["id"]: m for m in client.get("/v1/models").json()["data"]}["twin"]["drift"]
    client.post("/v1/classify", json={"model": "twin", "input": batch})
    after = {m["id"]: m for m in client.get("/v1/models").json()["data"]}["twin"]["drift"]
    assert after["rows"] == before["rows"] + len(batch)


def test_embeddings_openai_shape_dimensions_and_base64(client):
    r = client.post("/v1/embeddings", json={"model": "alarms", "input": "hello there"})
    body = r.json()
    assert body["object"] == "list" and body["data"][0]["object"] == "embedding"
    full = np.asarray(body["data"][0]["embedding"], dtype=np.float32)
    assert full.shape == (384,) and abs(np.linalg.norm(full) - 1) < 1e-5
    assert set(body["usage"]) == {"prompt_tokens", "total_tokens"}
    r = client.post(
        "/v1/embeddings",
        json={
            "model": "alarms",
            "input": ["hello there"],
            "dimensions": 64,
            "encoding_format": "base64",
        },
    )
    v = np.frombuffer(base64.b64decode(r.json()["data"][0]["embedding"]), dtype=np.float32)
    expected = full[:64] / np.linalg.norm(full[:64])
    np.testing.assert_allclose(v, expected, atol=1e-5)
    r = client.post("/v1/embeddings", json={"model": "alarms", "input": "x", "dimensions": 999})
    assert r.status_code == 422 and "dimensions" in r.json()["error"]["message"]
    assert "384" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        ({"model": "nope", "input": ["x"]}, 404, "no served model 'nope'"),
        ({"model": "alarms", "input": []}, 422, "input holds no text"),
        ({"model": "alarms", "input": ["ok", " "]}, 422, "input[1] is empty"),
        ({"model": "alarms"}, 422, "input: Field required"),
        ({"input": ["x"]}, 422, "name a model"),
        ({"model": "alarms", "input": ["x"], "top_k": 0}, 422, "top_k"),
    ],
)
def test_bad_requests_get_clear_errors(client, payload, status, message):
    r = client.post("/v1/classify", json=payload)
    assert r.status_code == status
    assert message in r.json()["error"]["message"]


def test_limits_name_themselves(twin_models):
    cfg = ServeConfig(paths=[str(twin_models[0])], max_texts=2, max_chars=20, max_body_bytes=300)
    with TestClient(create_app(cfg)) as c:
        r = c.post("/v1/classify", json={"model": "alarms", "input": ["a", "b", "c"]})
        assert (
            r.status_code == 422 and "the limit is 2 (--max-texts)" in r.json()["error"]["message"]
        )
        r = c.post("/v1/classify", json={"model": "alarms", "input": ["x" * 21]})
        assert (
            r.status_code == 422 and "the limit is 20 (--max-chars)" in r.json()["error"]["message"]
        )
        r = c.post(
            "/v1/classify",
            content=b'{"model": "alarms", "input": ["' + b"y" * 400 + b'"]}',
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 413 and "300 bytes" in r.json()["error"]["message"]
        r = c.post(
            "/v1/classify", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert r.status_code == 422
        r = c.post(
            "/v1/classify", content=b"\xff\xfe:t", headers={"content-type": "application/json"}
        )
        assert r.status_code == 422 and r.json()["error"]["type"] == "invalid_request"
        r = c.get("/v1/nothing-here")
        assert r.status_code == 404 and r.json()["error"]["type"] == "http_error"
        r = c.put("/v1/classify", json={})
        assert r.status_code == 405 and "POST" in r.headers["allow"]


def test_internal_errors_do_not_leak(twin_models, monkeypatch):
    app = create_app(ServeConfig(paths=[str(twin_models[0])]))
    pipe = app.state.registry.get("alarms").pipeline

    def boom(*_a, **_k):
        raise RuntimeError(f"secret detail in {os.getcwd()}")

    monkeypatch.setattr(pipe, "details_from_vectors", boom)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/v1/classify", json={"model": "alarms", "input": ["x"]})
    assert r.status_code == 500
    assert r.json() == {
        "error": {"message": "internal error (see the server log)", "type": "internal_error"}
    }


def test_api_key_matrix(twin_models, tmp_path):
    store = KeyStore(tmp_path / "keys.json")
    _, all_models = store.create("everything")
    _, twin_only = store.create("twin only", models=["twin"])
    slow_key, slow = store.create("slow", rate_per_minute=1)
    assert all_models not in (tmp_path / "keys.json").read_text()  # only hashes on disk
    app = create_app(
        ServeConfig(paths=[str(p) for p in twin_models], keys_file=str(tmp_path / "keys.json"))
    )
    body = {"model": "alarms", "input": ["hello"]}
    with TestClient(app) as c:
        r = c.post("/v1/classify", json=body)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        r = c.post("/v1/classify", json=body, headers={"Authorization": "Bearer elk_wrong"})
        assert r.status_code == 401
        ok = {"Authorization": f"Bearer {all_models}"}
        assert c.post("/v1/classify", json=body, headers=ok).status_code == 200
        assert (
            c.post("/v1/classify", json=body, headers={"x-api-key": all_models}).status_code == 200
        )
        r = c.post("/v1/classify", json=body, headers={"Authorization": f"Bearer {twin_only}"})
        # a model the key may not use looks exactly like one not served: no 403 that would
        # tell the key's holder that "alarms" exists
        r_unknown = c.post(
            "/v1/classify",
            json={"model": "zzz", "input": ["hello"]},
            headers={"Authorization": f"Bearer {twin_only}"},
        )
        assert r.status_code == r_unknown.status_code == 404
        assert r.json()["error"]["type"] == r_unknown.json()["error"]["type"]
        assert "served: ['twin']" in r.json()["error"]["message"]
        # /metrics names every model: it needs a key too
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers=ok).status_code == 200
        twin = {"model": "twin", "input": ["hello"]}
        assert (
            c.post(
                "/v1/classify", json=twin, headers={"Authorization": f"Bearer {twin_only}"}
            ).status_code
            == 200
        )
        # unknown names: 401 first (nothing told to a caller without a key), then a 404
        # that lists only what the key may use; listings show only those too
        nope = {"model": "nope", "input": ["hello"]}
        assert c.post("/v1/classify", json=nope).status_code == 401
        r = c.post("/v1/classify", json=nope, headers={"Authorization": f"Bearer {twin_only}"})
        assert r.status_code == 404 and "['twin']" in r.json()["error"]["message"]
        listed = c.get("/v1/models", headers={"Authorization": f"Bearer {twin_only}"}).json()
        assert [m["id"] for m in listed["data"]] == ["twin"]
        schema = json.dumps(c.get("/openapi.json").json())
        assert "alarms" not in schema and "twin" not in schema  # the schema is public
        h = {"Authorization": f"Bearer {slow}"}
        assert c.post("/v1/classify", json=body, headers=h).status_code == 200
        r = c.post("/v1/classify", json=body, headers=h)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        KeyStore(tmp_path / "keys.json").revoke(slow_key.id)  # another process revokes
        time.sleep(0.01)
        assert c.post("/v1/classify", json=body, headers=h).status_code == 401


def test_rate_limiter_refills():
    now = [0.0]
    rl = RateLimiter(clock=lambda: now[0])
    assert rl.allow("k", 2) == 0 and rl.allow("k", 2) == 0
    assert rl.allow("k", 2) == pytest.approx(30.0)
    now[0] = 30.0
    assert rl.allow("k", 2) == 0


def test_concurrent_requests_are_merged_and_overload_gets_429(twin_models):
    async def run(cfg: ServeConfig, n: int) -> tuple[list[int], str]:
        app = create_app(cfg)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            rs = await asyncio.gather(
                *[
                    c.post("/v1/classify", json={"model": "alarms", "input": [f"wake me at {i}"]})
                    for i in range(n)
                ]
            )
            metrics = (await c.get("/metrics")).text
        return [r.status_code for r in rs], metrics

    cfg = ServeConfig(paths=[str(twin_models[0])], max_wait_ms=200, max_batch_rows=64)
    codes, metrics = asyncio.run(run(cfg, 8))
    assert codes == [200] * 8
    count = float(
        next(
            ln.split()[1]
            for ln in metrics.splitlines()
            if ln.startswith("embedlab_batch_rows_count")
        )
    )
    total = float(
        next(
            ln.split()[1] for ln in metrics.splitlines() if ln.startswith("embedlab_batch_rows_sum")
        )
    )
    assert total == 8 and count < 8  # merged into fewer encoder calls
    cfg = ServeConfig(paths=[str(twin_models[0])], max_wait_ms=200, max_queue_rows=2)
    codes, _ = asyncio.run(run(cfg, 6))
    assert 429 in codes and 200 in codes


def test_embedlab_serve_runs_a_real_server_on_loopback(twin_models):
    from embedlab.serve.process import running_server

    with running_server([str(twin_models[0])]) as (base, _proc):
        r = httpx.post(
            base + "/v1/classify",
            json={"model": "alarms", "input": ["wake me up at seven"]},
            timeout=30,
        )
        assert r.status_code == 200 and r.json()["data"][0]["label"] == "set_alarm"
        schema = httpx.get(base + "/openapi.json", timeout=10).json()
        assert {"/v1/classify", "/v1/embeddings", "/v1/models"} <= set(schema["paths"])
        documented = schema["paths"]["/v1/classify"]["post"]["responses"]
        assert {"200", "401", "403", "404", "413", "422", "429"} <= set(documented)
        error = documented["404"]["content"]["application/json"]["schema"]["$ref"]
        assert error.endswith("/ErrorBody")


def test_keys_cli(tmp_path):
    from typer.testing import CliRunner

    from embedlab.cli import app

    runner = CliRunner()
    path = tmp_path / "keys.json"
    res = runner.invoke(
        app, ["keys", "create", "my-app", "--keys", str(path), "--model", "a", "--rate", "60"]
    )
    assert res.exit_code == 0, res.output
    token = res.stdout.strip().splitlines()[-1]
    assert token.startswith("elk_") and token not in path.read_text()
    key_id = json.loads(path.read_text())["keys"][0]["id"]
    res = runner.invoke(app, ["keys", "list", "--keys", str(path)])
    assert key_id in res.output and "live" in res.output and "60/min" in res.output
    assert token not in res.output
    res = runner.invoke(app, ["keys", "revoke", key_id, "--keys", str(path)])
    assert res.exit_code == 0 and KeyStore(path).check(token) is None
    res = runner.invoke(app, ["keys", "revoke", "nope", "--keys", str(path)])
    assert res.exit_code != 0 and "no live key" in res.output
    res = runner.invoke(app, ["keys", "create", "ops", "--keys", str(path), "--write"])
    assert res.exit_code == 0 and "read and write" in res.output
    writer = res.stdout.strip().splitlines()[-1]
    assert KeyStore(path).check(writer).write and not KeyStore(path).keys[0].write
    res = runner.invoke(app, ["keys", "list", "--keys", str(path)])
    assert "read+write" in res.output


def test_official_openai_client_against_embeddings(twin_models):
    openai = pytest.importorskip("openai", reason="the openai client is not installed")
    app = create_app(ServeConfig(paths=[str(twin_models[0])]))
    with TestClient(app) as c:
        client = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=c)
        out = client.embeddings.create(model="alarms", input=["hello", "bye"], dimensions=128)
        assert len(out.data) == 2 and len(out.data[0].embedding) == 128
        # the client asks for base64 by default and decodes it: same vector as float
        plain = c.post(
            "/v1/embeddings", json={"model": "alarms", "input": ["hello"], "dimensions": 128}
        ).json()
        np.testing.assert_allclose(out.data[0].embedding, plain["data"][0]["embedding"], atol=1e-6)
