"""Versioned writes under a real race (issue 24): `embedlab add-classes --in-place` run again
and again from the command line while clients add classes through a `serve --watch` server,
for 9 s on loopback. Every change one side confirmed (exit 0, HTTP 200) must be on disk and
served at the end; the loser of each race gets a conflict (exit 2, HTTP 409), never a
silent overwrite."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")
import httpx

from embedlab.models.pipeline import Pipeline
from embedlab.serve.process import running_server

RACE_S = 9.0


def _examples(label: str) -> list[dict[str, str]]:
    return [
        {"text": f"please handle request kind {label} now", "label": label},
        {"text": f"I need the {label} thing done", "label": label},
    ]


def test_cli_in_place_writes_race_service_posts_and_nothing_confirmed_is_lost(
    quick_model, tmp_path
):
    model = tmp_path / "model"
    shutil.copytree(quick_model, model)
    confirmed: dict[str, list[str]] = {"cli": [], "http": []}
    refused = {"cli": 0, "http": 0}
    failures: list[str] = []
    with running_server([str(model)], "--watch", "--watch-interval", "0.2") as (base, _p):
        deadline = time.monotonic() + RACE_S

        def cli() -> None:
            i = 0
            while time.monotonic() < deadline and not failures:
                label = f"cli_{i}"
                data = tmp_path / f"{label}.csv"
                rows = "".join(f"{e['text']},{label}\n" for e in _examples(label))
                data.write_text("text,label\n" + rows)
                proc = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "embedlab.cli",
                        "add-classes",
                        str(model),
                        str(data),
                        "--in-place",
                        "--no-cache",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                if proc.returncode == 0:
                    confirmed["cli"].append(label)
                elif proc.returncode == 2 and "changed while" in proc.stderr:
                    refused["cli"] += 1
                else:
                    failures.append(f"CLI rc {proc.returncode}: {proc.stderr[-400:]}")
                i += 1

        pauses = [0.2, 3.0, 0.5, 4.0, 1.0]  # seconds between two posts, in turn

        def http() -> None:
            j = 0
            with httpx.Client(base_url=base, timeout=60) as h:
                while time.monotonic() < deadline and not failures:
                    label = f"http_{j}"
                    r = h.post("/v1/models/model/classes", json={"examples": _examples(label)})
                    if r.status_code == 200:
                        confirmed["http"].append(label)
                    elif r.status_code == 409 and "version_conflict" in r.text:
                        refused["http"] += 1
                        time.sleep(0.3)  # let the watcher load the CLI's version
                    else:
                        failures.append(f"HTTP {r.status_code}: {r.text[:400]}")
                    j += 1
                    time.sleep(pauses[j % len(pauses)])  # windows of several lengths

        threads = [threading.Thread(target=cli), threading.Thread(target=http)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=RACE_S + 180)
        assert not failures, failures
        # the race over, each side writes once more alone: both must get through (the CLI
        # on the latest version, the service once its watcher has loaded the CLI's)
        data = tmp_path / "cli_last.csv"
        rows = "".join(f"{e['text']},cli_last\n" for e in _examples("cli_last"))
        data.write_text("text,label\n" + rows)
        cmd = [sys.executable, "-m", "embedlab.cli", "add-classes", str(model), str(data)]
        proc = subprocess.run([*cmd, "--in-place", "--no-cache"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-400:]
        confirmed["cli"].append("cli_last")
        with httpx.Client(base_url=base, timeout=60) as h:
            for _ in range(100):  # at most 20 s for the watcher
                r = h.post("/v1/models/model/classes", json={"examples": _examples("http_last")})
                if r.status_code == 200:
                    confirmed["http"].append("http_last")
                    break
                assert r.status_code == 409, r.text
                time.sleep(0.2)
        on_disk = set(map(str, Pipeline.load(model, cache=False).classes_))
        served: set[str] = set()
        wait_until = time.monotonic() + 20  # the watcher loads the last CLI version
        while time.monotonic() < wait_until:
            served = set(httpx.get(base + "/v1/models", timeout=10).json()["data"][0]["classes"])
            if served == on_disk:
                break
            time.sleep(0.2)
    assert "cli_last" in confirmed["cli"] and "http_last" in confirmed["http"], refused
    lost = {*confirmed["cli"], *confirmed["http"]} - on_disk
    assert not lost, f"confirmed but lost: {sorted(lost)} (refused: {refused})"
    assert served == on_disk
