"""Distilled students against their teacher and the anchors, in one run (issue 28).

Usage: .venv/bin/python benchmarks/distill.py [--work DIR] [--skip-whole-process]
       [--timings-only]

Teacher: the packaged all-MiniLM-L6-v2 on its default backend (onnx-int8). Students
(``embedlab.distill``, seed 0, default options) with ``--texts`` = CLINC150 train texts:
``static`` (256-d int8 token table + map) and ``shallow`` (3 layers + linear map).
Anchors: model2vec's plain distillation of the same teacher (256 dims, no texts — also the
static student's starting point) and layer-3 truncation of the teacher.

Measured:
- STS-B dev Spearman (pair cosine vs gold) of every encoder;
- encoding throughput after start-up on 20,000 distinct texts (GoEmotions train — not
  the training texts; cache off; median of 3), and graph time (that time less the
  tokenizer's) for the transformer encoders;
- whole-process ``embedlab encode`` of 100,000 distinct texts (start-up counted) for the
  static student and the teacher (``--no-cache``), subprocesses;
- CLINC150 full (train + oos_train → test + oos_test): the default fit on each encoder's
  vectors (adaptation off for every encoder, then the teacher's default with adaptation),
  accuracy and OOS AUROC; and the teacher's frozen-encoder model predicting through each
  student (label agreement, AUROC);
- student size on disk, distillation time (15,000 CLINC150 texts, and 20,000 GoEmotions
  texts for the time target).
Results go to stdout (JSON lines) and WORK/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from elastic_stsb import load_stsb

from embedlab.data.datasets import load_clinc150, load_goemotions
from embedlab.distill import distill
from embedlab.encoders import SentenceTransformerEncoder
from embedlab.encoders.loading import open_encoder

ROOT = Path(__file__).resolve().parents[1]
STSB = ROOT.parent / "shared" / "data" / "stsb" / "sts-dev.csv"
RESULTS: dict[str, dict] = {}


def emit(key: str, **values) -> None:
    RESULTS.setdefault(key, {}).update(values)
    print(json.dumps({"key": key, **values}), flush=True)


def sts(encoder) -> float:
    s1, s2, gold = load_stsb(STSB)
    texts = sorted(set(s1) | set(s2))
    vecs = dict(zip(texts, encoder.encode(texts, progress=False), strict=True))
    a, b = np.stack([vecs[t] for t in s1]), np.stack([vecs[t] for t in s2])
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return round(float(spearmanr(cos, gold).statistic), 4)


def throughput(encoder, texts: list[str], repeats: int = 3) -> float:
    encoder.encode(texts[:64], progress=False)  # start-up and graph load excluded
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        encoder.encode(texts, progress=False)
        times.append(time.perf_counter() - t0)
    return round(len(texts) / statistics.median(times), 1)


def tokenize_seconds(encoder, texts: list[str], repeats: int = 3) -> float:
    """Median time the encoder's tokenizer takes on ``texts`` (0 for static students, whose
    tokenizing is their encoding): subtracted from the encode time to give graph time."""
    backend = getattr(encoder, "_onnx", None)
    if backend is None:
        return 0.0
    tok = backend.tokenizer
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        tok.encode_batch(texts)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def hundred_thousand(work: Path) -> Path:
    """100,000 distinct texts in a CSV: GoEmotions, STS-B, CLINC150, then pairs of them."""
    texts, _ = load_goemotions("train")
    pool = list(dict.fromkeys(texts + load_clinc150("train", "val", "test").texts))
    rng = np.random.default_rng(0)
    out = list(pool)
    seen = set(out)
    while len(out) < 100_000:
        i, j = rng.integers(0, len(pool), 2)
        t = f"{pool[i]} {pool[j]}"
        if t not in seen:
            seen.add(t)
            out.append(t)
    path = work / "texts100k.csv"
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text"])
        w.writerows([t] for t in out[:100_000])
    return path


def whole_process(data: Path, work: Path, encoder_dir: Path | None) -> float:
    out = work / ("enc-" + (encoder_dir.name if encoder_dir else "teacher"))
    cmd = [str(ROOT / ".venv" / "bin" / "embedlab"), "encode", str(data), "-o", str(out)]
    cmd += ["--force", "--no-cache", "--no-keep-text"]
    if encoder_dir is not None:
        cmd += ["--encoder", str(encoder_dir)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return round(time.perf_counter() - t0, 2)


def clinc_fit(encoder, adapt: bool):
    from embedlab.models.pipeline import Pipeline

    train = load_clinc150("train", "oos_train")
    t0 = time.perf_counter()
    pipe = Pipeline(encoder=encoder, adapt=adapt).fit(train.texts, train.labels)
    return pipe, round(time.perf_counter() - t0, 1)


def clinc_eval(pipe) -> dict:
    test = load_clinc150("test", "oos_test")
    m = pipe.evaluate(test.texts, test.labels)
    return {"accuracy": round(m["accuracy"], 4), "oos_auroc": round(m["oos_auroc"], 4)}


def through_student(pipe, student) -> dict:
    """The teacher's model predicting through ``student``: agreement with itself, AUROC."""
    from embedlab.models.stand_in import agreement, use_encoder

    test = load_clinc150("test", "oos_test")
    teacher = use_encoder(pipe, student)
    try:
        found = agreement(pipe, teacher, test.texts)
        m = pipe.evaluate(test.texts, test.labels)
    finally:
        pipe.encoder = pipe._runtime_encoder = teacher
    return {
        "label_agreement": found["label_agreement"],
        "fidelity": found["fidelity_mean_cosine"],
        "accuracy": round(m["accuracy"], 4),
        "oos_auroc": round(m["oos_auroc"], 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--skip-whole-process", action="store_true")
    ap.add_argument(
        "--timings-only",
        action="store_true",
        help="Reuse the students in --work (a full run made them) and measure only speed: "
        "throughput, whole-process encode, distillation time; results to timings.json.",
    )
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="distill-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("EMBEDLAB_CACHE", str(work / "cache"))
    clinc = load_clinc150("train").texts
    goemo, _ = load_goemotions("train")
    goemo = list(dict.fromkeys(goemo))
    teacher = SentenceTransformerEncoder(cache=False)
    if args.timings_only:
        timings(args, work, teacher, goemo)
        return
    emit("teacher", backend=teacher.resolved_backend, sts=sts(teacher))

    students = {}
    for kind, texts, name in (
        ("static", None, "model2vec-plain"),
        ("static", clinc, "static"),
        ("shallow", clinc, "shallow"),
    ):
        t0 = time.perf_counter()
        m = distill(work / name, kind=kind, texts=texts, overwrite=True, progress=False)
        students[name] = open_encoder(work / name, cache=False)
        emit(
            name,
            distill_seconds=round(time.perf_counter() - t0, 1),
            bytes=m["bytes"],
            fidelity=m.get("fidelity"),
            backend=m["backend"],
            sts=sts(students[name]),
        )
    layer3 = SentenceTransformerEncoder(cache=False, layer=3)
    emit("layer-3 truncation", sts=sts(layer3), backend=layer3.resolved_backend)
    speed(args, work, teacher, students, layer3, goemo)
    frozen, secs = clinc_fit(SentenceTransformerEncoder(cache=True), adapt=False)
    emit("teacher", clinc_frozen=clinc_eval(frozen), clinc_frozen_fit_s=secs)
    for name in ("static", "shallow", "model2vec-plain"):
        pipe, secs = clinc_fit(students[name], adapt=False)
        emit(name, clinc_fit=clinc_eval(pipe), clinc_fit_s=secs)
        if name != "model2vec-plain":
            emit(name, teacher_model_through_student=through_student(frozen, students[name]))
    adapted, secs = clinc_fit(SentenceTransformerEncoder(cache=True), adapt="auto")
    emit("teacher", clinc_default=clinc_eval(adapted), clinc_default_fit_s=secs)
    (work / "results.json").write_text(json.dumps(RESULTS, indent=1))
    print(f"wrote {work / 'results.json'}")


def speed(args, work: Path, teacher, students: dict, layer3, goemo: list[str]) -> None:
    """Throughput and graph time of every encoder, the whole-process 100k encode, and the
    distillation time on 20,000 GoEmotions texts."""
    speed_texts = goemo[:20_000]
    base = throughput(teacher, speed_texts)
    base_graph = len(speed_texts) / base - tokenize_seconds(teacher, speed_texts)
    emit("teacher", texts_per_second=base, graph_seconds=round(base_graph, 2))
    for name, enc in [*students.items(), ("layer-3 truncation", layer3)]:
        tps = throughput(enc, speed_texts)
        graph = len(speed_texts) / tps - tokenize_seconds(enc, speed_texts)
        emit(
            name,
            texts_per_second=tps,
            speedup=round(tps / base, 2),
            time_ratio=round(base / tps, 3),
            graph_seconds=round(graph, 2),
            graph_time_ratio=round(graph / base_graph, 3),
        )

    if not args.skip_whole_process:
        data = hundred_thousand(work)
        t_teacher = whole_process(data, work, None)
        t_static = whole_process(data, work, work / "static")
        emit(
            "whole-process 100k",
            teacher_s=t_teacher,
            static_s=t_static,
            ratio=round(t_teacher / t_static, 2),
        )

    t0 = time.perf_counter()
    distill(
        work / "static-20k", kind="static", texts=goemo[:20_000], overwrite=True, progress=False
    )
    emit("distill 20k", static_seconds=round(time.perf_counter() - t0, 1))
    t0 = time.perf_counter()
    distill(
        work / "shallow-20k", kind="shallow", texts=goemo[:20_000], overwrite=True, progress=False
    )
    emit("distill 20k", shallow_seconds=round(time.perf_counter() - t0, 1))


def timings(args, work: Path, teacher, goemo: list[str]) -> None:
    """--timings-only: the speed measures on the students a full run left in ``work``."""
    students = {
        name: open_encoder(work / name, cache=False)
        for name in ("model2vec-plain", "static", "shallow")
    }
    layer3 = SentenceTransformerEncoder(cache=False, layer=3)
    emit("teacher", backend=teacher.resolved_backend)
    speed(args, work, teacher, students, layer3, goemo)
    (work / "timings.json").write_text(json.dumps(RESULTS, indent=1))
    print(f"wrote {work / 'timings.json'}")


if __name__ == "__main__":
    main()
