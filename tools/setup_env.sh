#!/usr/bin/env bash
# Create (or reuse) the repo's virtual environment with everything mmvrwkv needs:
# torch + torchvision, mmcv 2.1.0 built from source against that torch, the
# OpenMMLab stack, and mmvrwkv itself with its compiled Bi-WKV extension.
#
# Idempotent: a second run only checks what is there. The mmcv wheel (a ~10 min
# build on 2 cores) is cached outside the clone, keyed by the torch version, in
# $MMVRWKV_CACHE (default ~/.cache/mmvrwkv).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
CACHE=${MMVRWKV_CACHE:-$HOME/.cache/mmvrwkv}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.14.1}
TORCHVISION_VERSION=${TORCHVISION_VERSION:-0.29.1}
MMCV_VERSION=2.1.0

log() { echo "[setup_env] $*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtual environment in $VENV"
    "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
export PIP_DISABLE_PIP_VERSION_CHECK=1

have() { python -c "import importlib.metadata as m, sys; sys.exit(m.version('$1') != '$2')" 2>/dev/null; }

if ! have torch "$TORCH_VERSION" && ! have torch "$TORCH_VERSION+cu130"; then
    log "installing torch $TORCH_VERSION and torchvision $TORCHVISION_VERSION"
    pip install -q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
fi
pip install -q wheel ninja

if ! python -c "import mmcv, mmcv.ops" 2>/dev/null; then
    TORCH_TAG=$(python -c "import torch; print(torch.__version__.replace('+', '_'))")
    WHEEL_DIR="$CACHE/wheels/torch-$TORCH_TAG"
    WHEEL=$(ls "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n 1 || true)
    if [ -z "$WHEEL" ]; then
        log "building mmcv $MMCV_VERSION from source against torch $TORCH_TAG (about 10 minutes)"
        # mmcv's setup.py needs the setuptools<70 API; requirements.txt
        # restores the version the rest of the stack wants.
        pip install -q 'setuptools<70'
        SRC=$(mktemp -d)
        pip download -q --no-deps --no-binary :all: "mmcv==$MMCV_VERSION" -d "$SRC"
        tar -xzf "$SRC"/mmcv-"$MMCV_VERSION".tar.gz -C "$SRC"
        # torch >= 2.10 headers need C++20; mmcv 2.1.0 hard-codes C++17.
        sed -i 's/-std=c++17/-std=c++20/g' "$SRC/mmcv-$MMCV_VERSION/setup.py"
        mkdir -p "$WHEEL_DIR"
        (cd "$SRC/mmcv-$MMCV_VERSION" && MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} \
            pip wheel -q --no-build-isolation --no-deps . -w "$SRC/dist")
        # Move into the cache only once complete, so an interrupted build leaves nothing behind.
        cp "$SRC"/dist/mmcv-*.whl "$WHEEL_DIR/.partial.whl"
        WHEEL="$WHEEL_DIR/$(basename "$SRC"/dist/mmcv-*.whl)"
        mv "$WHEEL_DIR/.partial.whl" "$WHEEL"
        rm -rf "$SRC"
    fi
    log "installing $WHEEL"
    pip install -q --no-deps "$WHEEL"
fi

pip install -q -r "$ROOT/requirements.txt"

# mmvrwkv itself, with its compiled Bi-WKV extension (C++ always; CUDA when
# nvcc is found, so a CUDA compile error fails here even on a GPU-less machine).
if [ -z "${FORCE_CUDA+x}" ] && command -v "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" >/dev/null 2>&1; then
    export FORCE_CUDA=1 CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
fi
# sm_80 and sm_90 code, plus PTX of the newest, which the driver compiles at
# load time on later GPUs (sm_100, sm_120) for which no code is built.
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-"8.0;9.0+PTX"}
log "building mmvrwkv (FORCE_CUDA=${FORCE_CUDA:-0}, TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST)"
# Built in place (mmvrwkv/_ext*.so) so the checkout itself is importable; the
# editable install then only registers the package (pip's editable build runs
# isolated from torch and would skip the extension).
(cd "$ROOT" && MAX_JOBS=${MAX_JOBS:-2} python setup.py -q build_ext --inplace \
    && pip install -q --no-build-isolation --no-deps -e .)
python -c "import mmvrwkv.ops as o; print('[setup_env] backends on the CPU: Bi-WKV', o.bi_wkv_backends(), 'Bi-WKV6', o.bi_wkv6_backends())"
