"""``skewtune serve``: many adapters on one backbone per base model behind an HTTP API (see skewtune.serve)."""

from __future__ import annotations

import argparse
import os

from skewtune.cli.main import positive_int

API = """HTTP API (JSON):
  POST   /v1/predict          {"adapter": NAME, "texts": [...] | "text": "...", "top_k"?: K}
                              -> {"adapter", "predictions": [{"label", "probabilities"}], "truncated": [rows]}
  GET    /v1/adapters         the loaded adapters
  POST   /v1/adapters         {"ref": "NAME[@vN]", "hub"?: HUB, "name"?: NAME}  pull (verified) and load
  DELETE /v1/adapters/NAME    unload
  GET    /healthz, /readyz, /metrics (Prometheus text)
Refusals are one line {"error": "error: ... (fix: ...)"}: 400 bad JSON or fields, 401 API key, 404 unknown adapter,
413 too large, 422 adapter refused by its checks, 503 + Retry-After when the queue is full."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve adapters over HTTP (one backbone per base, mixed-adapter batches)",
        description="Serve saved adapters over HTTP: every LoRA adapter of one base model shares one (quantized) "
                    "backbone, and requests for different adapters that arrive together run in one forward pass "
                    "(dynamic micro-batching). Each adapter passes the checks of 'skewtune predict' (sha256, "
                    "safetensors, base fingerprint) before it loads. Prints one 'ready on URL' line on stdout once "
                    "it accepts requests; SIGINT/SIGTERM finish the requests in flight, then exit 0.",
        epilog=API)
    parser.add_argument("--adapter", action="append", default=[], metavar="[NAME=]FOLDER",
                        help="an adapter folder to serve, under its manifest name or NAME (repeat the flag)")
    parser.add_argument("--hub", action="append", default=[], metavar="URL",
                        help="a hub POST /v1/adapters may pull from (repeat; the first is the default); pulled "
                             "copies are verified into the hub cache ($SKEWTUNE_CACHE); without one, adapters load "
                             "only at start")
    parser.add_argument("--pull", action="append", default=[], metavar="REF",
                        help="pull NAME[@vN] from the first --hub (verified) and serve it (repeat)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind; 0.0.0.0 exposes the server to the network (then set --api_key)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port; 0 picks a free one (printed when ready)")
    parser.add_argument("--api_key", default=None,
                        help="require 'Authorization: Bearer KEY' on every route but /healthz and /readyz "
                             "(default: the SKEWTUNE_API_KEY environment variable, else none)")
    parser.add_argument("--max_batch_size", type=positive_int, default=64, help="texts per forward pass at most")
    parser.add_argument("--max_wait_ms", type=float, default=5.0,
                        help="how long the oldest queued text waits for a batch to fill")
    parser.add_argument("--max_batch_tokens", type=positive_int, default=16384,
                        help="padded tokens per forward pass at most (texts × longest); longer batches are split by "
                             "length")
    parser.add_argument("--max_queue_texts", type=positive_int, default=4096,
                        help="texts waiting at most; beyond it requests get 503 with Retry-After")
    parser.add_argument("--max_texts_per_request", type=positive_int, default=256, help="texts per request at most (413)")
    parser.add_argument("--max_text_chars", type=positive_int, default=20000,
                        help="characters per text at most (413); texts over the adapter's max_length tokens are "
                             "truncated and listed in the response's 'truncated'")
    parser.add_argument("--max_body_bytes", type=positive_int, default=2_000_000, help="request body size at most (413)")
    parser.add_argument("--engine", choices=["shared", "per_adapter", "merged"], default="shared",
                        help="shared: one backbone per base model, mixed-adapter batches; per_adapter: one model "
                             "per adapter, as 'skewtune predict' loads it (more memory); merged: one dense model per "
                             "adapter with the adapter folded in, as 'predict --merge' (for one hot adapter)")
    parser.add_argument("--batching", choices=["dynamic", "none"], default="dynamic",
                        help="dynamic: texts of concurrent requests share forward passes; none: each request alone")
    parser.add_argument("--quant", choices=["8bit", "4bit", "none"], default=None,
                        help="load the backbone's weights as LLM.int8 (8bit), NF4 (4bit) or fp32 (none) "
                             "(choices: 8bit, 4bit, none; default: as each adapter was trained)")
    parser.add_argument("--dtype", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                        help="compute precision (auto: fp32 on quantized backbones, as the adapters were evaluated; "
                             "with --engine merged, bf16 where the hardware multiplies it natively, as predict --merge)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch threads for the forward passes (default: torch's choice, one per core)")
    parser.add_argument("--force_base", action="store_true",
                        help="load adapters even when the backbone's fingerprint differs from the one they record")
    parser.add_argument("--graceful_s", type=float, default=30.0,
                        help="on SIGTERM, seconds the requests in flight may take to finish")
    parser.set_defaults(func=_run)


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """A warning line when the server listens beyond this machine (not a loopback address) with no API key."""
    import ipaddress

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        loopback = False
    if loopback or api_key:
        return None
    return (f"warning: serving on {host} without --api_key: anyone who can reach this port can predict with, load "
            "and unload adapters (set --api_key or SKEWTUNE_API_KEY, or bind 127.0.0.1)")


def _run(args: argparse.Namespace) -> int:
    import asyncio
    import signal
    import socket
    import sys
    from pathlib import Path

    from skewtune.errors import ConfigError

    if not args.adapter and not args.pull:
        raise ConfigError("no adapter to serve", "pass --adapter FOLDER (repeat it) or --hub URL --pull NAME")
    if args.pull and not args.hub:
        raise ConfigError("--pull needs a --hub to pull from", "add --hub URL (e.g. --hub adapters)")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be 0-65535, got {args.port}", "pass e.g. --port 8000")
    if args.max_wait_ms < 0 or args.graceful_s < 0:
        raise ConfigError("--max_wait_ms and --graceful_s must be ≥ 0", "pass e.g. --max_wait_ms 5")
    folders = []
    for spec in args.adapter:
        name, sep, folder = spec.partition("=")
        folder = folder if sep else name
        folders.append((name if sep else None, folder))
        if not Path(folder).is_dir():
            raise ConfigError(f"--adapter {folder} is not a folder", "pass an adapter folder saved by skewtune")
    try:
        # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY on accepted connections only for sockets whose
        # proto is IPPROTO_TCP (asyncio.base_events._set_nodelay); with proto 0 every keep-alive response waits
        # ~40 ms for a delayed ACK (uvicorn writes headers and body separately)
        sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM,
                             socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((args.host, args.port))
        sock.listen(2048)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
                          "choose another --port (0 picks a free one) or stop what holds it") from None
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from skewtune.hub import pull
    from skewtune.serve.app import ServeSettings, create_app, serve_forever
    from skewtune.serve.pool import AdapterPool

    api_key = args.api_key or os.environ.get("SKEWTUNE_API_KEY") or None
    if (line := exposure_warning(args.host, api_key)) is not None:
        print(line, file=sys.stderr, flush=True)
    pool = AdapterPool(engine=args.engine, quant=args.quant, dtype=args.dtype, force_base=args.force_base)
    for name, folder in folders:
        pool.add(folder, name)
    for ref in args.pull:
        pool.add(pull(ref, args.hub[0]))
    host, port = sock.getsockname()[:2]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"

    def ready() -> None:
        print(f"skewtune serve: ready on {url} ({len(pool.adapters)} adapters)", flush=True)
        sys.stderr.flush()

    settings = ServeSettings(
        max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms, max_queue_texts=args.max_queue_texts,
        max_batch_tokens=args.max_batch_tokens, max_texts_per_request=args.max_texts_per_request,
        max_text_chars=args.max_text_chars, max_body_bytes=args.max_body_bytes, batching=args.batching,
        api_key=api_key, hubs=tuple(args.hub), on_ready=ready)
    # uvicorn handles SIGINT/SIGTERM while it serves (stop accepting, finish requests in flight), then re-raises
    # the signal to the handler found at start: a no-op one here, so a requested stop exits 0
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: None)
    asyncio.run(serve_forever(create_app(pool, settings), host, port, graceful_s=args.graceful_s, sock=sock))
    print("skewtune serve: stopped", flush=True)
    return 0
