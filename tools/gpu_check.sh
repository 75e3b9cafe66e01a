#!/usr/bin/env bash
# On an NVIDIA machine with torch and nvcc: build the extension for this GPU's
# architecture (or TORCH_CUDA_ARCH_LIST), run the operator tests, which
# compare the CUDA kernels against the float64 oracle and the CPU kernel, then
# the operator and backbone benchmarks on the GPU (JSON and logs in OUT_DIR).
# The build and tests need only torch + pytest + numpy (the op layer does not
# import mmengine); the backbone benchmark also needs mmpretrain and
# matplotlib (tools/setup_env.sh installs them).
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
# The operator tests (CUDA cases against the float64 oracle, opcheck of the
# torch.library registration on CUDA), then torch.compile / torch.export.
$PY -m pytest tests/test_ops -q -p no:cacheprovider \
    --junitxml="$OUT/test_ops.xml" 2>&1 | tee "$OUT/test_ops.log"
$PY -m pytest tests/test_models/test_backbones/test_compile_export.py -q \
    -p no:cacheprovider 2>&1 | tee "$OUT/test_compile_export.log"
# Out-of-bounds and uninitialised reads, and shared-memory races, on a small
# subset of the CUDA cases (where compute-sanitizer is installed).
SANITIZER=${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer
if [ -x "$SANITIZER" ]; then
    for tool in memcheck initcheck racecheck; do
        "$SANITIZER" --tool "$tool" --error-exitcode 1 $PY -m pytest \
            tests/test_ops/test_bi_wkv.py -q -p no:cacheprovider \
            -k "cuda and (B3-T37-C19 or B1-T600-C7) and fp32 and not emu" \
            2>&1 | tee "$OUT/sanitizer_$tool.log"
    done
fi
# The operator (fp32 and bf16) and backbone benchmarks on the GPU; a failing
# one is reported and the others still run.
status=0
bench() {
    local name=$1; shift
    echo "== $name: $*"
    if ! $PY "$@" 2>&1 | tee "$OUT/$name.log"; then
        echo "== $name FAILED (see $OUT/$name.log)"
        status=1
    fi
}
bench bench_bi_wkv_fp32 benchmarks/bench_bi_wkv.py --device cuda \
    --json "$OUT/bench_bi_wkv_fp32.json"
bench bench_bi_wkv_bf16 benchmarks/bench_bi_wkv.py --device cuda \
    --dtype bfloat16 --json "$OUT/bench_bi_wkv_bf16.json"
bench bench_backbone benchmarks/bench_backbone.py --device cuda \
    --sizes 224 512 1024 1536 2048 --json "$OUT/bench_backbone.json" \
    --plot "$OUT/bench_backbone.png"
exit $status
