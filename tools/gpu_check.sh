#!/usr/bin/env bash
# The GPU check for a short lease (docs/gpu_check.md): build the extension
# for this GPU, run the operators' CUDA tests against float64 and fla's error
# report, compute-sanitizer on a few CUDA tests, then time Bi-WKV / Bi-WKV6
# against fla and SDPA/FlashAttention and the T backbones against DeiT-T.
# Every phase has a time limit inside --budget (450 s by default); one JSON,
# the log, the JUnit XML, a plot and the summary go to OUT_DIR, and the
# summary table is printed last. Without a CUDA device (or with --dry-run)
# it runs every phase's CPU stand-in at tiny sizes.
#
# Needs torch (+ nvcc on a GPU machine), pytest and numpy; the backbones
# need mmengine and mmcv (mmcv-lite will do), fla's phases fla-core: where
# they are missing, bring them as wheels (tools/gpu_wheels.sh) and pass
# --wheels .whl.
#
# Usage: bash tools/gpu_check.sh [OUT_DIR] [--budget S] [--dry-run]
#            [--wheels DIR] [--phases NAME...]   (tools/gpu_check.py -h)
# Python: $PYTHON, else the first of python, python3 and this checkout's
# .venv/bin/python that has torch.
set -euo pipefail
cd "$(dirname "$0")/.."
has_torch='import importlib.util, sys
sys.exit(importlib.util.find_spec("torch") is None)'
PY=${PYTHON:-}
if [ -z "$PY" ]; then
    for candidate in python python3 .venv/bin/python; do
        if command -v "$candidate" >/dev/null &&
            "$candidate" -c "$has_torch" 2>/dev/null; then
            PY=$candidate
            break
        fi
    done
fi
if [ -z "$PY" ]; then
    echo "gpu_check: no python with torch on PATH; set PYTHON" >&2
    exit 2
fi
exec "$PY" tools/gpu_check.py "$@"
