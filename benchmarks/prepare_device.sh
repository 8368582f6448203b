#!/usr/bin/env bash
# Prepare what a GPU machine needs to run the benchmarks, in two ignored folders of
# the repository root, for the device tool's `carry`:
#   .whl/   wheels of the packages the GPU image may lack (it has torch, timm,
#           torchvision, numpy, pillow, matplotlib, safetensors, huggingface-hub,
#           tqdm, pluggy and click, but not segmentation-models-pytorch); pinned to
#           the versions tested here; benchmarks/device_run.sh installs only those
#           the machine does not have
#   .data/  a copy of ../shared/data/camvid-jpg (../shared does not travel)
# Usage: bash benchmarks/prepare_device.sh   (needs PyPI; about 30 MB in all)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x .venv/bin/python ]; then PY=${PYTHON:-.venv/bin/python}; else PY=${PYTHON:-python3}; fi
WHEELS=(
    segmentation-models-pytorch==0.6.0
    pluggy==1.7.0
    click==8.5.1
)
SHARED=${SEGAL_SHARED_DATA:-../shared/data}

rm -rf .whl
mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "${WHEELS[@]}"

if [ ! -d "$SHARED/camvid-jpg" ]; then
    echo "error: $SHARED/camvid-jpg not found; set SEGAL_SHARED_DATA to the folder holding camvid-jpg" >&2
    exit 2
fi
mkdir -p .data
rm -rf .data/camvid-jpg
cp -r "$SHARED/camvid-jpg" .data/camvid-jpg

for path in .whl .data; do
    if ! git check-ignore -q "$path/x"; then
        echo "warning: $path/ is not ignored by git; it would travel as part of the working tree" >&2
    fi
done
ls .whl
du -sh .whl .data
echo "ready: carry [\".whl\", \".data\"] and run: bash benchmarks/device_run.sh"
