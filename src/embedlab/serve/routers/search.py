"""``POST /v1/search`` and ``GET /v1/indexes``: the nearest stored items of served indexes."""

import asyncio

import numpy as np
from fastapi import APIRouter, Request

from embedlab.serve.errors import TEXT_ERRORS, ApiError, documented
from embedlab.serve.schemas import RequestModels
from embedlab.serve.state import ServiceState, request_texts

__all__ = ["search_router"]


def search_router(state: ServiceState, requests: RequestModels) -> APIRouter:
    router = APIRouter()
    SearchRequest = requests.search

    @router.get("/v1/indexes", responses=documented(401))
    async def list_indexes(request: Request) -> dict:
        """The served search indexes (size, spec, encoder, the labels a search can filter by)
        that the request's key may use."""
        return state.listing(request, state.reg.indexes.values())

    @router.post("/v1/search", responses=TEXT_ERRORS)
    async def search(req: SearchRequest, request: Request) -> dict:
        """The ``k`` nearest stored items of each text in a served index (cosine score, id
        and the stored label and text), only items with one of ``labels`` when given."""
        state.authorise(request, [req.index], pool="index")
        served = state.reg.indexes[req.index]
        allow = None
        if req.labels:
            if served.labels is None:
                raise ApiError(
                    422, "invalid_request", f"index {req.index!r} keeps no labels to filter by"
                )
            allow = np.isin(served.labels, np.asarray(req.labels, dtype=object))
        Q = await state.encode(served, request_texts(req.input))
        if served.query_map is not None:  # new-encoder queries into the index's space
            Q = served.query_map.backward(Q)
        index = served.index
        ids, scores = await asyncio.to_thread(index.search, Q, req.k, allow=allow)
        hits = index.hits(ids, scores)
        return {
            "object": "list",
            "index": req.index,
            "data": [{"index": i, "hits": h} for i, h in enumerate(hits)],
        }

    return router
