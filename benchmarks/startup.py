"""Start-up and first use, as whole processes, beside sentence-transformers (issue 11).

Usage: .venv/bin/python benchmarks/startup.py [--n 10000] [--repeats 2]

Each figure is the wall time of a fresh process (median of --repeats):
- `embedlab --help`, and a Python process that only imports sentence_transformers;
- encoding the first --n CLINC150 texts (train + val + test) with `embedlab encode`:
  cold = an empty EMBEDLAB_CACHE (graph export + backend check included), warm = the
  graph already exported but `--no-cache` (every text is encoded);
- the anchor: a process that imports sentence_transformers, loads the packaged model and
  encodes the same texts (`SentenceTransformer.encode`, batch 32);
- the first `embedlab predict` of 100 texts by a bundle copied to another folder with an
  empty cache (what a fresh machine does).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EMBEDLAB = [sys.executable, "-m", "embedlab.cli"]


def wall(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    from embedlab.data.datasets import load_clinc150
    from embedlab.encoders.sentence_transformer import default_model_path

    texts = []
    for split in ("train", "val", "test"):
        texts += load_clinc150(split).texts
    texts = texts[: args.n]
    work = Path(tempfile.mkdtemp(prefix="embedlab-startup-"))
    data = work / "texts.csv"
    with data.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text"])
        w.writerows([t] for t in texts)
    base = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDLAB_")}
    med = statistics.median

    def env_with(cache: Path) -> dict[str, str]:
        return {**base, "EMBEDLAB_CACHE": str(cache)}

    results: dict[str, float] = {}
    results["embedlab --help"] = med(
        wall([*EMBEDLAB, "--help"], env_with(work / "c0")) for _ in range(max(3, args.repeats))
    )
    results["python: import sentence_transformers"] = med(
        wall([sys.executable, "-c", "import sentence_transformers"], base)
        for _ in range(args.repeats)
    )
    st_code = (
        "import csv, sys\nfrom sentence_transformers import SentenceTransformer\n"
        f"m = SentenceTransformer({str(default_model_path())!r}, device='cpu', "
        "local_files_only=True)\n"
        f"rows = [r[0] for r in list(csv.reader(open({str(data)!r}, encoding='utf-8')))[1:]]\n"
        "m.encode(rows, batch_size=32)\n"
    )
    results[f"sentence-transformers encode {len(texts)}"] = med(
        wall([sys.executable, "-c", st_code], base) for _ in range(args.repeats)
    )
    cold = []
    for r in range(args.repeats):
        cache = work / f"cold{r}"
        out = work / f"cold-out{r}"
        cold.append(wall([*EMBEDLAB, "encode", str(data), "-o", str(out)], env_with(cache)))
    results[f"embedlab encode {len(texts)}, cold (empty cache)"] = med(cold)
    warm_cache = work / "cold0"
    results[f"embedlab encode {len(texts)}, warm (--no-cache)"] = med(
        wall(
            [*EMBEDLAB, "encode", str(data), "-o", str(work / f"warm{r}"), "--no-cache"],
            env_with(warm_cache),
        )
        for r in range(args.repeats)
    )

    # A bundle fitted here (frozen encoder, auto backend), copied to a fresh machine.
    train = work / "train.csv"
    demo_train = ROOT / "src" / "embedlab" / "data" / "demo" / "train.csv"
    shutil.copyfile(demo_train, train)
    model = work / "model"
    wall(
        [*EMBEDLAB, "fit", str(train), "-o", str(model), "--no-adapt"],
        env_with(warm_cache),
    )
    small = work / "small.csv"
    with small.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text"])
        w.writerows([t] for t in texts[:100])
    first = []
    for r in range(args.repeats):
        copied = work / f"copied{r}" / "model"
        shutil.copytree(model, copied)
        first.append(
            wall(
                [*EMBEDLAB, "predict", str(copied), str(small), "-o", str(work / f"p{r}.csv")],
                env_with(work / f"fresh{r}"),
            )
        )
    results["first predict (100 texts) of a copied bundle, empty cache"] = med(first)

    anchor = results[f"sentence-transformers encode {len(texts)}"]
    print(f"\nwhole processes, median of {args.repeats} (help: of {max(3, args.repeats)})")
    print("| process | seconds | × faster than ST encode |")
    print("|---|---:|---:|")
    for name, secs in results.items():
        ratio = f"{anchor / secs:.2f}" if "encode" in name and "embedlab" in name else ""
        print(f"| {name} | {secs:.2f} | {ratio} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
