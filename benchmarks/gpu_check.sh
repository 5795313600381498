#!/usr/bin/env bash
# Training images/s of the gpu profile with the project's own code, in one command (at most
# 9 minutes on one H200); writes one JSON (default gpu_check.json).
#
#   benchmarks/gpu_check.sh [--cpu] [--data DIR] [--out FILE]
#
# For a GPU box that has PyTorch, transformers and accelerate but no Keras, TensorFlow or
# Jupyter, and no network: put the missing small wheels (keras and the pure-Python packages
# it needs) in .whl/ and, optionally, a 10-class subset of the data in .gl/cars10/ (both
# folders are ignored by git); this script installs the wheels into .gl/site and runs Keras
# on the torch backend. --cpu shrinks every amount, for a CPU (the tests run it so).
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
if ! "$PYTHON" -c "import keras" 2>/dev/null; then
  if [ -d .whl ]; then
    "$PYTHON" -m pip install --quiet --no-index --find-links .whl --target .gl/site keras
    export PYTHONPATH=".gl/site${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "error: keras is not installed and there is no .whl/ folder of wheels to install it from" >&2
    exit 2
  fi
fi
if [ -z "$data" ] && [ -d .gl/cars10 ]; then data=.gl/cars10; fi
if [ -n "$data" ]; then args+=(--data "$data"); fi
export KERAS_BACKEND=torch
exec timeout 540 "$PYTHON" benchmarks/gpu_check.py "${args[@]}"
