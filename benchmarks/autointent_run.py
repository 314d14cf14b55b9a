"""AutoIntent as a peer in benchmarks/fit_compare.py and benchmarks/multilabel_adapt.py
(issue 27, item 3). Runs in AutoIntent's own virtual environment (its sentence-transformers
3.x and transformers 4.x cannot share embedlab's), offline, on the packaged MiniLM:

  python3.11 -m venv ../ai-venv
  ../ai-venv/bin/pip install "torch==2.13.0" "autointent[sentence-transformers]==0.4.0"
  ../ai-venv/bin/python benchmarks/autointent_run.py IN.json OUT.json

IN.json: {"model": MiniLM's directory, "preset": "classic-light", "seed": 0,
"train": [[text, label or null or [labels]], ...], "test": [text, ...]}; a null label
is an out-of-scope row (single-label), a list makes the task multi-label. OUT.json:
{"fit_seconds", "preset", "predictions": one label, null (out of scope) or a list of
labels per test text}. The preset's search space and HPO budget are AutoIntent's own; only
the embedder is swapped for the packaged MiniLM (the presets name e5-large, which is not on
this machine and would be a different encoder from every other method's).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from autointent import Dataset, Pipeline
    from autointent.configs import LoggingConfig, get_default_embedder_config

    with open(sys.argv[1], encoding="utf-8") as fh:
        job = json.load(fh)
    train = job["train"]
    multi = any(isinstance(y, list) for _, y in train)
    names = sorted({lab for _, y in train for lab in (y if isinstance(y, list) else [y]) if lab})
    index = {n: i for i, n in enumerate(names)}

    def encode(y):  # AutoIntent's label form: an index, None (oos) or a 0/1 vector
        if multi:
            v = [0] * len(names)
            for lab in y or []:
                v[index[lab]] = 1
            return v
        return None if y is None else index[y]

    data = Dataset.from_dict(
        {
            "train": [{"utterance": t, "label": encode(y)} for t, y in train],
            "intents": [{"id": i, "name": n} for i, n in enumerate(names)],
        }
    )
    t0 = time.perf_counter()
    seed = int(job.get("seed", 0)) + 1  # AutoIntent's seeds start at 1
    pipe = Pipeline.from_preset(job.get("preset", "classic-light"), seed=seed)
    pipe.set_config(get_default_embedder_config(model_name=job["model"], batch_size=64))
    with tempfile.TemporaryDirectory(prefix="autointent-") as runs:
        pipe.set_config(LoggingConfig(project_dir=runs, dump_modules=False))
        pipe.fit(data)
        fit_s = time.perf_counter() - t0
        out = pipe.predict(job["test"])

    def decode(p):
        if p is None:
            return None
        if multi:
            return [names[i] for i, v in enumerate(p) if v]
        return names[int(p)]

    result = {
        "fit_seconds": round(fit_s, 1),
        "preset": job.get("preset", "classic-light"),
        "predictions": [decode(p) for p in out],
    }
    with open(sys.argv[2], "w", encoding="utf-8") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    main()
