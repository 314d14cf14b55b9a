"""What one running service holds and does for every router: its registry of served
models and indexes, API keys and rate limits, the encoders' micro-batchers, the locks that
queue changes, and the reload of new versions. Routers only call these methods."""

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from fastapi import Request

from embedlab.core.errors import DataFormatError, ValidationError
from embedlab.encoders.onnx_backend import physical_cores
from embedlab.models.predictions import Predictions
from embedlab.serve.batching import MicroBatcher, QueueFull
from embedlab.serve.config import ServeConfig
from embedlab.serve.errors import ApiError
from embedlab.serve.keys import ApiKey, KeyStore, RateLimiter
from embedlab.serve.metrics import Metrics
from embedlab.serve.registry import Registry, ServedIndex, ServedModel, stamp_of

__all__ = ["ServiceState", "request_texts", "warm_index"]

log = logging.getLogger("embedlab")


def request_texts(value: str | list[str]) -> list[str]:
    """The request's texts as a list (the request schema already checked them: non-blank,
    --max-chars each, at most --max-texts)."""
    return [value] if isinstance(value, str) else list(value)


def _token_cost(max_len: int) -> Any:
    """An estimate of a text's tokens for the batch token budget (about 4 characters a token,
    capped at the encoder's sequence length), without tokenizing on the event loop."""
    return lambda text: min(max_len, len(text) // 4 + 2)


def encoder_of(entry: ServedModel | ServedIndex) -> Any:
    """The encoder a served model or index encodes its texts with."""
    return entry.pipeline.encoder_ if isinstance(entry, ServedModel) else entry.encoder


def warm_index(served: ServedIndex) -> None:
    """Build an index's lazily made search structures before requests share it."""
    if len(served.index):
        served.index.search(np.ones((1, served.index.dim), dtype=np.float32), 1)


class ServiceState:
    """The shared state of one app (``app.state.service``)."""

    def __init__(self, cfg: ServeConfig, reg: Registry, signing_key: Any = None) -> None:
        self.cfg, self.reg, self.signing_key = cfg, reg, signing_key
        self.keys = KeyStore(cfg.keys_file) if cfg.keys_file else None
        self.limiter = RateLimiter()
        self.metrics = Metrics(cfg.health_window)
        self.locks: dict[str, asyncio.Lock] = {}  # one per served name: changes queue up
        self.refused: dict[str, str] = {}  # name -> stamp of a version that failed to load
        self.batchers: dict[str, MicroBatcher] = {}
        for key, enc in reg.encoders.items():
            self.batcher(key, enc)

    def lock(self, name: str) -> asyncio.Lock:
        """The lock that queues changes and reloads of served name ``name``."""
        return self.locks.setdefault(name, asyncio.Lock())

    def batcher(self, key: str, enc: Any) -> MicroBatcher:
        """The micro-batcher of encoder ``enc`` (made on first use: a reloaded model may
        bring a new encoder)."""
        if key not in self.batchers:
            cfg = self.cfg
            self.batchers[key] = MicroBatcher(
                lambda texts, enc=enc: enc.encode(texts, progress=False),
                max_rows=cfg.max_batch_rows,
                max_wait_ms=cfg.max_wait_ms,
                max_queue_rows=cfg.max_queue_rows,
                max_tokens=cfg.max_batch_tokens,
                cost=_token_cost(int(getattr(enc, "max_seq_length", None) or 512)),
                concurrency=cfg.encoder_calls or min(4, physical_cores()),
                enabled=cfg.batching,
                on_batch=lambda rows, _secs: self.metrics.batch_rows.observe(rows),
            )
        return self.batchers[key]

    def queued_rows(self) -> int:
        return sum(b.queued_rows for b in self.batchers.values())

    async def encode(self, entry: ServedModel | ServedIndex, texts: list[str]) -> np.ndarray:
        """The texts' vectors from the entry's encoder, through its micro-batcher (an entry
        swapped out meanwhile still encodes with its own encoder)."""
        try:
            return await self.batcher(entry.encoder_key, encoder_of(entry)).encode(texts)
        except QueueFull as exc:
            raise ApiError(
                429,
                "overloaded",
                "the service is at capacity; retry shortly",
                {"Retry-After": str(max(1, round(exc.retry_after)))},
            ) from None

    async def predictions(
        self,
        served: dict[str, ServedModel],
        texts: list[str],
        top_k: int,
        *,
        fdr: float | None = None,
        sets: float | None = None,
        explain: bool = False,
    ) -> dict[str, Predictions]:
        """Each requested model's predictions (``fdr``, ``sets``, ``explain``: see
        :meth:`Pipeline.predict_details`); the texts are encoded once per encoder; each
        model's drift monitor bets on them, and its concepts (if it has them) are counted."""
        by_encoder: dict[str, np.ndarray] = {}
        out = {}
        for name, model in served.items():
            if model.encoder_key not in by_encoder:
                by_encoder[model.encoder_key] = await self.encode(model, texts)
            if explain:
                from embedlab.models.class_changes import check_explainable

                try:
                    check_explainable(model.pipeline)
                except ValidationError as exc:  # the model, not the request, lacks it
                    raise ApiError(409, "conflict", f"{name}: {exc}") from None
            try:
                found = model.pipeline.details_from_vectors(
                    by_encoder[model.encoder_key], top_k=top_k, fdr=fdr, sets=sets, explain=explain
                )
            except ValidationError as exc:  # e.g. prediction sets of a multi-label model
                raise ApiError(422, "invalid_request", f"{name}: {exc}") from None
            self.metrics.observe_model(name, found.novelty, found.out_of_scope)
            self._count_concepts(name, model, by_encoder[model.encoder_key], found)
            if model.drift is not None and found.p_score is not None:
                model.drift.update(found.p_score)
                self.metrics.observe_drift(name, model.drift.summary())
            out[name] = found
        return out

    def _count_concepts(self, name: str, model: Any, vectors: np.ndarray, found: Any) -> None:
        """Count the concepts active on the texts (for /metrics' concept drift)."""
        pipe = model.pipeline
        concepts = getattr(pipe, "concepts_", None)
        if concepts is None:
            return
        if found.explanations is not None:
            atoms = found.explanations.atoms
        else:
            codes = concepts.codes(pipe._features(vectors))
            atoms = np.where(codes.active(), codes.index, -1)
        self.metrics.observe_concepts(name, atoms, concepts.dictionary.frequency_, concepts.names)

    async def reload_changed(self) -> list[tuple[str, str]]:
        """Load every served directory that holds a new version and swap it in; a version
        that fails to load is refused (logged, counted) and the old one keeps serving.
        Returns (name, "ok" | "refused") per version tried."""
        outcomes = []
        for entry in self.reg.changed():
            async with self.lock(entry.name):
                outcome = await self._reload(entry)
            if outcome is not None:
                outcomes.append((entry.name, outcome))
        return outcomes

    async def _reload(self, entry: Any) -> str | None:
        reg, metrics = self.reg, self.metrics
        current = (
            reg.models.get(entry.name) or reg.indexes.get(entry.name) or reg.tables.get(entry.name)
        )
        stamp = stamp_of(entry.path)
        seen = (current.stamp, self.refused.get(entry.name)) if current else ()
        if current is None or stamp is None or stamp in seen:
            return None
        try:
            new = await asyncio.to_thread(reg.load_entry, entry.path, entry.name)
        except Exception as exc:  # a broken version: keep serving the old one
            self.refused[entry.name] = stamp
            metrics.reloads.labels(entry.name, "refused").inc()
            metrics.errors.labels("reload_refused").inc()
            log.error("not serving the new version of %s: %s", entry.name, exc)
            return "refused"
        if isinstance(new, ServedIndex):
            await asyncio.to_thread(warm_index, new)
        reg.swap(new)
        metrics.forget_concepts(entry.name)
        for key in [k for k in self.batchers if k not in reg.encoders]:
            del self.batchers[key]  # its encoder is no longer served
        if encoder_of(new) is not None:  # a table model without text has no encoder
            self.batcher(new.encoder_key, encoder_of(new))
        self.refused.pop(entry.name, None)
        metrics.reloads.labels(entry.name, "ok").inc()
        log.warning("now serving a new version of %s", entry.name)
        return "ok"

    def authorise(
        self,
        request: Request,
        names: Sequence[str] = (),
        *,
        pool: str = "model",
        write: bool = False,
    ) -> ApiKey | None:
        """The request's key (None: the server uses none), in this order: 401 without a
        valid key; 404 for a name not served (listing only the names the key may use); 403
        for a change by a key without write access; 429 over the key's rate."""
        key = self._key(request)
        served = {
            "model": self.reg.models,
            "index": self.reg.indexes,
            "embedder": {**self.reg.models, **self.reg.embedders},  # what /v1/embeddings takes
            "table model": self.reg.tables,
        }[pool]
        pool = "model" if pool == "embedder" else pool
        code = "table_model" if pool == "table model" else pool
        # a name the key may not use is answered as one not served: 404 vs 403 would tell
        # a key holder which names exist
        unknown = [n for n in names if n not in served or (key is not None and not key.allows(n))]
        if (
            unknown
            and served is self.reg.models
            and unknown[0] in self.reg.embedders
            and (key is None or key.allows(unknown[0]))
        ):
            raise ApiError(
                404,
                "model_not_found",
                f"{unknown[0]!r} is a served encoder, not a model: it answers /v1/embeddings "
                "only (fit a model on it to classify)",
            )
        if unknown:
            visible = sorted(n for n in served if key is None or key.allows(n))
            raise ApiError(
                404,
                f"{code}_not_found",
                f"no served {pool} {unknown[0]!r} for this key; served: {visible}"
                if key is not None
                else f"no served {pool} {unknown[0]!r}; served: {visible}",
            )
        if key is None:
            return None
        if write and not key.write:
            raise ApiError(
                403,
                "forbidden",
                "this key may not change models (create one with `embedlab keys create --write`)",
            )
        wait = self.limiter.allow(key.id, key.rate_per_minute)
        if wait:
            raise ApiError(
                429,
                "rate_limited",
                f"this key's limit of {key.rate_per_minute} requests a minute is reached",
                {"Retry-After": str(max(1, round(wait)))},
            )
        return key

    def _key(self, request: Request) -> ApiKey | None:
        """The request's valid key; 401 without one, 503 when the keys file is unreadable
        (fail closed). None when the server uses no keys."""
        if self.keys is None:
            return None
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else None
        try:
            key = self.keys.check(token or request.headers.get("x-api-key"))
        except DataFormatError as exc:  # fail closed, and say why in the log
            log.error("refusing requests: the keys file cannot be read: %s", exc)
            raise ApiError(
                503,
                "keys_unreadable",
                "keys file unreadable: the server refuses requests "
                "until it is repaired (its log says why)",
            ) from None
        if key is None:
            raise ApiError(
                401,
                "unauthorized",
                "a valid API key is needed (Authorization: Bearer <key>)",
                {"WWW-Authenticate": "Bearer"},
            )
        return key

    def listing(self, request: Request, served: Iterable[Any]) -> dict:
        """The served models or indexes the request's key may use, in OpenAI's list shape."""
        key = self.authorise(request)
        shown = [x for x in served if key is None or key.allows(x.name)]
        return {"object": "list", "data": [x.describe() for x in shown]}

    def served_embedder(self, request: Request, name: str) -> Any:
        """The served model or encoder ``name`` (for /v1/embeddings), after :meth:`authorise`."""
        self.authorise(request, [name], pool="embedder")
        return self.reg.models.get(name) or self.reg.embedders[name]

    def served_tables(self, request: Request, name: str) -> Any:
        """The served table model ``name``, after :meth:`authorise`."""
        self.authorise(request, [name], pool="table model")
        return self.reg.tables[name]

    def served_models(self, request: Request, names: list[str]) -> dict[str, ServedModel]:
        """The served models, after :meth:`authorise` (each read once: a swap during the
        request does not mix versions)."""
        self.authorise(request, names)
        return {n: self.reg.models[n] for n in names}
