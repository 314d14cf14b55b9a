"""``POST /v1/models/{name}/suggest``: which texts of a pool to label next for a served
model, each with why (as `embedlab suggest POOL -m MODEL`)."""

import asyncio
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi import Path as PathParam

from embedlab.core.errors import ValidationError
from embedlab.serve.errors import ApiError, documented
from embedlab.serve.schemas import RequestModels
from embedlab.serve.state import ServiceState

__all__ = ["labeling_router"]


def labeling_router(state: ServiceState, requests: RequestModels) -> APIRouter:
    router = APIRouter()
    SuggestRequest = requests.suggest
    reg, cfg = state.reg, state.cfg
    served_names = {"enum": sorted(reg.models)} if reg.models and not cfg.keys_file else {}

    @router.post("/v1/models/{name}/suggest", responses=documented(401, 403, 404, 413, 422, 429))
    async def suggest(
        name: Annotated[str, PathParam(json_schema_extra=served_names)],
        req: SuggestRequest,
        request: Request,
    ) -> dict:
        """Which ``n`` texts of ``input`` to label next for this model, best first, each with
        why (ambiguous between two classes, unlike any class, a new region): the same
        choice as `embedlab suggest POOL -m MODEL`; the model's training rows and
        ``labeled`` count as labelled. ``n`` larger than the pool: every text, ranked
        (said in ``notes``)."""
        from embedlab.data.embedding_set import EmbeddingSet
        from embedlab.labeling.suggest import suggest as run

        served = state.served_models(request, [name])
        model = served[name]
        X = await state.encode(model, list(req.input))
        done = await state.encode(model, list(req.labeled)) if req.labeled else None
        pool = EmbeddingSet(X, texts=list(req.input), provenance=None)
        n = min(req.n, len(req.input))  # like a search's k: at most what there is
        try:
            found = await asyncio.to_thread(
                run, pool, n, model=model.pipeline, strategy=req.strategy,
                labeled_vectors=done, seed=req.seed, progress=False,
            )  # fmt: skip
        except ValidationError as exc:
            raise ApiError(422, "invalid_request", str(exc)) from None
        if n < req.n:
            found.notes.append(f"n={req.n} is more than the {n} texts given: all are ranked")
        rows = found.to_rows()
        for r in rows:
            r["index"] = r.pop("pool_row")  # the text's place in ``input``
            r.pop("id", None)
        return {
            "object": "list",
            "model": name,
            "version": model.version,
            "strategy": found.strategy,
            "notes": found.notes,
            "data": rows,
        }

    return router
