"""scripts/gpu_check.sh and the GPU Accelerate configs, checked on CPU: the script's syntax and dry run, every
Accelerate config loading with Accelerate's own loader, the environment ``accelerate launch`` derives from the
FSDP / ZeRO-3 configs, and the NF4 storage dtype skewtune picks under it (uint8 everywhere else)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from skewtune.backbones.registry import quantization_config, sharded_launch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
CONFIGS = ROOT / "recipes" / "configs"
MODES = ["8bit-single", "4bit-single", "ddp-8bit", "fsdp-4bit", "zero2-8bit", "zero3-4bit", "4bit-single-gc"]
# the configs of this part of issue 21 and the distributed type each must declare
EXPECTED_TYPES = {
    "accelerate_gpu_single.yaml": "NO",
    "accelerate_gpu_ddp.yaml": "MULTI_GPU",
    "accelerate_fsdp.yaml": "FSDP",
    "accelerate_deepspeed_zero2.yaml": "DEEPSPEED",
    "accelerate_deepspeed_zero3.yaml": "DEEPSPEED",
    "accelerate_cpu_ddp.yaml": "MULTI_GPU",
}
LAUNCHER_ENV = ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED", "ACCELERATE_DEEPSPEED_ZERO_STAGE")


def _bash() -> str:
    bash = shutil.which("bash")
    if bash is None:  # pragma: no cover - every supported platform has bash
        pytest.skip("bash not found")
    return bash


def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                **(env or {})}
    return subprocess.run([_bash(), str(SCRIPT), *args], capture_output=True, text=True, env=full_env,
                          timeout=timeout, cwd=ROOT)


def test_script_passes_bash_syntax_check() -> None:
    result = subprocess.run([_bash(), "-n", str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert os.access(SCRIPT, os.X_OK)


@pytest.mark.parametrize("how", ["flag", "env"])
def test_dry_run_prints_one_command_per_mode_naming_existing_configs(tmp_path: Path, how: str) -> None:
    out = tmp_path / "gpu_check"
    env = {"GPU_CHECK_OUT": str(out), **({"DRY_RUN": "1"} if how == "env" else {})}
    result = _run(*(["--dry-run"] if how == "flag" else []), env=env)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("[dry-run] ")]
    assert [line.split()[1].rstrip(":") for line in lines] == MODES
    for line in lines:
        words = shlex.split(line.split(": ", 1)[1].split("   # ")[0])
        config = Path(words[words.index("--config_file") + 1])
        assert (ROOT / config).is_file(), line
        assert "recipes/lora_sentiment.py" in words and words[words.index("--max_steps") + 1] == "40"
        assert words[words.index("--output_dir") + 1].startswith(str(out))
    by_mode = {line.split()[1].rstrip(":"): line for line in lines}
    assert "--quant 4bit" in by_mode["fsdp-4bit"] and "accelerate_fsdp.yaml" in by_mode["fsdp-4bit"]
    assert "accelerate_deepspeed_zero3.yaml" in by_mode["zero3-4bit"]
    assert "--gradient_checkpointing true" in by_mode["4bit-single-gc"]
    assert "--num_processes 2" in by_mode["ddp-8bit"]
    assert not out.exists()  # a dry run writes nothing


def test_dry_run_names_the_skips_and_bad_arguments_fail(tmp_path: Path) -> None:
    result = _run("--dry-run", env={"GPU_CHECK_OUT": str(tmp_path), "GPU_CHECK_NGPU": "1"})
    ddp = next(line for line in result.stdout.splitlines() if line.startswith("[dry-run] ddp-8bit"))
    assert "would be skipped here: needs 2+ GPUs, 1 visible" in ddp
    bad = _run("--bogus")
    assert bad.returncode == 2 and "unknown argument" in bad.stderr
    bad_mode = _run("--dry-run", env={"GPU_CHECK_MODES": "tpu-pod"})
    assert bad_mode.returncode == 2 and "unknown mode 'tpu-pod'" in bad_mode.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_without_a_gpu_the_real_run_refuses_in_one_line(tmp_path: Path) -> None:
    result = _run(env={"GPU_CHECK_OUT": str(tmp_path / "o")})
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--dry-run" in result.stderr
    assert not (tmp_path / "o").exists()


def test_every_accelerate_config_loads_with_accelerates_loader() -> None:
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    files = sorted(CONFIGS.glob("accelerate_*.yaml"))
    assert {name for name in EXPECTED_TYPES} <= {f.name for f in files}
    for path in files:
        config = load_config_from_file(str(path))
        assert isinstance(config.distributed_type, DistributedType), path
        if path.name in EXPECTED_TYPES:
            assert config.distributed_type.value == EXPECTED_TYPES[path.name], path.name
    fsdp = load_config_from_file(str(CONFIGS / "accelerate_fsdp.yaml")).fsdp_config
    assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    for stage in (2, 3):
        ds = load_config_from_file(str(CONFIGS / f"accelerate_deepspeed_zero{stage}.yaml")).deepspeed_config
        assert ds["zero_stage"] == stage
        assert ds["gradient_accumulation_steps"] == 1 and ds["gradient_clipping"] == 1.0  # skewtune's defaults


def _launcher_env(config: str) -> dict[str, str]:
    """The environment `accelerate launch --config_file <config>` gives the training processes."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    args = launch_command_parser().parse_args(
        ["--config_file", str(CONFIGS / config), "--num_processes", "2", "recipes/lora_sentiment.py"])
    args = _validate_launch_command(args)[0]
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = []  # launch_command sets it before this call
        return prepare_deepspeed_cmd_env(args)[1]
    return prepare_multi_gpu_env(args)


@pytest.fixture
def clean_launcher_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in LAUNCHER_ENV:
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def _pretend_bf16_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)


@pytest.mark.parametrize(("config", "sharded"), [
    ("accelerate_fsdp.yaml", True),
    ("accelerate_deepspeed_zero3.yaml", True),
    ("accelerate_deepspeed_zero2.yaml", False),
    ("accelerate_gpu_ddp.yaml", False),
])
def test_fsdp_and_zero3_launches_store_nf4_in_the_compute_dtype(clean_launcher_env: pytest.MonkeyPatch,
                                                                 config: str, sharded: bool) -> None:
    env = _launcher_env(config)
    for key in LAUNCHER_ENV:
        if key in env:
            clean_launcher_env.setenv(key, env[key])
    if config == "accelerate_fsdp.yaml":
        assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
    _pretend_bf16_gpu(clean_launcher_env)
    assert sharded_launch() is sharded
    qconfig = quantization_config("4bit", ["classifier"])
    assert qconfig is not None
    assert qconfig.bnb_4bit_compute_dtype == torch.bfloat16
    assert qconfig.bnb_4bit_quant_storage == (torch.bfloat16 if sharded else torch.uint8)
    assert qconfig.bnb_4bit_quant_type == "nf4" and qconfig.bnb_4bit_use_double_quant
    eight = quantization_config("8bit", ["classifier"])  # LLM.int8 has no storage dtype: unchanged
    assert eight is not None and eight.load_in_8bit and eight.bnb_4bit_quant_storage == torch.uint8


def test_default_nf4_storage_unchanged_on_cpu(clean_launcher_env: pytest.MonkeyPatch) -> None:
    qconfig = quantization_config("4bit", ["classifier"])
    assert qconfig is not None and qconfig.bnb_4bit_quant_storage == torch.uint8
    if not torch.cuda.is_available():
        assert qconfig.bnb_4bit_compute_dtype == torch.float32
        # an FSDP launch on a machine without CUDA runs as CPU DDP (Accelerate ignores FSDP): storage unchanged
        clean_launcher_env.setenv("ACCELERATE_USE_FSDP", "true")
        assert not sharded_launch()
        assert quantization_config("4bit", ["classifier"]).bnb_4bit_quant_storage == torch.uint8  # type: ignore[union-attr]
    explicit = quantization_config("4bit", ["classifier"], quant_storage=torch.float32)
    assert explicit is not None and explicit.bnb_4bit_quant_storage == torch.float32
    assert quantization_config("none", []) is None


def _cpu_harness(tmp_path: Path, tiny_bert: Path, toy_csv: Path, modes: str) -> subprocess.CompletedProcess[str]:
    extra = (f"--backbone {tiny_bert} --dataset {toy_csv} --per_device_train_batch_size 16 "
             "--per_device_eval_batch_size 64 --num_threads 1")
    return _run(env={"GPU_CHECK_ALLOW_CPU": "1", "GPU_CHECK_MODES": modes, "GPU_CHECK_STEPS": "2",
                     "GPU_CHECK_OUT": str(tmp_path / "gpu_check"), "GPU_CHECK_EXTRA": extra,
                     "GPU_CHECK_TIMEOUT": "240", "HF_HUB_OFFLINE": "1"}, timeout=600)


@pytest.mark.slow
def test_harness_on_cpu_reports_one_line_and_fails_loudly_for_fsdp(tmp_path: Path, tiny_bert: Path,
                                                                  toy_csv: Path) -> None:
    """The real (non-dry) loop on CPU with the tiny backbone: 4bit-single passes with its numbers, FSDP fails
    because on CPU Accelerate runs an FSDP config as gloo DDP (MULTI_CPU): the check must not pass it."""
    result = _cpu_harness(tmp_path, tiny_bert, toy_csv, "4bit-single fsdp-4bit")
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.split()[:1] in (["4bit-single"], ["fsdp-4bit"])}
    assert set(lines) == {"4bit-single", "fsdp-4bit"}, result.stdout + result.stderr
    single = lines["4bit-single"]
    assert " ok " in single and "type=NO" in single and "samples/s=-" not in single and "test_macro_f1=-" not in single
    assert "FAILED: ran as MULTI_CPU, expected FSDP" in lines["fsdp-4bit"]
    assert result.returncode == 1 and "FAILED" in result.stderr
    probe = json.loads((tmp_path / "gpu_check" / "4bit-single" / "gpu_probe.rank0.json").read_text())
    assert probe["distributed_type"] == "NO" and probe["exit_code"] == 0
