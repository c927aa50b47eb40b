"""Console set-up for skewtune's entry points (the CLI and the recipes): skewtune's own log lines on stderr, the
libraries' chatter off. Library code never calls this: it would change the caller's process (environment,
warnings filters, log levels)."""

from __future__ import annotations

import logging
import os
import signal
import struct
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

try:  # POSIX only: the unread bytes of the stderr pipe (end_accelerate_launcher)
    import fcntl
    import termios
except ImportError:  # pragma: no cover - Windows
    fcntl = termios = None

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
    # datasets' bars (conversion to Arrow, map) off: skewtune logs one line per large step instead
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    if "datasets" in sys.modules:  # imported already (read its setting at import): switch the bars off directly
        sys.modules["datasets"].disable_progress_bars()
    warnings.filterwarnings("ignore", message=".*MatMul8bitLt.*")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")
    # lazy: the CLI's --help must not import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    for name in ("bitsandbytes", "kernels", "accelerate", "peft"):  # kernels: bitsandbytes' CPU kernel lookup
        logging.getLogger(name).setLevel(logging.ERROR)
    # datasets logs a file it cannot parse at ERROR before raising; skewtune reports it in one line of its own
    logging.getLogger("datasets").setLevel(logging.CRITICAL)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    # the entry point owns its console: skewtune's own lines at INFO, whatever an earlier caller in this process set
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.disabled = False


def launched_by_accelerate(pid: int | None = None) -> bool:
    """Is ``pid`` (default: the parent process) ``accelerate launch``?"""
    try:
        argv = Path(f"/proc/{os.getppid() if pid is None else pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    names = [Path(a.decode(errors="replace")).name for a in argv if a]
    # `accelerate launch …` (console script) or `python -m accelerate.commands.launch …`
    return "accelerate.commands.launch" in names or ("launch" in names and any(n.startswith("accelerate") for n in names))


def end_accelerate_launcher(exit_code: int | None) -> bool:
    """After a one-line error, end the ``accelerate launch`` parent without its ``CalledProcessError`` traceback.

    accelerate's launcher re-raises any non-zero exit of the script as ``subprocess.CalledProcessError`` (about 20
    lines ending the output) unless ``-q``; on SIGTERM it drains the script's stderr and exits 143 without one.
    So, after the error line is written: SIGTERM to the launcher. ``accelerate launch`` then exits 143 (and
    ``python recipes/…`` / ``skewtune`` keep exiting 2). Only for errors (not 0, not 130: accelerate already
    ends an interrupt quietly) and only when the parent is ``accelerate launch``. Entry points only.
    """
    if exit_code in (0, None, 130) or not any(k.startswith("ACCELERATE_") for k in os.environ) or not launched_by_accelerate():
        return False
    sys.stdout.flush()
    sys.stderr.flush()
    # the launcher copies our stderr pipe as it arrives: let it take the error line before the signal, which would
    # otherwise drop a chunk read but not yet written
    deadline = time.monotonic() + 3.0
    while _unread_bytes(sys.stderr) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    os.kill(os.getppid(), signal.SIGTERM)
    return True


def _unread_bytes(stream) -> int:
    """Bytes written to ``stream`` (a pipe) that its reader has not taken yet; 0 when it cannot tell."""
    if fcntl is None:
        return 0
    try:
        return struct.unpack("i", fcntl.ioctl(stream.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
    except (OSError, ValueError, AttributeError):
        return 0


def recipe_exit_code(main: Callable[[], int | None]) -> int:
    """Run a recipe's ``main`` and return its exit status for ``sys.exit``: a bad flag's ``SystemExit`` (the
    parser's one line, status 2) becomes that status, and under ``accelerate launch`` the launcher is ended after the
    one error line (:func:`end_accelerate_launcher`). For a recipe's ``__main__`` block only."""
    try:
        code = main()
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 2)
    code = int(code or 0)
    end_accelerate_launcher(code)
    return code
