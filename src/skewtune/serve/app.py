"""The HTTP API of ``skewtune serve``: a Starlette (ASGI) app over an :class:`AdapterPool` and a
:class:`MicroBatcher`.

Routes::

    POST   /v1/predict            {"adapter", "texts" | "text", "top_k"?} → {"adapter", "predictions", "truncated"}
    GET    /v1/adapters           the loaded adapters
    POST   /v1/adapters           {"ref", "hub"?, "name"?} pull from a configured hub (verified) and load
    DELETE /v1/adapters/{name}    unload
    GET    /healthz  /readyz  /metrics (Prometheus text)

``predictions`` are the records ``skewtune predict`` writes (``label``, ``probabilities``), in input order;
``truncated`` lists the texts cut to the adapter's ``max_length`` tokens. Every refusal is one JSON line
``{"error": "error: <problem> (fix: <hint>)"}``: 400 malformed JSON or fields, 401 missing/wrong API key, 404 unknown
adapter or route, 409 name taken, 413 body or text too large, 422 adapter refused by its checks, 503 (with
``Retry-After``) queue full or shutting down. The server keeps serving after each.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from skewtune.errors import AdapterError, ConfigError, HubError, SkewtuneError
from skewtune.serve.batcher import AdapterGone, MicroBatcher, Overloaded

if TYPE_CHECKING:
    from skewtune.serve.pool import AdapterPool

RETRY_AFTER_S = 1


@dataclass
class ServeSettings:
    """Limits and options of one server (the ``skewtune serve`` flags)."""

    max_batch_size: int = 64
    max_wait_ms: float = 5.0
    max_queue_texts: int = 4096
    max_batch_tokens: int = 16384
    max_texts_per_request: int = 256
    max_text_chars: int = 20000
    max_body_bytes: int = 2_000_000
    batching: str = "dynamic"
    api_key: str | None = None
    hubs: tuple[str, ...] = ()  # hubs POST /v1/adapters may pull from (the first is the default); copies go to
    # the hub cache (skewtune.hub.cache_dir), verified on every pull
    on_ready: Callable[[], None] | None = field(default=None, repr=False)


class RequestError(SkewtuneError):
    """A request the server refuses; ``status`` is its HTTP status."""

    def __init__(self, status: int, message: str, hint: str = "") -> None:
        super().__init__(message, hint)
        self.status = status


def error_response(status: int, error: SkewtuneError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error.one_line()}, status_code=status, headers=headers)


class Metrics:
    """Prometheus series of one server (own registry: two apps in one process never mix)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("skewtune_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=self.registry)
        self.latency = Histogram("skewtune_request_seconds", "latency of /v1/predict", registry=self.registry,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.batch = Histogram("skewtune_batch_texts", "texts per batch taken by the worker", registry=self.registry,
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.batch_seconds = Histogram("skewtune_batch_seconds", "worker time per batch", registry=self.registry,
                                       buckets=(.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5))
        self.texts = Counter("skewtune_texts", "texts predicted per adapter", ["adapter"], registry=self.registry)
        self.queued = Gauge("skewtune_queue_texts", "texts waiting for the worker", registry=self.registry)
        self.adapters = Gauge("skewtune_adapters_loaded", "adapters loaded", registry=self.registry)


def create_app(pool: AdapterPool, settings: ServeSettings | None = None) -> Starlette:
    """The ASGI app; the batcher starts with the app's lifespan and drains its queue on shutdown."""
    settings = settings or ServeSettings()
    metrics = Metrics()
    batcher = MicroBatcher(pool, max_batch_size=settings.max_batch_size, max_wait_ms=settings.max_wait_ms,
                           max_queue_texts=settings.max_queue_texts, max_batch_tokens=settings.max_batch_tokens,
                           batching=settings.batching,
                           on_batch=lambda n, s: (metrics.batch.observe(n), metrics.batch_seconds.observe(s)))
    state = {"ready": False}

    @asynccontextmanager
    async def lifespan(app: Starlette):  # noqa: ANN202
        batcher.start()
        metrics.adapters.set(len(pool.adapters))
        state["ready"] = True
        if settings.on_ready is not None:
            settings.on_ready()
        try:
            yield
        finally:
            state["ready"] = False
            await run_in_threadpool(batcher.stop)

    def guarded(route: str, handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                if settings.api_key and route not in ("healthz", "readyz"):
                    check_api_key(request, settings.api_key)
                response = await handler(request)
            except RequestError as exc:
                response = error_response(exc.status, exc)
            except Overloaded as exc:
                response = error_response(503, exc, {"Retry-After": str(RETRY_AFTER_S)})
            except AdapterGone as exc:
                response = error_response(404, exc)
            except HubError as exc:
                response = error_response(404 if "not found" in exc.message or "no adapter" in exc.message
                                          else 422, exc)
            except (AdapterError, ConfigError) as exc:
                response = error_response(422, exc)
            except SkewtuneError as exc:
                response = error_response(400, exc)
            except ClientDisconnect:
                response = Response(status_code=499)
            except Exception as exc:  # the server keeps serving; the client gets one line
                first = (str(exc).strip().splitlines() or [""])[0][:300]
                response = error_response(500, SkewtuneError(f"internal error: {type(exc).__name__}: {first}",
                                                             "retry; report it if it persists"))
            metrics.requests.labels(route, str(response.status_code)).inc()
            return response

        return endpoint

    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        body = await read_json(request, settings.max_body_bytes)
        name, texts, top_k = parse_predict(body, settings)
        served = pool.adapters.get(name)
        if served is None:
            raise RequestError(404, f"adapter '{name[:100]}' is not loaded",
                               "GET /v1/adapters lists the loaded ones; POST /v1/adapters loads one")
        ids, truncated = pool.encode(served, texts)
        future = batcher.submit(served, ids, top_k)
        metrics.queued.set(batcher.queued_texts)
        predictions = await future
        metrics.texts.labels(name).inc(len(texts))
        metrics.latency.observe(time.perf_counter() - started)
        return JSONResponse({"adapter": name, "predictions": predictions, "truncated": truncated})

    async def list_adapters(request: Request) -> Response:
        return JSONResponse({"adapters": [a.describe() for a in list(pool.adapters.values())]})

    async def load(request: Request) -> Response:
        body = await read_json(request, settings.max_body_bytes)
        ref, hub, name = parse_load(body, settings)
        if name is not None and name in pool.adapters:
            raise RequestError(409, f"an adapter named '{name}' is already loaded", "DELETE it first or pick another name")
        from skewtune.hub import pull

        folder = await run_in_threadpool(pull, ref, hub)
        try:
            served = await run_in_threadpool(pool.add, folder, name)
        except ConfigError as exc:
            if "already loaded" in exc.message:
                raise RequestError(409, exc.message, exc.hint) from exc
            raise
        metrics.adapters.set(len(pool.adapters))
        return JSONResponse({"loaded": served.describe()}, status_code=201)

    async def unload(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            await run_in_threadpool(pool.remove, name)
        except KeyError:
            raise RequestError(404, f"adapter '{name[:100]}' is not loaded", "GET /v1/adapters lists them") from None
        metrics.adapters.set(len(pool.adapters))
        return JSONResponse({"unloaded": name})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if state["ready"] and batcher.running and pool.adapters:
            return JSONResponse({"status": "ready", "adapters": len(pool.adapters)})
        why = "no adapter is loaded" if state["ready"] and batcher.running else "the server is starting or stopping"
        return error_response(503, SkewtuneError(f"not ready: {why}", "wait, or load an adapter"),
                              {"Retry-After": str(RETRY_AFTER_S)})

    async def metrics_text(request: Request) -> Response:
        metrics.queued.set(batcher.queued_texts)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        what = {404: "no such route", 405: "method not allowed"}.get(status, "request refused")
        return error_response(status, SkewtuneError(f"{what}: {request.method} {request.url.path[:200]}",
                                                    "see the API in 'skewtune serve --help'"))

    routes = [
        Route("/v1/predict", guarded("predict", predict), methods=["POST"]),
        Route("/v1/adapters", guarded("adapters", list_adapters), methods=["GET"]),
        Route("/v1/adapters", guarded("load", load), methods=["POST"]),
        Route("/v1/adapters/{name}", guarded("unload", unload), methods=["DELETE"]),
        Route("/healthz", guarded("healthz", healthz), methods=["GET"]),
        Route("/readyz", guarded("readyz", readyz), methods=["GET"]),
        Route("/metrics", guarded("metrics", metrics_text), methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
    app.state.pool, app.state.batcher, app.state.metrics = pool, batcher, metrics
    return app


def check_api_key(request: Request, api_key: str) -> None:
    header = request.headers.get("authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else ""
    if not hmac.compare_digest(given.encode(), api_key.encode()):
        raise RequestError(401, "missing or wrong API key", "send the header 'Authorization: Bearer <key>'")


async def read_json(request: Request, limit: int) -> Any:
    """The request body as JSON: 413 past ``limit`` bytes (checked while reading), 400 when it is not JSON."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"request body of {int(declared)} bytes exceeds the limit of {limit}",
                           "send fewer or shorter texts per request")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"request body exceeds the limit of {limit} bytes",
                               "send fewer or shorter texts per request")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise RequestError(400, f"the request body is not valid JSON{where}",
                           'send e.g. {"adapter": "NAME", "texts": ["..."]}') from None
    except RecursionError:
        raise RequestError(400, "the request body is nested too deeply", "send a flat JSON object") from None


def _object(body: Any, allowed: set[str], example: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise RequestError(400, f"the request body must be a JSON object, got {type(body).__name__}", f"send {example}")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise RequestError(400, f"unknown field(s): {', '.join(repr(k[:50]) for k in unknown[:5])}",
                           f"allowed fields: {', '.join(sorted(allowed))}")
    return body


def parse_predict(body: Any, settings: ServeSettings) -> tuple[str, list[str], int | None]:
    """``(adapter, texts, top_k)`` of a /v1/predict body, or a RequestError naming the first problem."""
    example = '{"adapter": "NAME", "texts": ["..."]}'
    body = _object(body, {"adapter", "texts", "text", "top_k"}, example)
    name = body.get("adapter")
    if not isinstance(name, str) or not name:
        raise RequestError(400, "field 'adapter' (the adapter's name) is missing or not a string", f"send {example}")
    if ("texts" in body) == ("text" in body):
        raise RequestError(400, "send exactly one of 'texts' (a list) or 'text' (a string)", f"send {example}")
    texts = [body["text"]] if "text" in body else body["texts"]
    if not isinstance(texts, list) or not texts:
        raise RequestError(400, "field 'texts' must be a non-empty list of strings", f"send {example}")
    if len(texts) > settings.max_texts_per_request:
        raise RequestError(413, f"{len(texts)} texts in one request; the limit is {settings.max_texts_per_request}",
                           "split them over several requests")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise RequestError(400, f"text {i} is a {type(text).__name__}, not a string", "send texts as strings")
        if not text.strip():
            raise RequestError(400, f"text {i} is empty", "remove empty texts: every text gets one prediction")
        if len(text) > settings.max_text_chars:
            raise RequestError(413, f"text {i} has {len(text)} characters; the limit is {settings.max_text_chars}",
                               "shorten it (texts longer than the adapter's max_length tokens are truncated anyway)")
    top_k = body.get("top_k")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise RequestError(400, f"field 'top_k' must be a whole number ≥ 1, got {json.dumps(top_k)[:40]}",
                           "omit it for every label's probability")
    return name, texts, top_k


def parse_load(body: Any, settings: ServeSettings) -> tuple[str, str, str | None]:
    """``(ref, hub, name)`` of a POST /v1/adapters body; the hub must be one the server was started with."""
    from skewtune.hub import parse_ref

    example = '{"ref": "NAME[@vN]", "hub": "HUB"}'
    body = _object(body, {"ref", "hub", "name"}, example)
    ref, hub, name = body.get("ref"), body.get("hub"), body.get("name")
    if not isinstance(ref, str) or not ref:
        raise RequestError(400, "field 'ref' (name or name@vN on the hub) is missing or not a string", f"send {example}")
    try:
        parse_ref(ref)
    except SkewtuneError as exc:  # a malformed name is a bad request, not a refused adapter
        raise RequestError(400, exc.message, exc.hint) from None
    if not settings.hubs:
        raise RequestError(403, "this server loads no adapters at run time",
                           "start it with --hub URL to allow POST /v1/adapters from that hub")
    if hub is None:
        hub = settings.hubs[0]
    if not isinstance(hub, str) or hub not in settings.hubs:
        raise RequestError(403, f"hub {str(hub)[:100]!r} is not one this server may pull from",
                           f"use one of: {', '.join(settings.hubs)} (set with --hub)")
    if name is not None and not isinstance(name, str):
        raise RequestError(400, "field 'name' must be a string", "omit it to use the adapter's own name")
    return ref, hub, name


async def serve_forever(app: Starlette, host: str, port: int, *, graceful_s: float = 30.0,
                        sock: Any = None) -> None:  # pragma: no cover - exercised by the subprocess tests
    """Run ``app`` on uvicorn until SIGINT/SIGTERM; in-flight requests finish (up to ``graceful_s``)."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=graceful_s, lifespan="on")
    server = uvicorn.Server(config)
    await server.serve(sockets=[sock] if sock is not None else None)
