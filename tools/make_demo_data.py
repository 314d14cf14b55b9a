"""Regenerate the packaged demo data set from tools/demo_source.txt.

Usage: python tools/make_demo_data.py
Writes src/embedlab/data/demo/{train,test}.csv (columns: text,label). Each intent keeps 14
utterances for train and 6 for test; out-of-scope ("oos") queries go 10 to train (used only
to calibrate thresholds) and 30 to test. The split is a seeded shuffle, so reruns are identical.
Also writes incoming.csv from tools/demo_incoming.txt, in its order: requests that arrive
after the model shipped, two intents it never saw among known ones (the demo's discover →
add-classes step; the label column is the truth, not shown to discovery).
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "tools" / "demo_source.txt"
INCOMING = ROOT / "tools" / "demo_incoming.txt"
OUT = ROOT / "src" / "embedlab" / "data" / "demo"


def read_groups(path: Path) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    label = None
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or (line.startswith("#") and not line.startswith("## ")):
            continue
        if line.startswith("## "):
            label = line[3:].strip()
            groups[label] = []
        else:
            groups[label].append(line)
    return groups


def main() -> None:
    groups = read_groups(SOURCE)
    rng = random.Random(0)
    train, test = [], []
    for label, texts in groups.items():
        texts = texts[:]
        rng.shuffle(texts)
        n_train = 10 if label == "oos" else 14
        train += [(t, label) for t in texts[:n_train]]
        test += [(t, label) for t in texts[n_train:]]
    OUT.mkdir(parents=True, exist_ok=True)
    incoming = [(t, label) for label, texts in read_groups(INCOMING).items() for t in texts]
    for name, rows in (("train", train), ("test", test), ("incoming", incoming)):
        with open(OUT / f"{name}.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label"])
            writer.writerows(rows)
        print(f"{name}: {len(rows)} rows")


if __name__ == "__main__":
    main()
