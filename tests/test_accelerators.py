"""The gpu profile on its GPUs, checked without one: the refusal when a framework sees no
GPU, TensorFlow's memory growth, augmentation that stays on the accelerator under bf16, the
batch arithmetic of several fine-tuning processes and the round-robin GPU pinning of
`make -j GPUS=...`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types

import pytest

from common.config import loading
from common.core import accelerators, paths, runtime
from common.training import hf_trainer
from conftest import optimiser_of, small_vit, vit_model


# --------------------------------------------------------------------------- GPU or refusal

def _fake_torch(monkeypatch, names, cuda_version="13.0", driver="580.95.05"):
    """torch that counts ``names`` GPUs (NVML), nvidia-smi that names them; the probe of
    tests/test_gpu_kernel.py checks that nothing initialises CUDA on the way."""
    def no_init(*args):
        raise AssertionError("CUDA initialised")

    cuda = types.SimpleNamespace(is_available=no_init, device_count=lambda: len(names),
                                 get_device_name=no_init)
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(
        cuda=cuda, version=types.SimpleNamespace(cuda=cuda_version)))
    rows = {"name": [[n] for n in names], "driver_version": [[driver]] if driver else []}
    monkeypatch.setattr(accelerators, "nvidia_smi", lambda field: rows[field])


def _fake_tensorflow(monkeypatch, names):
    devices = [types.SimpleNamespace(name=f"/physical_device:GPU:{i}") for i in range(len(names))]
    experimental = types.SimpleNamespace(
        get_device_details=lambda d: {"device_name": names[int(d.name[-1])]},
        set_memory_growth=lambda d, on: None)
    config = types.SimpleNamespace(list_physical_devices=lambda kind: devices,
                                   experimental=experimental)
    monkeypatch.setitem(sys.modules, "tensorflow", types.SimpleNamespace(config=config))


def test_each_framework_is_asked_separately(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    _fake_torch(monkeypatch, ["NVIDIA H200", "NVIDIA H200"])
    _fake_tensorflow(monkeypatch, [])  # plain `pip install tensorflow`: no CUDA libraries
    assert accelerators.gpus("torch") == ["NVIDIA H200", "NVIDIA H200"]
    assert accelerators.gpus("tensorflow") == []
    assert accelerators.require_gpus({"torch": "notebooks 03, 04"}) == {
        "torch": ["NVIDIA H200", "NVIDIA H200"]}
    with pytest.raises(accelerators.NoGpu) as err:
        accelerators.require_gpus({"torch": "notebooks 03, 04",
                                   "tensorflow": "notebooks 01, 02, 05"})
    line = str(err.value)
    assert "\n" not in line
    assert "notebooks 01, 02, 05 train with tensorflow" in line
    assert "make setup VENV=$CONDA_PREFIX" in line and "DRY_RUN=1" in line


def test_the_check_is_skipped_only_when_asked(monkeypatch):
    _fake_torch(monkeypatch, [])
    monkeypatch.delenv("VIT_CARS_SKIP_GPU_CHECK", raising=False)
    with pytest.raises(accelerators.NoGpu):
        accelerators.require_gpus({"torch": "notebook 03"})
    monkeypatch.setenv("VIT_CARS_SKIP_GPU_CHECK", "1")
    assert accelerators.require_gpus({"torch": "notebook 03"}) == {}


def test_tensorflow_gpus_by_name(monkeypatch):
    _fake_tensorflow(monkeypatch, ["NVIDIA H200"])
    assert accelerators.gpus("tensorflow") == ["NVIDIA H200"]
    assert accelerators.describe("/job:localhost/replica:0/task:0/device:GPU:0") \
        == "GPU:0 (NVIDIA H200)"
    assert accelerators.describe("/job:localhost/replica:0/task:0/device:CPU:0") == "cpu"


@pytest.mark.dryrun  # a gpu path's check, with the dry run (make test-dry-run)
def test_a_real_gpu_run_stops_at_once_on_one_line(tmp_path):
    """`make run PROFILE=gpu` on a box without GPU: one line, before any data or training."""
    proc = subprocess.run(["make", "run", "PROFILE=gpu", f"VENV={sys.prefix}",
                           f"OUTPUT={tmp_path}", f"DATA_DIR={tmp_path / 'none'}"],
                          cwd=paths.ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("make")]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("error: profile gpu: notebooks 01, 02, 03, 04, 05 train with "
                                "torch") and "sees no GPU" in errors[0]
    assert "CPU build" in errors[0]  # why torch sees none here
    assert not (tmp_path / "results").exists()


def test_the_check_follows_the_backend_of_the_parameters(monkeypatch):
    from common.pipeline import notebooks

    _fake_torch(monkeypatch, [])
    _fake_tensorflow(monkeypatch, ["NVIDIA H200"])
    with pytest.raises(accelerators.NoGpu, match="notebooks 01, 02, 03, 04, 05 train with torch"):
        notebooks.require_gpus(sorted((paths.ROOT / "notebooks").glob("0*.py")), "gpu")
    # the backend of the parameters, overrides included: TensorFlow sees the GPU here
    assert notebooks.require_gpus([paths.ROOT / "notebooks" / "01_vit_scratch.py"], "gpu",
                                  {"keras_backend": "tensorflow"}) == {
        "tensorflow": ["NVIDIA H200"]}


def test_the_refusal_names_a_driver_too_old_for_torchs_cuda(monkeypatch):
    monkeypatch.delenv("VIT_CARS_SKIP_GPU_CHECK", raising=False)
    _fake_torch(monkeypatch, [], cuda_version="13.0", driver="535.104.05")
    monkeypatch.setattr(accelerators, "_version", lambda fw: "torch 2.13.0")
    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "version", lambda name: "2.13.0")
    with pytest.raises(accelerators.NoGpu) as err:
        accelerators.require_gpus({"torch": "notebooks 03, 04"})
    line = str(err.value)
    assert "\n" not in line
    assert ("NVIDIA driver 535.104.05 found, but torch 2.13.0 is built for CUDA 13.0, which "
            "needs driver >= 580.65.06") in line
    _fake_torch(monkeypatch, [], driver=None)
    with pytest.raises(accelerators.NoGpu, match=r"no NVIDIA driver answers \(nvidia-smi\)"):
        accelerators.require_gpus({"torch": "notebook 03"})
    _fake_torch(monkeypatch, [], cuda_version=None)
    with pytest.raises(accelerators.NoGpu, match="is a CPU build"):
        accelerators.require_gpus({"torch": "notebook 03"})


def test_gpus_are_named_in_cuda_visible_devices_order(monkeypatch):
    _fake_torch(monkeypatch, ["A100", "H100", "H200"])
    monkeypatch.setattr(sys.modules["torch"].cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    assert accelerators.gpus("torch") == ["H200", "A100"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-1234,GPU-5678")
    assert accelerators.gpus("torch") == ["A100", "H100"]


def test_tensorflow_grows_its_gpu_memory(monkeypatch):
    monkeypatch.delenv("TF_FORCE_GPU_ALLOW_GROWTH", raising=False)
    accelerators.grow_tensorflow_memory()
    assert os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"


def test_a_keras_run_records_the_device_its_framework_trained_on(tmp_path):
    import keras
    import numpy as np

    from common.training import keras_fit

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (8, 8, 8, 3)).astype("uint8"), rng.integers(0, 2, 8)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    keras_fit.compile_classifier(model, keras_fit.make_optimizer(*optimiser_of(small_vit()), 2))
    out = keras_fit.train(model, x, y, x, y, epochs=1, batch_size=4, verbose=0,
                          checkpoint_path=tmp_path / "m.keras")
    assert out["trained_on"] == {keras.backend.backend(): "cpu"}


# --------------------------------------------------------------------------- augmentation

def _ops_without_gpu_kernel(graph) -> list[str]:
    """The ops of a TensorFlow graph that no GPU kernel takes with their dtypes: TensorFlow
    would place them on the host."""
    from tensorflow.python.framework import kernels

    out = []
    for op in graph.get_operations():
        def fits(kernel, op=op):
            for constraint in kernel.constraint:
                try:
                    value = op.get_attr(constraint.name)
                except ValueError:
                    continue
                allowed = set(constraint.allowed_values.list.type)
                values = value if isinstance(value, list) else [value]
                if any(int(getattr(v, "as_datatype_enum", v)) not in allowed for v in values):
                    return False
            return True

        gpu = [k for k in kernels.get_registered_kernels_for_op(op.type).kernel
               if k.device_type in ("GPU", "DEFAULT")]
        if not any(fits(k) for k in gpu):
            out.append(op.type)
    return out


def _augmentation_graph(layers_, size=32):
    import tensorflow as tf

    @tf.function
    def augment(x):
        for layer in layers_:
            x = layer(x, training=True)
        return x

    return augment.get_concrete_function(tf.TensorSpec((4, size, size, 3), tf.float32)).graph


def test_augmentation_stays_on_the_accelerator_under_bf16():
    """Under mixed_bfloat16, every op of the gpu profile's augmentation (the ViT's layers at
    every level, EfficientNet's) has a GPU kernel for its dtype; Keras' layers left
    at the policy would cast to bf16 and warp images on the host (no bf16 GPU kernel of
    ImageProjectiveTransformV3), which this check catches."""
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the placement check reads TensorFlow's kernel registry")
    from keras import layers

    from common.models import efficientnet
    from common.models.augmentation import LEVELS, augmentation_layers

    try:
        runtime.set_keras_precision(True)
        for kind in LEVELS:
            assert _ops_without_gpu_kernel(_augmentation_graph(augmentation_layers(kind))) == []
        assert _ops_without_gpu_kernel(_augmentation_graph([efficientnet.augmentation()])) == []
        left_at_policy = [layers.RandomRotation(0.02), layers.RandomZoom(0.2, 0.2)]
        assert "ImageProjectiveTransformV3" in _ops_without_gpu_kernel(
            _augmentation_graph(left_at_policy))
    finally:
        runtime.set_keras_precision(False)


def test_augmentation_computes_in_float32_and_the_model_in_bf16():
    import keras


    try:
        runtime.set_keras_precision(True)
        model = vit_model(small_vit(32, 8, transformer_layers=1, augmentation="strong",
                                    augment_in_model=True), 10)
        heavy = vit_model(small_vit(32, 8, transformer_layers=1, augmentation="heavy",
                                    augment_in_model=True), 10)
    finally:
        runtime.set_keras_precision(False)
    augment = [lyr for lyr in model.layers if lyr.name in
               ("flip", "rotation", "zoom", "translation", "contrast")]
    assert len(augment) == 5 and {lyr.compute_dtype for lyr in augment} == {"float32"}
    augment = heavy.layers[1:7]
    assert [lyr.name for lyr in augment] == ["flip", "rotation", "zoom", "translation",
                                             "colour", "erasing"]
    assert {lyr.compute_dtype for lyr in augment} == {"float32"}
    assert model.get_layer("rescale").compute_dtype == "bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"


# --------------------------------------------------------------------------- several GPUs

@pytest.mark.parametrize("batch, processes, each", [(32, 1, 32), (32, 2, 16), (32, 4, 8),
                                                    (32, 8, 4), (256, 8, 32)])
def test_each_process_takes_its_share_of_the_global_batch(batch, processes, each):
    assert hf_trainer.per_process_batch(batch, processes) == each


def test_a_batch_that_does_not_split_is_refused():
    with pytest.raises(ValueError, match="does not split over 3 processes"):
        hf_trainer.per_process_batch(32, 3)
    with pytest.raises(ValueError, match="processes 3 does not divide batch_size 32"):
        runtime.training_processes(3, [32])


@pytest.mark.parametrize("gpus, expected", [(0, 1), (1, 1), (2, 2), (3, 2), (4, 4), (6, 4),
                                            (8, 8), (12, 8)])
def test_by_default_the_most_gpus_that_divide_the_batch(gpus, expected):
    assert runtime.training_processes(None, [32, 32], gpus=gpus) == expected


@pytest.mark.dryrun  # a gpu path's check, with the dry run (make test-dry-run)
def test_the_trainer_gets_the_per_process_batch(tmp_path):
    """The global batch of the parameters, split over the processes: the same number of
    steps, and so the same schedule, on one GPU or eight."""
    run = loading.load("03_vit_finetune", "gpu").runs[0]
    args = hf_trainer._training_arguments(run, tmp_path, seed=0, progress=False, processes=4)
    assert args.per_device_train_batch_size == run.batch_size // 4
    assert args.per_device_eval_batch_size == run.eval_batch_size // 4


@pytest.mark.parametrize("gpus, pins", [
    ("0 1 2 3 4", ["0", "1", "2", "3", "4"]),
    ("0 1", ["0", "1", "0", "1", "0"]),
    ("5 7 6", ["5", "7", "6", "5", "7"]),
    ("3", ["3"] * 5),
])
def test_make_gives_each_notebook_one_gpu_round_robin(tmp_path, gpus, pins):
    proc = subprocess.run(["make", "-n", "run", "PROFILE=gpu", "DRY_RUN=1", "FORCE=1",
                           f"GPUS={gpus}", f"VENV={sys.prefix}", f"OUTPUT={tmp_path}"],
                          cwd=paths.ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    found = re.findall(r"CUDA_VISIBLE_DEVICES=(\S+) .*notebooks/(\d\d)_", proc.stdout)
    assert [g for g, _ in sorted(found, key=lambda f: f[1])] == pins
