"""Atomic outputs get the permissions a plain open()/mkdir() would give (mkstemp/mkdtemp make 0600/0700)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from skewtune.utils.io import atomic_dir, atomic_write_json


def test_atomic_outputs_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        file = atomic_write_json(tmp_path / "metrics.json", {"a": 1})
        with atomic_dir(tmp_path / "adapter") as folder:
            (folder / "x").write_text("1")
        os.umask(0o077)
        private = atomic_write_json(tmp_path / "private.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(file.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "adapter").stat().st_mode) == 0o755
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert not list(tmp_path.glob(".*tmp"))
