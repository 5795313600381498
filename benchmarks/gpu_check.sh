#!/usr/bin/env bash
# Training images/s of the gpu profile with the project's own code, in one command (well
# inside 9 minutes on one H200); writes one JSON (default gpu_check.json) after every
# measurement.
#
#   benchmarks/gpu_check.sh [--cpu] [--data DIR] [--out FILE]
#
# Keras' backend is the gpu profile's, TensorFlow, when this Python has a TensorFlow that
# sees a GPU; otherwise torch, and the check says so (the JSON's "not_measured"): on a box
# without TensorFlow, the figures of 01, 02 and 05 are Keras on torch, not what the profile
# runs there.
#
# For the rented box (Python 3.12, PyTorch, transformers and accelerate, but no Keras,
# TensorFlow or Jupyter, no network): `make gpu-bundle` here writes the missing wheels into
# .whl/ and a 10-class subset of the data into .gl/cars10/ (both ignored by git, 64 MiB at
# most with the checkout); this script installs the wheels, each alone (--no-deps), into
# .gl/site. --cpu shrinks every amount, for a CPU (the tests run it so).
set -euo pipefail
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
    "$PYTHON" -m pip install --quiet --no-index --no-deps --target .gl/site .whl/*.whl
    export PYTHONPATH=".gl/site${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "error: keras or pydantic is not installed and there is no .whl/ folder of wheels to" \
         "install them from (make gpu-bundle)" >&2
    exit 2
  fi
fi
if [ -z "$data" ] && [ -d .gl/cars10 ]; then data=.gl/cars10; fi
if [ -n "$data" ]; then args+=(--data "$data"); fi
# the backend is chosen here, whatever KERAS_BACKEND the shell had
if TF_CPP_MIN_LOG_LEVEL=3 "$PYTHON" -c \
    "import sys, tensorflow as tf; sys.exit(not tf.config.list_physical_devices('GPU'))" \
    2>/dev/null; then
  export KERAS_BACKEND=tensorflow TF_FORCE_GPU_ALLOW_GROWTH=true
else
  export KERAS_BACKEND=torch
fi
exec timeout 540 "$PYTHON" benchmarks/gpu_check.py "${args[@]}"
