#!/usr/bin/env bash
# The checks of issue 18 that only a GPU can make, prepared for a machine with one (none was lent to the issue).
# Run from the repository root after `make install TORCH_INDEX=` (a CUDA torch) and `make base-model`:
#
#     bash bench/gpu_checks.sh 2>&1 | tee gpu-checks.log
#
# 1. Every row of the architecture table on CUDA: the probes tests run on each device present, so with a
#    GPU the table-generated checks (tests/probes/test_architectures.py) and the rest of probes/ run on it too.
# 2. Precision on a GPU's bf16 and fp16 kernels (BENCHMARKS.md 'Precision' has the CPU's): the tracker's
#    scores and circuits against float64, on the tiny base and on Qwen2.5-Math-1.5B's geometry at 28 layers.
# Not here: ZeRO-3 and FSDP2 over NCCL. tests/callbacks/test_tracker_sharded.py pins the CPU (gloo); the GPU
# path is the paper's recipe itself (README, 'Run on GPUs'), which needs the hub model.
set -euo pipefail
cd "$(dirname "$0")/.."
python=.venv/bin/python
$python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device: these checks need a GPU'; print(torch.cuda.get_device_name())"
$python -m pytest -q tests/probes
$python bench/precision.py --device cuda --wide-layers 28
