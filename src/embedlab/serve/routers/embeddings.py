"""``POST /v1/embeddings``: OpenAI-compatible embeddings from a served model's encoder."""

import base64

import numpy as np
from fastapi import APIRouter, Request

from embedlab.serve.errors import TEXT_ERRORS, ApiError
from embedlab.serve.schemas import RequestModels
from embedlab.serve.state import ServiceState, request_texts

__all__ = ["embeddings_router"]


def embeddings_router(state: ServiceState, requests: RequestModels) -> APIRouter:
    router = APIRouter()
    EmbeddingsRequest = requests.embeddings

    @router.post("/v1/embeddings", responses=TEXT_ERRORS)
    async def embeddings(req: EmbeddingsRequest, request: Request) -> dict:
        """OpenAI-compatible embeddings from a served model's encoder or a served encoder
        (``model`` = its id: a model bundle, or an encoder directory such as a distilled
        student); ``dimensions`` keeps the first d and renormalises (Matryoshka)."""
        served = state.served_embedder(request, req.model)
        texts = request_texts(req.input)
        X = await state.encode(served, texts)
        if req.dimensions is not None:
            if req.dimensions > X.shape[1]:
                raise ApiError(
                    422,
                    "invalid_request",
                    f"dimensions {req.dimensions} is more than the model's {X.shape[1]}",
                )
            X = X[:, : req.dimensions]
        X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        X = X.astype(np.float32)
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(row.tobytes()).decode("ascii")
                if req.encoding_format == "base64"
                else row.tolist(),
            }
            for i, row in enumerate(X)
        ]
        words = sum(len(t.split()) for t in texts)  # whitespace words, not model tokens
        return {
            "object": "list",
            "data": data,
            "model": req.model,
            "usage": {"prompt_tokens": words, "total_tokens": words},
        }

    return router
