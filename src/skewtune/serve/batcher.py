"""Dynamic micro-batching: texts of concurrent requests run together, in one worker thread.

Requests put one item per text on a bounded queue (:class:`Overloaded` when it is full, so the server answers 503
instead of queueing without limit). The worker waits at most ``max_wait_ms`` after the oldest item for the batch to
fill to ``max_batch_size`` texts, takes the oldest item's *lane* (rows that may share a forward pass: every plain
LoRA adapter of one backbone, see :class:`skewtune.serve.pool.ServedAdapter`) in arrival order, sorts it by
length and cuts it into forward passes that waste little on padding (:meth:`MicroBatcher._chunks`). With ``batching="none"`` each request runs alone, as sequential serving without batching would.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from skewtune.errors import ConfigError, SkewtuneError

if TYPE_CHECKING:
    from skewtune.serve.pool import AdapterPool, EncodedText, ServedAdapter

BATCHING = ("dynamic", "none")


class Overloaded(SkewtuneError):
    """The queue is full (or the server is shutting down): answer 503 with Retry-After."""


class AdapterGone(SkewtuneError):
    """The adapter was unloaded while the request waited."""


@dataclass
class _Job:
    served: ServedAdapter
    ids: list[EncodedText]
    top_k: int | None
    future: asyncio.Future[list[dict[str, Any]]]
    loop: asyncio.AbstractEventLoop
    results: list[dict[str, Any] | None] = field(default_factory=list)
    remaining: int = 0
    failed: bool = False

    def __post_init__(self) -> None:
        self.results = [None] * len(self.ids)
        self.remaining = len(self.ids)


@dataclass
class _Item:
    job: _Job
    row: int
    enqueued: float

    @property
    def length(self) -> int:
        return len(self.job.ids[self.row])


class MicroBatcher:
    """A worker thread that turns queued texts into batched forward passes on an :class:`AdapterPool`."""

    def __init__(self, pool: AdapterPool, *, max_batch_size: int = 64, max_wait_ms: float = 5.0,
                 max_queue_texts: int = 4096, max_batch_tokens: int = 16384, batching: str = "dynamic",
                 pass_overhead_tokens: int = 64, on_batch: Callable[[int, float], None] | None = None) -> None:
        if batching not in BATCHING:
            raise ConfigError(f"unknown batching '{batching}'", f"use one of: {', '.join(BATCHING)}")
        self.pool = pool
        self.max_batch_size, self.max_wait_s = max_batch_size, max_wait_ms / 1000.0
        self.max_queue_texts, self.max_batch_tokens, self.batching = max_queue_texts, max_batch_tokens, batching
        self.pass_overhead_tokens = pass_overhead_tokens
        self.on_batch = on_batch
        self._pending: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def queued_texts(self) -> int:
        return len(self._pending)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="skewtune-serve-batcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Refuse new work, finish every queued text, then end the worker."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def submit(self, served: ServedAdapter, ids: list[EncodedText], top_k: int | None = None
               ) -> asyncio.Future[list[dict[str, Any]]]:
        """Queue one request's texts; the future resolves to their predictions in input order."""
        loop = asyncio.get_running_loop()
        job = _Job(served, ids, top_k, loop.create_future(), loop)
        now = time.monotonic()
        with self._cond:
            if self._stopping:
                raise Overloaded("the server is shutting down", "retry against another replica or after restart")
            if len(self._pending) + len(ids) > self.max_queue_texts:
                raise Overloaded(f"the queue is full ({len(self._pending)} texts waiting)",
                                 "retry after the Retry-After seconds, or send fewer texts at once")
            self._pending.extend(_Item(job, row, now) for row in range(len(ids)))
            self._cond.notify()
        return job.future

    # ------------------------------------------------------------------------------------------------ worker
    def _run(self) -> None:
        while True:
            items = self._take()
            if items is None:
                return
            started = time.perf_counter()
            for chunk in self._chunks(items):
                self._forward(chunk)
            if self.on_batch is not None:
                self.on_batch(len(items), time.perf_counter() - started)

    def _take(self) -> list[_Item] | None:
        with self._cond:
            while not self._pending:
                if self._stopping:
                    return None
                self._cond.wait()
            first = self._pending[0]
            if self.batching == "none":  # one request at a time, alone
                taken = [item for item in self._pending if item.job is first.job]
            else:
                deadline = first.enqueued + self.max_wait_s
                while len(self._pending) < self.max_batch_size and not self._stopping:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                lane = first.job.served.lane
                taken = []
                for item in self._pending:
                    if item.job.served.lane == lane:
                        taken.append(item)
                        if len(taken) == self.max_batch_size:
                            break
            chosen = {id(item) for item in taken}
            self._pending = deque(item for item in self._pending if id(item) not in chosen)
            return taken

    def _chunks(self, items: list[_Item]) -> list[list[_Item]]:
        """Length grouping: sorted by length, cut into forward passes minimising padded tokens plus a fixed cost.

        On a compute-bound device a pass costs about ``c + rows × longest`` token-times (``c`` =
        ``pass_overhead_tokens``, the per-pass overhead in tokens); dynamic programming over the sorted lengths finds
        the cuts of least total cost with rows ≤ ``max_batch_size`` and ``rows × longest ≤ max_batch_tokens``:
        ``best[j] = min_i best[i] + c + (j - i) · len[j - 1]``.
        """
        ordered = sorted(items, key=lambda item: item.length)
        lengths = [max(1, item.length) for item in ordered]
        n = len(ordered)
        best, cut = [0.0] + [float("inf")] * n, [0] * (n + 1)
        for j in range(1, n + 1):
            for i in range(j - 1, -1, -1):
                rows = j - i
                if rows > self.max_batch_size or (rows > 1 and rows * lengths[j - 1] > self.max_batch_tokens):
                    break
                cost = best[i] + self.pass_overhead_tokens + rows * lengths[j - 1]
                if cost < best[j]:
                    best[j], cut[j] = cost, i
        chunks: list[list[_Item]] = []
        j = n
        while j > 0:
            chunks.append(ordered[cut[j]:j])
            j = cut[j]
        return chunks[::-1]

    def _forward(self, chunk: list[_Item]) -> None:
        live = [item for item in chunk if not item.job.failed]
        if not live:
            return
        try:
            records = self.pool.predict_rows([(item.job.served, item.job.ids[item.row]) for item in live],
                                             [item.job.top_k for item in live])
        except KeyError:
            gone = AdapterGone(f"adapter '{live[0].job.served.name}' was unloaded while the request waited",
                               "load it again with POST /v1/adapters")
            for item in live:
                self._fail(item.job, gone)
            return
        except Exception as exc:  # one failing batch fails its requests, never the worker
            for item in live:
                self._fail(item.job, exc)
            return
        for item, record in zip(live, records):
            job = item.job
            job.results[item.row] = record
            job.remaining -= 1
            if job.remaining == 0:
                job.loop.call_soon_threadsafe(_resolve, job.future, job.results)

    @staticmethod
    def _fail(job: _Job, exc: BaseException) -> None:
        if not job.failed:
            job.failed = True
            job.loop.call_soon_threadsafe(_reject, job.future, exc)


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _reject(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
