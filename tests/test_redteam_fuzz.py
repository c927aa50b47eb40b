"""Fuzz (issue 23): randomly mutated manifests, configs and data files through the real CLI commands.

Each example copies real inputs into a fresh folder, mutates them, runs ``skewtune hub verify`` / ``predict`` /
``train`` in-process and checks the contract: the command succeeds (exit 0), or exits 2 with exactly one
``error: … (fix: …)`` line on stderr; never a traceback, never a write outside the command's output.

Examples are derandomized (the same ones on every run, so CI is reproducible); raise the count with
``SKEWTUNE_FUZZ_EXAMPLES=500 pytest tests/test_redteam_fuzz.py`` to search further.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skewtune.cli.main import main as cli_main
from skewtune.training.config import TrainConfig
from tests.conftest import make_texts, tiny_args
from tests.hostile_support import World, snapshot

EXAMPLES = int(os.environ.get("SKEWTUNE_FUZZ_EXAMPLES", "20"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)), max_leaves=8)


@contextlib.contextmanager
def case_folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="skewtune-fuzz-") as tmp:
        root = Path(tmp)
        old = {k: os.environ.get(k) for k in ("SKEWTUNE_CACHE", "SKEWTUNE_HUB")}
        os.environ["SKEWTUNE_CACHE"] = str(root / "cache")
        os.environ.pop("SKEWTUNE_HUB", None)
        try:
            yield root
        finally:
            for key, value in old.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli_main(argv)
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def check_outcome(code: int, err: str, argv: list[str]) -> None:
    assert "Traceback" not in err, (argv, err[-3000:])
    assert code in (0, 2), (code, argv, err[-3000:])
    if code == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error: ")]
        assert len(errors) == 1 and lines[-1] == errors[0], (argv, err[-3000:])
        assert "(fix: " in errors[0] and errors[0].endswith(")"), errors[0]


def changed_outside(before: dict[str, tuple], after: dict[str, tuple], allowed: list[Path]) -> list[str]:
    def inside(path: str) -> bool:
        return any(path == str(a) or path.startswith(str(a) + os.sep) for a in allowed)

    keys = set(before) | set(after)
    return sorted(k for k in keys if before.get(k) != after.get(k) and not inside(k)
                  and not any(str(a).startswith(k + os.sep) for a in allowed))  # a parent of an output gains it


def strict_json(line: str) -> object:
    def refuse(constant: str) -> object:
        raise ValueError(f"non-standard JSON constant {constant}")
    return json.loads(line, parse_constant=refuse)


# ------------------------------------------------------------------------------------------------ manifests

MANIFEST_KEYS = ["id2label", "label2id", "base_fingerprint", "decision", "training", "metrics", "files", "backbone",
                 "task", "tasks", "adapter_type", "name", "format_version", "quant", "max_length", "num_labels"]


@st.composite
def manifest_mutations(draw: st.DrawFn) -> dict[str, object]:
    kind = draw(st.sampled_from(["set", "set", "delete", "nested", "bytes"]))
    return {"kind": kind, "key": draw(st.sampled_from(MANIFEST_KEYS)), "value": draw(JSON_VALUES),
            "position": draw(st.floats(0, 1)), "byte": draw(st.integers(0, 255)),
            "rehash": draw(st.booleans())}


def mutate_manifest(folder: Path, mutation: dict[str, object]) -> None:
    from skewtune.adapters.io import read_manifest, write_manifest

    path = folder / "skewtune.json"
    raw = path.read_bytes()
    if mutation["kind"] == "bytes":
        at = int(float(mutation["position"]) * (len(raw) - 1))
        path.write_bytes(raw[:at] + bytes([int(mutation["byte"])]) + raw[at + 1:])
        return
    try:
        manifest = json.loads(raw)
    except ValueError:  # an earlier byte mutation broke the JSON: keep it broken
        return
    if not isinstance(manifest, dict):
        return
    key = str(mutation["key"])
    if mutation["kind"] == "delete":
        manifest.pop(key, None)
    elif mutation["kind"] == "nested" and isinstance(manifest.get(key), dict) and manifest[key]:
        inner = sorted(manifest[key])[int(float(mutation["position"]) * (len(manifest[key]) - 1))]
        manifest[key][inner] = mutation["value"]
    else:
        manifest[key] = mutation["value"]
    path.write_text(json.dumps(manifest), encoding="utf-8")
    if mutation["rehash"]:
        with contextlib.suppress(Exception):  # the mutation may make the manifest unreadable: that is the point
            write_manifest(folder, read_manifest(folder))


@FUZZ
@given(mutations=st.lists(manifest_mutations(), min_size=1, max_size=3))
def test_mutated_manifests_verify_and_predict(world: World, mutations: list[dict[str, object]]) -> None:
    with case_folder() as root:
        adapter = shutil.copytree(world.adapter, root / "adapter")
        for mutation in mutations:
            mutate_manifest(adapter, mutation)
        (root / "in.txt").write_text("a fine day\nthe worst film\n", encoding="utf-8")
        out = root / "out"
        before = {**snapshot(root), **snapshot(world.root)}
        for argv in (["hub", "verify", str(adapter)],
                     ["predict", "--adapter", str(adapter), "--input", str(root / "in.txt"),
                      "--output", str(out / "preds.jsonl")]):
            code, _, err = run(argv)
            check_outcome(code, err, argv)
            if code == 0 and argv[0] == "predict":
                lines = (out / "preds.jsonl").read_text(encoding="utf-8").splitlines()
                assert len(lines) == 2 and all(strict_json(line) for line in lines)
        after = {**snapshot(root), **snapshot(world.root)}
        assert not changed_outside(before, after, [out, root / "cache"])


# ------------------------------------------------------------------------------------------------ configs

CONFIG_KEYS = sorted(TrainConfig().to_dict())
YAML_TRICKS = [
    "a: &x [1, 2]\nb: *x\n",
    "learning_rate: 1e-3\nlearning_rate: 2e-3\n",
    "per_device_train_batch_size: !!python/object/apply:os.system ['true']\n",
    "lora_r: !!float 8.5\n",
    "seed: 0x10\n",
    "num_train_epochs: .inf\n",
    "lora_r: 2.7\n",
    "? [a, b]\n: 1\n",
    "max_length: 1e400\n",
    "- 1\n- 2\n",
    "\ufeffseed: 3\n",
    "seed: 3\n...\nseed: 4\n",
    "target_modules: {a: 1}\n",
    "lora_layers: [1, 2]\n",
]


@st.composite
def config_texts(draw: st.DrawFn) -> str:
    import yaml

    if draw(st.booleans()):
        return draw(st.sampled_from(YAML_TRICKS))
    mapping = draw(st.dictionaries(st.sampled_from(CONFIG_KEYS), JSON_VALUES, min_size=1, max_size=4))
    return yaml.safe_dump(mapping, allow_unicode=True)


@FUZZ
@given(text=config_texts())
def test_mutated_configs(world: World, text: str) -> None:
    """Any config: a one-line error, or accepted. The dataset is missing, so an accepted config ends at the
    data error — configs are parsed and validated in full, no training runs."""
    with case_folder() as root:
        (root / "c.yaml").write_text(text, encoding="utf-8")
        out = root / "out"
        argv = ["train", "--config", str(root / "c.yaml"), *tiny_args(world.tiny_bert, root / "missing.csv", out)]
        before = {**snapshot(root), **snapshot(world.root)}
        code, _, err = run(argv)
        assert code == 2, (text, err[-2000:])
        check_outcome(code, err, argv)
        assert not changed_outside(before, {**snapshot(root), **snapshot(world.root)}, [])


# ------------------------------------------------------------------------------------------------ data files

CELLS = st.one_of(st.text(max_size=12), st.none(), st.integers(-5, 5), st.floats(allow_nan=True),
                  st.booleans(), st.lists(st.integers(0, 3), max_size=2), st.binary(max_size=4))


@st.composite
def tables(draw: st.DrawFn) -> tuple[str, list[dict[str, object]]]:
    fmt = draw(st.sampled_from(["csv", "jsonl", "parquet", "txt"]))
    texts, _ = make_texts(6, seed=draw(st.integers(0, 3)))
    rows: list[dict[str, object]] = []
    for text in texts[:draw(st.integers(1, 6))]:
        row: dict[str, object] = {"text": draw(st.one_of(st.just(text), CELLS))}
        if draw(st.booleans()):
            row["id"] = draw(CELLS)
        rows.append(row)
    return fmt, rows


def write_table(path: Path, fmt: str, rows: list[dict[str, object]]) -> bool:
    """Write rows in ``fmt``; False where the format itself cannot hold them (not skewtune's concern)."""
    if fmt == "txt":
        path.write_text("".join(f"{r['text']}\n" for r in rows), encoding="utf-8", errors="replace")
    elif fmt == "jsonl":
        def plain(v: object) -> object:
            return v.hex() if isinstance(v, bytes) else v
        path.write_text("".join(json.dumps({k: plain(v) for k, v in r.items()}) + "\n" for r in rows),
                        encoding="utf-8")
    elif fmt == "csv":
        import csv
        with open(path, "w", newline="", encoding="utf-8", errors="replace") as handle:
            writer = csv.DictWriter(handle, fieldnames=sorted({k for r in rows for k in r}))
            writer.writeheader()
            writer.writerows(rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq
        try:
            pq.write_table(pa.Table.from_pylist(rows), path)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            return False
    return True


@FUZZ
@given(table=tables())
def test_mutated_prediction_inputs(world: World, table: tuple[str, list[dict[str, object]]]) -> None:
    fmt, rows = table
    with case_folder() as root:
        data = root / f"in.{fmt}"
        if not write_table(data, fmt, rows):
            return
        out = root / "out"
        argv = ["predict", "--adapter", str(world.adapter), "--input", str(data), "--output", str(out / "p.jsonl")]
        before = {**snapshot(root), **snapshot(world.root)}
        code, _, err = run(argv)
        check_outcome(code, err, argv)
        if code == 0:
            for line in (out / "p.jsonl").read_text(encoding="utf-8").splitlines():
                record = strict_json(line)
                assert isinstance(record, dict) and all(math.isfinite(p) for p in record["probabilities"].values())
        assert not changed_outside(before, {**snapshot(root), **snapshot(world.root)}, [out, root / "cache"])
