"""``POST /v1/models/{name}/records``: labels of records (a text beside categorical and
numeric columns) from a served table model (`embedlab fit --cat-cols`)."""

import asyncio
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi import Path as PathParam

from embedlab.core.errors import ValidationError
from embedlab.serve.errors import ApiError, documented
from embedlab.serve.schemas import RequestModels
from embedlab.serve.state import ServiceState
from embedlab.tables.columns import no_text

__all__ = ["records_router"]


def _columns(model: Any, records: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The model's input columns from the records (a column a record lacks: missing)."""
    return {c: np.array([r.get(c) for r in records], dtype=object) for c in model.input_columns_}


def records_router(state: ServiceState, requests: RequestModels) -> APIRouter:
    router = APIRouter()
    RecordsRequest = requests.records
    reg, cfg = state.reg, state.cfg
    served_names = {"enum": sorted(reg.tables)} if reg.tables and not cfg.keys_file else {}

    @router.post("/v1/models/{name}/records", responses=documented(401, 403, 404, 413, 422, 429))
    async def predict_records(
        name: Annotated[str, PathParam(json_schema_extra=served_names)],
        req: RecordsRequest,
        request: Request,
    ) -> dict:
        """Labels of records from a table model, in input order: ``label``, ``confidence``
        (the top class's probability) and the ``top_k`` classes, as `embedlab predict` writes
        them; ``unseen`` counts, per column, values the model keeps no row of its own for
        (never seen in training, or too rare). A table model has no out-of-scope detector."""
        served = state.served_tables(request, name)
        model = served.model
        data = _columns(model, list(req.records))
        vectors = None
        if model.text_col:
            texts = data[model.text_col]
            keep = np.flatnonzero(~no_text(texts)).tolist()
            vectors = np.zeros((len(texts), model.text_dim_), np.float32)
            if keep:
                vectors[keep] = await state.encode(served, [texts[i] for i in keep])
        counts: dict[str, Any] = {}
        try:
            found = await asyncio.to_thread(
                model.predict_details, data, top_k=req.top_k, vectors=vectors, counts=counts
            )
        except ValidationError as exc:
            raise ApiError(422, "invalid_request", str(exc)) from None
        rows = found.to_rows(req.top_k)
        for r in rows:
            r.pop("novelty", None)
            r.pop("out_of_scope", None)
        return {
            "object": "list",
            "model": name,
            "data": rows,
            "unseen": counts["unseen"],
            "numeric_filled": counts["numeric_filled"],
        }

    return router
