"""A Python client for ``skewtune serve`` (httpx).

    >>> client = Client("http://127.0.0.1:8000")
    >>> client.predict("tweets-sentiment-minilm-lora", ["what a day!"])[0]["label"]
    'positive'

A refusal raises :class:`ServeError` carrying the server's one line and the HTTP status.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from skewtune.errors import SkewtuneError


class ServeError(SkewtuneError):
    """The server refused a request (``status``) or could not be reached (``status`` 0)."""

    def __init__(self, message: str, hint: str = "", status: int = 0) -> None:
        super().__init__(message, hint)
        self.status = status


class Client:
    """Calls a running ``skewtune serve``; ``chunk_size`` texts per request (the server's limit is 256 by default)."""

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 60.0, chunk_size: int = 128) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = url.rstrip("/")
        self.chunk_size = chunk_size
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServeError(f"cannot reach the server at {self.url}: {type(exc).__name__}: {exc}",
                             "start it with 'skewtune serve' or check the URL") from None
        if response.status_code >= 400:
            try:
                line = str(response.json().get("error", ""))
            except (ValueError, AttributeError):
                line = response.text[:300]
            problem, _, hint = line.removeprefix("error: ").rpartition(" (fix: ")
            if not problem:
                problem, hint = line or f"HTTP {response.status_code}", ""
            raise ServeError(f"server answered {response.status_code}: {problem}", hint.removesuffix(")"),
                             status=response.status_code)
        return response.json()

    def predict(self, adapter: str, texts: str | Sequence[str], *, top_k: int | None = None) -> list[dict[str, Any]]:
        """``{"label", "probabilities"}`` per text, in order (long lists go in chunks of ``chunk_size``)."""
        if isinstance(texts, str):
            texts = [texts]
        out: list[dict[str, Any]] = []
        for start in range(0, len(texts), self.chunk_size):
            body: dict[str, Any] = {"adapter": adapter, "texts": list(texts[start:start + self.chunk_size])}
            if top_k is not None:
                body["top_k"] = top_k
            out.extend(self._call("POST", "/v1/predict", json=body)["predictions"])
        return out

    def adapters(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/adapters")["adapters"]

    def load(self, ref: str, hub: str | None = None, name: str | None = None) -> dict[str, Any]:
        """Pull ``ref`` from ``hub`` (one the server was started with; default its first) and load it."""
        body = {"ref": ref, **({"hub": hub} if hub else {}), **({"name": name} if name else {})}
        return self._call("POST", "/v1/adapters", json=body)["loaded"]

    def unload(self, name: str) -> None:
        self._call("DELETE", f"/v1/adapters/{name}")

    def ready(self) -> bool:
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False
