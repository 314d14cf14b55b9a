"""Dynamic micro-batching: texts from concurrent requests are merged into one encoder call.

A request's texts join a queue; one worker per encoder takes what is queued — up to
``max_rows`` rows and ``max_tokens`` padded tokens (rows × the longest row's tokens, as
``cost`` counts them), waiting at most ``max_wait_ms`` for more (default 0: an idle encoder
starts at once, and the requests that arrive while it works form the next batch) — encodes
it in a worker thread, at most ``concurrency`` calls at once (as many as the encoder runs
side by side: the ONNX backend keeps one single-threaded session per core), and hands each
request its rows. When the queue already holds ``max_queue_rows`` rows a new request is
refused (:class:`QueueFull`, the service answers 429 with Retry-After).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["MicroBatcher", "QueueFull"]


class QueueFull(Exception):
    """The encoder's queue is full; retry after ``retry_after`` seconds."""

    def __init__(self, queued: int, limit: int, retry_after: float) -> None:
        super().__init__(f"the encoder queue holds {queued} rows (limit {limit})")
        self.retry_after = retry_after


@dataclass
class _Item:
    texts: list[str]
    future: asyncio.Future
    longest: int = 0  # the most tokens of one of its texts


class MicroBatcher:
    """Merge concurrent ``encode`` calls into batches for ``fn`` (texts → (n, d) array).

    ``enabled=False`` encodes each request on its own (the naive server, for benchmarks).
    ``on_batch(rows, seconds)`` is called after every encoder call (metrics).
    """

    def __init__(
        self,
        fn: Callable[[list[str]], np.ndarray],
        *,
        max_rows: int = 64,
        max_wait_ms: float = 0.0,
        max_queue_rows: int = 4096,
        max_tokens: int | None = None,
        cost: Callable[[str], int] | None = None,
        concurrency: int = 1,
        enabled: bool = True,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.fn = fn
        self.concurrency = max(1, int(concurrency))
        self._slots: asyncio.Semaphore | None = None
        self._running: set[asyncio.Task] = set()
        self.max_rows = max(1, int(max_rows))
        self.max_tokens = None if max_tokens is None else max(1, int(max_tokens))
        self.cost = cost or (lambda text: len(text) // 4 + 2)
        self.max_wait = max(0.0, float(max_wait_ms)) / 1000.0
        self.max_queue_rows = int(max_queue_rows)
        self.enabled = enabled
        self.on_batch = on_batch
        self._pending: list[_Item] = []
        self._queued = 0
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_batch_s = 0.05

    @property
    def queued_rows(self) -> int:
        return self._queued

    def _call(self, texts: list[str]) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.fn(texts)
        secs = time.perf_counter() - t0
        self._last_batch_s = secs
        if self.on_batch is not None:
            self.on_batch(len(texts), secs)
        return out

    async def encode(self, texts: list[str]) -> np.ndarray:
        """The vectors of ``texts`` (in order), encoded with whatever else is queued."""
        if not texts:
            raise ValueError("nothing to encode")
        if self._queued + len(texts) > self.max_queue_rows:
            # a rough wait: the queue drains at about one batch per last batch time
            batches = max(1, self._queued // self.max_rows)
            raise QueueFull(self._queued, self.max_queue_rows, batches * self._last_batch_s)
        if not self.enabled:
            self._queued += len(texts)
            try:
                return await asyncio.to_thread(self._call, list(texts))
            finally:
                self._queued -= len(texts)
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (a restarted server, a test client)
            self._loop, self._wake, self._worker = loop, asyncio.Event(), None
            self._slots, self._running = asyncio.Semaphore(self.concurrency), set()
            self._pending, self._queued = [], 0
        longest = max(map(self.cost, texts)) if self.max_tokens is not None else 0
        item = _Item(list(texts), loop.create_future(), longest)
        self._pending.append(item)
        self._queued += len(texts)
        assert self._wake is not None
        self._wake.set()
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._run())
        return await item.future

    def _fits(self, rows: int, longest: int, item: _Item) -> bool:
        """Whether ``item`` joins a batch of ``rows`` rows whose longest has ``longest``
        tokens within the row and padded-token limits (a batch always takes one request)."""
        rows += len(item.texts)
        if rows > self.max_rows:
            return False
        return self.max_tokens is None or rows * max(longest, item.longest) <= self.max_tokens

    async def _run(self) -> None:
        assert self._wake is not None and self._slots is not None
        while self._pending:
            await self._slots.acquire()  # at most ``concurrency`` encoder calls at once
            deadline = time.perf_counter() + self.max_wait
            while sum(len(i.texts) for i in self._pending) < self.max_rows:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=left)
                except TimeoutError:
                    break
            batch, rows, longest = [], 0, 0
            while self._pending and (not batch or self._fits(rows, longest, self._pending[0])):
                item = self._pending.pop(0)
                batch.append(item)
                rows += len(item.texts)
                longest = max(longest, item.longest)
            if not batch:
                self._slots.release()
                break
            task = asyncio.get_running_loop().create_task(self._encode_batch(batch, rows))
            self._running.add(task)  # kept referenced until done
            task.add_done_callback(self._running.discard)

    async def _encode_batch(self, batch: list[_Item], rows: int) -> None:
        """Encode one merged batch in a worker thread and hand each request its rows."""
        assert self._slots is not None
        texts = [t for item in batch for t in item.texts]
        try:
            X = await asyncio.to_thread(self._call, texts)
        except Exception as exc:  # every waiting request gets the failure
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
        else:
            start = 0
            for item in batch:
                n = len(item.texts)
                if not item.future.done():
                    item.future.set_result(X[start : start + n])
                start += n
        finally:
            self._queued -= rows
            self._slots.release()
