#!/usr/bin/env bash
# GPU check of skewtune's scale-out modes: the main recipe (recipes/lora_sentiment.py: real tweets, MiniLM) for a
# few dozen optimizer steps in each mode, one line per mode, exit 1 if any mode failed.
#
#   scripts/gpu_check.sh               # on a machine with CUDA GPUs (from the repository root or anywhere)
#   scripts/gpu_check.sh --dry-run     # (or DRY_RUN=1) CPU-only: print the command of each mode, run nothing
#
# Modes: 8bit-single, 4bit-single (one GPU), ddp-8bit (DDP on every visible GPU; skipped below 2 GPUs),
# fsdp-4bit (FSDP2 QLoRA, NF4 stored as bf16), zero2-8bit and zero3-4bit (DeepSpeed; skipped when deepspeed is not
# installed), 4bit-single-gc (--gradient_checkpointing true). FSDP / ZeRO run on 1 GPU too (the code path, no
# real sharding): the line shows the process count.
# Each line: mode, status (ok / FAILED: reason / skipped: reason), samples/s (metrics.json
# train_samples_per_second: training rows per second, all processes together), peak GPU memory
# (torch.cuda.max_memory_allocated of the highest rank, read by a small wrapper around the recipe), test macro-F1
# (metrics.json eval_macro_f1), processes and the distributed type Accelerate actually used (a mode whose type
# differs from the one asked for FAILS: e.g. an FSDP config that silently ran as DDP).
#
# Environment: GPU_CHECK_STEPS (optimizer steps per mode, default 40), GPU_CHECK_OUT (output folder, default
# outputs/gpu_check/<timestamp>), GPU_CHECK_TIMEOUT (seconds per mode, default 900), GPU_CHECK_NGPU (GPUs to use;
# default: all visible, 2 in a dry run), GPU_CHECK_MODES (space-separated subset of the modes), GPU_CHECK_EXTRA
# (recipe flags appended to every mode, e.g. "--backbone me5-small"), PYTHON (default python), ACCELERATE (default
# accelerate). GPU_CHECK_ALLOW_CPU=1 runs the modes without a GPU (the test suite checks the harness itself with
# it: on CPU, Accelerate ignores FSDP / DeepSpeed, so those modes FAIL with "ran as MULTI_CPU").
set -u -o pipefail

DRY_RUN="${DRY_RUN:-0}"
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$arg' (use --dry-run or --help)" >&2; exit 2 ;;
  esac
done
[[ "$DRY_RUN" == "0" || "$DRY_RUN" == "" || "$DRY_RUN" == "false" ]] && DRY_RUN=0 || DRY_RUN=1

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2
PYTHON="${PYTHON:-python}"
ACCELERATE="${ACCELERATE:-accelerate}"
STEPS="${GPU_CHECK_STEPS:-40}"
TIMEOUT="${GPU_CHECK_TIMEOUT:-900}"
OUT="${GPU_CHECK_OUT:-outputs/gpu_check/$(date +%Y%m%d-%H%M%S)}"
CONFIGS="recipes/configs"
RECIPE="recipes/lora_sentiment.py"
PROBE="$OUT/gpu_probe.py"
ALL_MODES="8bit-single 4bit-single ddp-8bit fsdp-4bit zero2-8bit zero3-4bit 4bit-single-gc"
MODES="${GPU_CHECK_MODES:-$ALL_MODES}"

if [[ "$DRY_RUN" == 1 || "${GPU_CHECK_ALLOW_CPU:-0}" == 1 ]]; then
  NGPU="${GPU_CHECK_NGPU:-2}"
else
  if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check.sh: no CUDA GPU visible to $PYTHON (torch.cuda.is_available() is False); on a CPU machine run: scripts/gpu_check.sh --dry-run" >&2
    exit 2
  fi
  NGPU="${GPU_CHECK_NGPU:-$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")}"
fi
HAVE_DEEPSPEED=0
"$PYTHON" -c "import deepspeed" >/dev/null 2>&1 && HAVE_DEEPSPEED=1

# the recipe flags shared by every mode: few steps, scores on the test split, no baselines or plots
COMMON=(--max_steps "$STEPS" --num_train_epochs 1 --baselines false --report_plots false --overwrite_output_dir true)
EXTRA="${GPU_CHECK_EXTRA:-}"

# mode -> "config|processes|expected distributed type|extra recipe flags"
spec() {
  case "$1" in
    8bit-single)    echo "accelerate_gpu_single.yaml|1|NO|--quant 8bit" ;;
    4bit-single)    echo "accelerate_gpu_single.yaml|1|NO|--quant 4bit" ;;
    ddp-8bit)       echo "accelerate_gpu_ddp.yaml|$NGPU|MULTI_GPU|--quant 8bit" ;;
    fsdp-4bit)      echo "accelerate_fsdp.yaml|$NGPU|FSDP|--quant 4bit" ;;
    zero2-8bit)     echo "accelerate_deepspeed_zero2.yaml|$NGPU|DEEPSPEED|--quant 8bit" ;;
    zero3-4bit)     echo "accelerate_deepspeed_zero3.yaml|$NGPU|DEEPSPEED|--quant 4bit" ;;
    4bit-single-gc) echo "accelerate_gpu_single.yaml|1|NO|--quant 4bit --gradient_checkpointing true" ;;
    *) return 1 ;;
  esac
}

command_for() {  # the exact command line of a mode
  local mode="$1" config procs expect extra
  IFS='|' read -r config procs expect extra <<<"$(spec "$mode")"
  # shellcheck disable=SC2086  # extra holds whole flags
  printf '%q ' env "GPU_CHECK_PROBE=$OUT/$mode/gpu_probe" timeout "$TIMEOUT" \
    "$ACCELERATE" launch --config_file "$CONFIGS/$config" --num_processes "$procs" \
    "$PROBE" "$RECIPE" --output_dir "$OUT/$mode" "${COMMON[@]}" $extra $EXTRA
}

skip_reason() {  # why a mode cannot run here ("" when it can)
  case "$1" in
    ddp-8bit) [[ "$NGPU" -lt 2 ]] && echo "needs 2+ GPUs, $NGPU visible" ;;
    zero2-8bit|zero3-4bit) [[ "$HAVE_DEEPSPEED" == 0 ]] && echo "deepspeed not installed (pip install deepspeed)" ;;
  esac
  return 0
}

for mode in $MODES; do
  spec "$mode" >/dev/null || { echo "gpu_check.sh: unknown mode '$mode' (modes: $ALL_MODES)" >&2; exit 2; }
done

if [[ "$DRY_RUN" == 1 ]]; then
  echo "gpu_check.sh dry run: $STEPS steps per mode, $NGPU GPU(s), outputs under $OUT; nothing is run"
  for mode in $MODES; do
    why="$(skip_reason "$mode")"
    note=""
    [[ -n "$why" ]] && note="   # would be skipped here: $why"
    echo "[dry-run] $mode: $(command_for "$mode")$note"
  done
  exit 0
fi

mkdir -p "$OUT" || exit 2
# wraps the recipe: runs it unchanged, then records this rank's peak GPU memory and Accelerate's distributed type
cat >"$PROBE" <<'PY'
"""gpu_check.sh probe: run a recipe as __main__, then write {rank, peak GPU MiB, distributed type} to JSON."""
import json
import os
import runpy
import sys

recipe = sys.argv[1]
sys.argv = sys.argv[1:]
code = 0
try:
    runpy.run_path(recipe, run_name="__main__")
except SystemExit as stop:
    code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
finally:
    import torch
    from accelerate.state import AcceleratorState

    rank = int(os.environ.get("RANK", "0"))
    dist = AcceleratorState._shared_state.get("distributed_type")
    record = {
        "rank": rank,
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
        "distributed_type": getattr(dist, "value", None if dist is None else str(dist)),
        "exit_code": code,
    }
    with open(f"{os.environ['GPU_CHECK_PROBE']}.rank{rank}.json", "w") as fh:
        json.dump(record, fh)
sys.exit(code)
PY

summarize() {  # mode rc expect procs -> one line
  "$PYTHON" - "$@" <<'PY'
import glob, json, os, sys

mode, rc, expect, procs, out, log = sys.argv[1:7]
rc = int(rc)
metrics_path = os.path.join(out, "metrics.json")
metrics = json.load(open(metrics_path)) if os.path.isfile(metrics_path) else {}
probes = [json.load(open(p)) for p in glob.glob(os.path.join(out, "gpu_probe.rank*.json"))]
peaks = [p["peak_gpu_mib"] for p in probes if p.get("peak_gpu_mib") is not None]
types = sorted({p["distributed_type"] for p in probes if p.get("distributed_type")})
sps = metrics.get("train_samples_per_second")
f1 = metrics.get("eval_macro_f1")
status = "ok"
if rc == 124:
    status = "FAILED: timed out"
elif rc != 0:
    last = ""
    if os.path.isfile(log):
        lines = [ln.strip() for ln in open(log, errors="replace") if ln.strip()]
        errs = [ln for ln in lines if "error" in ln.lower()]
        last = (errs or lines or [""])[-1][:160]
    status = f"FAILED: exit {rc}: {last}"
elif not metrics:
    status = "FAILED: no metrics.json"
elif types and types != [expect]:
    status = f"FAILED: ran as {','.join(types)}, expected {expect}"
elif not types:
    status = "FAILED: the probe recorded no distributed type"
fmt = lambda v, f: "-" if v is None else format(v, f)
print(f"{mode:<15} {status:<12} samples/s={fmt(sps, '.1f'):<8} peak_gpu_MiB={fmt(max(peaks) if peaks else None, '.0f'):<7} "
      f"test_macro_f1={fmt(f1, '.4f'):<7} procs={procs} type={','.join(types) or '-'}")
sys.exit(0 if status == "ok" else 1)
PY
}

echo "gpu_check.sh: $STEPS steps per mode, $NGPU GPU(s), deepspeed $([[ $HAVE_DEEPSPEED == 1 ]] && echo installed || echo 'not installed'); logs and outputs under $OUT"
failed=0
for mode in $MODES; do
  why="$(skip_reason "$mode")"
  if [[ -n "$why" ]]; then
    printf '%-15s skipped: %s\n' "$mode" "$why"
    continue
  fi
  IFS='|' read -r config procs expect extra <<<"$(spec "$mode")"
  mkdir -p "$OUT/$mode"
  rm -f "$OUT/$mode"/gpu_probe.rank*.json
  cmd="$(command_for "$mode")"
  echo "$cmd" >"$OUT/$mode/command.txt"
  eval "$cmd" >"$OUT/$mode/log.txt" 2>&1
  rc=$?
  summarize "$mode" "$rc" "$expect" "$procs" "$OUT/$mode" "$OUT/$mode/log.txt" || failed=1
done
if [[ "$failed" != 0 ]]; then
  echo "gpu_check.sh: FAILED: at least one mode failed (its log: $OUT/<mode>/log.txt)" >&2
  exit 1
fi
echo "gpu_check.sh: every mode that ran passed"
