"""``benchmarks/harness.py``: thread policy, machine record, child processes, results files."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def harness() -> ModuleType:
    if str(REPO / "benchmarks") not in sys.path:  # as a benchmark script sees it
        sys.path.insert(0, str(REPO / "benchmarks"))
    import harness

    return harness


def test_threads_and_paths(harness: ModuleType) -> None:
    assert harness.choose_threads("3") == 3 and harness.choose_threads(0) == 1
    assert 1 <= harness.choose_threads("auto") <= harness.cores()
    assert harness.results_path("scaling") == REPO / "benchmarks" / "results" / "scaling"
    assert harness.results_path("scaling", quick=True) == REPO / "outputs" / "benchmarks" / "scaling"


def test_write_results_records_the_machine(harness: ModuleType, tmp_path: Path) -> None:
    paths = harness.write_results(tmp_path / "sub" / "bench.v2", {"rows": [1]}, "| a |\n")
    assert [p.name for p in paths] == ["bench.v2.json", "bench.v2.md"]
    result = json.loads(paths[0].read_text())
    machine = result["machine"]
    assert machine["cpu"] and machine["cpu_count"] >= 1 and "torch" in machine and "python" in machine
    assert paths[1].read_text() == f"| a |\n\nMachine: {machine['cpu']}, {machine['cpu_count']} cores.\n"
    assert paths[0].stat().st_mode & 0o777 == 0o644
    kept = harness.write_results(tmp_path / "own", {"machine": {"cpu": "X", "cpu_count": 2}})
    assert json.loads(kept[0].read_text())["machine"] == {"cpu": "X", "cpu_count": 2} and len(kept) == 1


def test_run_child(harness: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "child.py"
    script.write_text("import json, sys\nprint('chatter')\nif sys.argv[1] == 'fail':\n    sys.exit('boom')\n"
                      "print(json.dumps({'arg': sys.argv[1]}))\n")
    assert harness.run_child(script, "ok") == {"arg": "ok"}
    with pytest.raises(SystemExit, match="bad run failed"):
        harness.run_child(script, "fail", what="bad run")
    assert "boom" in capsys.readouterr().err
