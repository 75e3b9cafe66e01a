#!/usr/bin/env bash
# Download, on this machine, the pure-Python wheels the GPU check needs on a
# machine that has torch but no OpenMMLab package and no network
# (docs/gpu_check.md): fla-core for the 'fla' backend, mmengine and
# mmcv-lite (mmcv without compiled ops) for the backbones, and what those
# need beyond such an image (addict, yapf, termcolor, platformdirs). One
# version of each, for Python 3.12, into WHEEL_DIR (default .whl), which
# .git/info/exclude then ignores (so it travels only when carried).
#
# Usage: bash tools/gpu_wheels.sh [WHEEL_DIR]
# Then: bash tools/gpu_check.sh OUT --wheels WHEEL_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.whl}
PY=${PYTHON:-python3}
PY_VERSION=${PY_VERSION:-3.12}
WHEELS=(
    fla-core==0.6.0
    mmengine==0.10.7
    mmcv-lite==2.1.0
    addict==2.4.0
    yapf==0.43.0
    termcolor==3.3.0
    platformdirs==4.14.9
)
# a fresh folder: two versions of one package would stop the install
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m pip download -q --no-deps --only-binary=:all: \
    --python-version "$PY_VERSION" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$tmp" "${WHEELS[@]}"
count=$(find "$tmp" -name '*.whl' | wc -l)
if [ "$count" -ne "${#WHEELS[@]}" ]; then
    echo "gpu_wheels: expected ${#WHEELS[@]} wheels, got $count" >&2
    exit 1
fi
rm -rf "$DIR"
mkdir -p "$DIR"
mv "$tmp"/*.whl "$DIR"/
# keep the folder out of git (the device tool carries it when named)
if [ -d .git ] && [ "$DIR" = .whl ]; then
    mkdir -p .git/info
    touch .git/info/exclude
    grep -qxF '/.whl/' .git/info/exclude ||
        echo '/.whl/' >>.git/info/exclude
fi
ls -l "$DIR"
du -sh "$DIR"
