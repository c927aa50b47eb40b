"""Console set-up for skewtune's entry points (the CLI and the recipes): skewtune's own log lines on stderr, the
libraries' chatter off. Library code never calls this: it would change the caller's process (environment,
warnings filters, log levels)."""

from __future__ import annotations

import logging
import os
import sys
import warnings

logger = logging.getLogger("skewtune")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (notebooks and test captures swap it; a stream bound
    once would go stale and every later message would become a "--- Logging error ---" traceback)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def quiet_libraries() -> None:
    """Keep the console to skewtune's own progress and summary."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    warnings.filterwarnings("ignore", message=".*MatMul8bitLt.*")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")
    # lazy: the CLI's --help must not import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    for name in ("bitsandbytes", "kernels", "accelerate", "peft"):  # kernels: bitsandbytes' CPU kernel lookup
        logging.getLogger(name).setLevel(logging.ERROR)
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
