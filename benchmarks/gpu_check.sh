#!/usr/bin/env bash
# Training images/s of the gpu profile with the project's own code, in one command (well
# inside 9 minutes on one H200); writes one JSON (default gpu_check.json) after every job,
# each job in its own process (a failing one is recorded, the next ones still run).
#
#   benchmarks/gpu_check.sh [--cpu] [--data DIR] [--out FILE]
#
# Keras runs on torch, the gpu profile's backend; one GPU (CUDA_VISIBLE_DEVICES, default 0:
# one process that sees several would get nn.DataParallel); offline (HF_HUB_OFFLINE=1).
#
# For the rented box (Python 3.12, PyTorch, transformers and accelerate, but no Keras,
# TensorFlow or Jupyter, no network): `make gpu-bundle` here writes the missing wheels into
# .whl/ and a 10-class subset of the data into .gl/cars10/ (both ignored by git, 64 MiB at
# most with the checkout; the device call carries both: README). This script first checks
# that the box's packages fit what those wheels need (one line, exit 2, when they do not),
# then installs them, each alone (--no-deps), into .gl/site. --cpu shrinks every amount, for
# a CPU (the tests run it so). Exit 1 when a job failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
args=()
data=
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) args+=(--cpu); shift ;;
    --out) args+=(--out "$2"); shift 2 ;;
    --data) data=$2; shift 2 ;;
    *) echo "error: unknown argument $1 (use --cpu, --data DIR, --out FILE)" >&2; exit 2 ;;
  esac
done
if ! "$PYTHON" -c "import keras, pydantic" 2>/dev/null; then
  if compgen -G ".whl/*.whl" >/dev/null; then
    "$PYTHON" benchmarks/gpu_bundle.py --check .whl || exit 2
    "$PYTHON" -m pip install --quiet --no-index --no-deps --target .gl/site .whl/*.whl || exit 2
    export PYTHONPATH=".gl/site${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "error: keras or pydantic is not installed and there is no .whl/ folder of wheels to" \
         "install them from (make gpu-bundle)" >&2
    exit 2
  fi
fi
if [ -z "$data" ] && [ -d .gl/cars10 ]; then data=.gl/cars10; fi
if [ -n "$data" ]; then args+=(--data "$data"); fi
# the gpu profile's backend, whatever the shell had; one GPU; no hub
export KERAS_BACKEND=torch HF_HUB_OFFLINE=1 CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0}
exec timeout 560 "$PYTHON" benchmarks/gpu_check.py "${args[@]}"
