"""Serving: many adapters on one backbone per base model behind an HTTP API (``skewtune serve``).

* :class:`AdapterPool` (:mod:`skewtune.serve.pool`) — adapters sharing backbones, mixed-adapter forward passes;
* :class:`MicroBatcher` (:mod:`skewtune.serve.batcher`) — dynamic micro-batching in one worker thread;
* :func:`create_app` (:mod:`skewtune.serve.app`) — the Starlette app (routes, limits, metrics);
* :class:`Client` (:mod:`skewtune.serve.client`) — a Python client; ``skewtune predict --server URL`` uses it.

The names load on first use (PEP 562): the client must not import torch.
"""

from __future__ import annotations

from skewtune.utils.lazy import lazy_exports

_LAZY = {"AdapterPool": "pool", "MicroBatcher": "batcher", "create_app": "app", "ServeSettings": "app",
         "Client": "client", "ServeError": "client"}

__all__ = sorted(_LAZY)


__getattr__ = lazy_exports(__name__, _LAZY)
