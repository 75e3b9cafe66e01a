#!/usr/bin/env bash
# On an NVIDIA machine with torch and nvcc: build the extension for this GPU's
# architecture (or TORCH_CUDA_ARCH_LIST), then run the operator tests, which
# compare the CUDA kernels against the float64 oracle and the CPU kernel.
# Needs only torch + pytest + numpy (the op layer does not import mmengine).
# Usage: bash tools/gpu_check.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu_check_out}
mkdir -p "$OUT"
PY=${PYTHON:-python}
export FORCE_CUDA=1
if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
    TORCH_CUDA_ARCH_LIST=$($PY -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
    export TORCH_CUDA_ARCH_LIST
fi
MAX_JOBS=${MAX_JOBS:-8} $PY setup.py build_ext --inplace 2>&1 | tail -n 5
$PY -c "import torch; print(torch.__version__, torch.cuda.get_device_name())" | tee "$OUT/device.txt"
$PY -m pytest tests/test_ops -q -p no:cacheprovider \
    --junitxml="$OUT/test_ops.xml" 2>&1 | tee "$OUT/test_ops.log"
if [ -d benchmarks ]; then
    for b in benchmarks/bench_*.py; do
        $PY "$b" --device cuda --json "$OUT/$(basename "$b" .py).json" || true
    done
fi
