"""``POST /v1/classify`` and ``POST /v1/detect``: labels and out-of-scope decisions of one
or several served models (texts encoded once per encoder)."""

from typing import Any

from fastapi import APIRouter, Request

from embedlab.serve.errors import TEXT_ERRORS, ApiError, documented
from embedlab.serve.schemas import RequestModels
from embedlab.serve.state import ServiceState, request_texts

__all__ = ["classify_router"]


def _model_names(req: Any) -> list[str]:
    names = ([req.model] if req.model else []) + list(req.models or [])
    if not names:
        raise ApiError(422, "invalid_request", "name a model (model) or models (models)")
    return list(dict.fromkeys(names))


def _answer(results: list[dict]) -> dict:
    """One model's result inline, several under ``results``."""
    if len(results) == 1:
        return {"object": "list", **results[0]}
    return {"object": "list", "results": results}


def _detections(found: Any, threshold: float | None) -> list[dict]:
    """One ``{out_of_scope, novelty, p_value, threshold}`` per text."""
    p = [None] * len(found) if found.p_value is None else found.p_value.astype(float).tolist()
    return [
        {"out_of_scope": o, "novelty": s, "p_value": pv, "threshold": threshold}
        for o, s, pv in zip(
            found.out_of_scope.tolist(), found.novelty.astype(float).tolist(), p, strict=True
        )
    ]


def classify_router(state: ServiceState, requests: RequestModels) -> APIRouter:
    router = APIRouter()
    TextsRequest = requests.texts

    @router.post("/v1/classify", responses=documented(401, 403, 404, 409, 413, 422, 429))
    async def classify(req: TextsRequest, request: Request) -> dict:
        """Labels (or the out-of-scope label) for texts, in input order; the same labels as
        `embedlab predict`, with the same names: ``confidence`` (the head's top-1
        probability), ``novelty`` (higher = more unusual), ``p_value`` (conformal: an
        in-scope text gets p <= t with probability <= t), ``out_of_scope``, ``top``, and
        ``set`` with ``sets``, ``explanation`` with ``explain`` (409 for a model without
        concepts, or multi-label). ``fdr``: reject as a batch (Benjamini-Hochberg).
        ``models``: several models, texts encoded once per encoder."""
        served = state.served_models(request, _model_names(req))
        texts = request_texts(req.input)
        found = await state.predictions(
            served, texts, req.top_k, fdr=req.fdr, sets=req.sets, explain=req.explain
        )
        return _answer(
            [
                {
                    "model": name,
                    "version": model.version,
                    "threshold": model.threshold,
                    "data": found[name].to_rows(req.top_k),
                }
                for name, model in served.items()
            ]
        )

    @router.post("/v1/detect", responses=TEXT_ERRORS)
    async def detect(req: TextsRequest, request: Request) -> dict:
        """Out-of-scope decisions: novelty (higher = more unusual) against the threshold,
        and the p-value; with ``fdr`` the rejected set is Benjamini-Hochberg's over the
        request's texts (expected share of in-scope texts among them at most ``fdr``)."""
        served = state.served_models(request, _model_names(req))
        found = await state.predictions(served, request_texts(req.input), 1, fdr=req.fdr)
        return _answer(
            [
                {
                    "model": name,
                    "version": model.version,
                    "data": _detections(found[name], model.threshold),
                }
                for name, model in served.items()
            ]
        )

    return router
