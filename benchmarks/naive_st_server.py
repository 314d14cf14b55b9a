"""The anchor for benchmarks/serve_load.py: the server a user writes by hand — FastAPI with
one endpoint that calls ``SentenceTransformer.encode`` on each request's texts (torch, no
batching across requests) and a nearest-prototype label, on 127.0.0.1.

Usage (serve_load.py starts it itself):
  .venv/bin/python benchmarks/naive_st_server.py MODEL_DIR --port 8001
"""

from __future__ import annotations

import argparse

import numpy as np
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer

from embedlab.data.datasets import load_demo
from embedlab.encoders import SentenceTransformerEncoder


class Texts(BaseModel):
    model: str
    input: list[str]


def build() -> FastAPI:
    st = SentenceTransformer(str(SentenceTransformerEncoder().model_path), device="cpu")
    train = load_demo("train")
    labels = np.asarray(train.labels, dtype=object)
    X = st.encode(list(train.texts), normalize_embeddings=True)
    names = sorted(set(labels))
    protos = np.stack([X[labels == n].mean(axis=0) for n in names])
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    app = FastAPI()

    @app.get("/readyz")
    def readyz() -> dict:
        return {"status": "ready"}

    @app.post("/v1/classify")
    def classify(req: Texts) -> dict:  # sync: FastAPI runs it in its thread pool
        V = st.encode(req.input, normalize_embeddings=True)
        sims = V @ protos.T
        best = sims.argmax(axis=1)
        return {
            "data": [
                {"label": names[b], "score": float(s[b])} for b, s in zip(best, sims, strict=True)
            ]
        }

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="ignored: the anchor uses the packaged encoder")
    ap.add_argument("--port", type=int, default=8001)
    args = ap.parse_args()
    uvicorn.run(build(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
