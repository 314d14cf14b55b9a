"""``GET /v1/models`` and ``POST /v1/models/{name}/classes``: the served models, and new
classes added at run time (a new version, saved atomically and swapped in)."""

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam

from embedlab.core.errors import RefusedOverwrite, ValidationError, VersionConflict
from embedlab.serve.errors import ApiError, documented
from embedlab.serve.registry import ServedModel, describe_file
from embedlab.serve.schemas import RequestModels
from embedlab.serve.state import ServiceState

__all__ = ["models_router"]


def check_examples(texts: list[str], labels: list[str]) -> None:
    """422 for a label that spells "missing" (NaN, NA, null: refused as the command line
    refuses them in files; the schema says so too), 409 for one text given two labels."""
    from embedlab.data.readers import is_missing_value

    for i, label in enumerate(labels):
        if is_missing_value(label):
            raise ApiError(
                422,
                "invalid_request",
                f"examples[{i}].label is {label!r}, a spelling of a missing label: give every "
                "example the name of its class",
            )
    seen: dict[str, str] = {}
    for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
        key = text.strip()
        if seen.setdefault(key, label) != label:
            raise ApiError(
                409,
                "conflicting_labels",
                f"examples[{i}]: the text {text[:80]!r} comes with two labels "
                f"({seen[key]!r} and {label!r}) in this request: give each text one label",
            )


async def _save(state: ServiceState, name: str, model: ServedModel, child: Any) -> ServedModel:
    """Write ``child`` over ``model``'s directory as its next version (compare-and-swap on
    the stamp it was loaded with) and serve it; 409 / 503 when that cannot be done."""
    if describe_file(model.path) is None:
        raise ApiError(
            503,
            "directory_missing",
            f"model {name!r}'s directory {model.path} moved or vanished since it was "
            "loaded: the change was not saved (restart the server on the new path)",
        )
    try:
        await asyncio.to_thread(
            child.save,
            model.path,
            overwrite=True,
            expect_stamp=model.stamp,
            sign=state.signing_key,
        )
    except VersionConflict as exc:
        raise ApiError(
            409,
            "version_conflict",
            f"model {name!r} was changed on disk by another writer since version "
            f"{model.version} was loaded; the change was not saved ({exc})",
        ) from None
    except RefusedOverwrite as exc:
        raise ApiError(409, "conflict", f"the change was not saved: {exc}") from None
    new = ServedModel(name, model.path, child, model.encoder_key, child.source_stamp)
    state.reg.swap(new)
    state.metrics.reloads.labels(name, "ok").inc()
    return new


def models_router(state: ServiceState, requests: RequestModels) -> APIRouter:
    router = APIRouter()
    ClassesRequest = requests.classes
    reg, cfg = state.reg, state.cfg
    served_names = {"enum": sorted(reg.models)} if reg.models and not cfg.keys_file else {}

    @router.get("/v1/models", responses=documented(401))
    async def list_models(request: Request) -> dict:
        """The served models (OpenAI's list shape, with version, encoder, classes, threshold),
        encoders (``kind``: encoder, for /v1/embeddings) and table models (``kind``: tables,
        for /v1/models/{name}/records) that the request's key may use."""
        return state.listing(
            request, [*reg.models.values(), *reg.embedders.values(), *reg.tables.values()]
        )

    @router.post(
        "/v1/models/{name}/classes", responses=documented(401, 403, 404, 409, 413, 422, 429, 503)
    )
    async def add_classes(
        name: Annotated[str, PathParam(json_schema_extra=served_names)],
        req: ClassesRequest,
        request: Request,
    ) -> dict:
        """Add classes from labelled examples at run time: a new version of the model (head
        updated in closed form, out-of-scope threshold recalibrated), written to its
        directory atomically and swapped in; requests in flight finish on the old version."""
        state.authorise(request, [name], write=True)
        if cfg.read_only:
            raise ApiError(409, "read_only", "this server was started with --read-only")
        texts = [e.text for e in req.examples]
        labels = [e.label for e in req.examples]
        async with state.lock(name):
            model = reg.models[name]
            why = model.pipeline.class_change_refusal
            if why is not None:
                raise ApiError(409, "unsupported", f"model {name!r} cannot take new classes: {why}")
            check_examples(texts, labels)
            X = await state.encode(model, texts)
            try:
                child = await asyncio.to_thread(
                    model.pipeline.add_classes,
                    texts,
                    labels,
                    vectors=X,
                    progress=False,
                    parents=req.parents or None,
                )
            except ValidationError as exc:  # a label the model knows already...: no paths
                raise ApiError(409, "conflict", str(exc)) from None
            new = await _save(state, name, model, child)
        return {
            "object": "model",
            "id": name,
            "version": new.version,
            "added": sorted(set(map(str, child.classes_)) - set(map(str, model.pipeline.classes_))),
            "classes": [str(c) for c in child.classes_],
            "threshold": new.threshold,
        }

    return router
