"""Adapter hub: share, find and pull verified adapters on a local folder, any fsspec URL or the HF Hub.

A hub is addressed by URL: a local folder or ``file://``, any fsspec URL (``memory://``, ``s3://``, ``gs://``,
...), or ``hf://<user or org>``. Layout: ``index.json`` at the root (see :mod:`skewtune.hub.index`) and
``<name>/v<N>/<adapter files>``; concurrency and the Hugging Face layout are described in
:mod:`skewtune.hub.backends`.

    >>> ref = push("runs/lora", "/shared/hub", "tweets-sentiment-minilm-lora")   # 'tweets-...@v1'
    >>> folder = pull("tweets-sentiment-minilm-lora@v1", "/shared/hub")            # verified copy
    >>> check_base_compatible(folder, "minilm")                                     # True or AdapterError
"""

from skewtune.hub.api import (
    cache_dir,
    cache_root,
    check_base_compatible,
    check_shareable,
    default_name,
    info,
    ls,
    pull,
    push,
    search,
    strip_local_paths,
    verify,
)
from skewtune.hub.backends import open_hub
from skewtune.hub.index import INDEX_FORMAT
from skewtune.hub.names import parse_ref, validate_name

__all__ = [
    "INDEX_FORMAT",
    "cache_dir",
    "cache_root",
    "check_base_compatible",
    "check_shareable",
    "default_name",
    "info",
    "ls",
    "open_hub",
    "parse_ref",
    "pull",
    "push",
    "search",
    "strip_local_paths",
    "validate_name",
    "verify",
]
