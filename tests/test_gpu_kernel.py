"""The gpu profile's fine-tuning kernel on a box of several GPUs, reproduced without one.

torch is made to see two GPUs the way a CUDA box shows them before CUDA starts: NVML counts
them (``torch.cuda.device_count()`` and, with ``PYTORCH_NVML_BASED_CUDA_CHECK``,
``torch.cuda.is_available()``), while every call that would initialise CUDA in the kernel
(torch's lazy initialisation, or ``cudaGetDeviceCount``'s ``cuInit``, which makes torch
refuse CUDA in forked children) is recorded. accelerate's ``notebook_launcher`` forks the
kernel: a kernel that initialised CUDA before it loses every fine-tuning process ("Cannot
re-initialize CUDA in forked subprocess")."""

from __future__ import annotations

import numpy as np
import pytest

from common.config.schema import HfRun, HfTraining
from common.core import runtime
from common.models import hf_classifier

def fake_gpus(monkeypatch, count: int = 2) -> list[str]:
    """torch sees ``count`` GPUs through NVML; returns the list where every CUDA
    initialisation is recorded (torch's lazy init also raises, as it would fail here)."""
    import torch

    calls: list[str] = []

    def cuinit():
        calls.append("cudaGetDeviceCount (cuInit: poisons fork)")
        return count

    def lazy_init():
        calls.append("torch.cuda._lazy_init")
        raise RuntimeError("probe: CUDA initialised in the kernel")

    monkeypatch.setattr(torch.cuda, "_is_compiled", lambda: True)
    monkeypatch.setattr(torch.cuda, "_device_count_nvml", lambda: count)
    monkeypatch.setattr(torch._C, "_cuda_getDeviceCount", cuinit, raising=False)
    monkeypatch.setattr(torch.cuda, "_lazy_init", lazy_init)
    return calls


def test_the_fine_tuning_kernel_initialises_no_cuda_before_or_between_its_launches(
        monkeypatch, synth_root, tiny_checkpoint):
    """Notebook 03's gpu profile as its cells run it (opening, the GPU check, the number of
    processes, both runs), with the launcher replaced by one that plays the main training
    process: nothing in the kernel may initialise CUDA, before the first launch or between
    the two runs' launches."""
    import accelerate
    import torch

    from common.pipeline import opening
    from common.training import finetune_runs

    calls = fake_gpus(monkeypatch, 2)
    launches = []

    def launcher(function, args, num_processes):
        launches.append((num_processes, list(calls)))
        clf, cfg, out = args[0], args[5], args[8]
        x_test = args[10] if len(args) > 10 else None
        settings = HfTraining.model_validate(cfg.model_dump(include=set(HfTraining.model_fields)))
        fit = {"history": {k: [0.5] for k in ("loss", "val_loss", "accuracy", "val_accuracy")},
               "best_val_accuracy": 0.5, "best_epoch": 1, "train_seconds": 1.0,
               "train_images_per_second": 1.0, "settings": settings, "world_size": num_processes,
               "per_process_batch_size": settings.batch_size // num_processes,
               "epoch_seconds": [1.0], "trained_on": {"torch": "cuda:0 (probe)"}}
        if x_test is not None:
            fit["test_probabilities"] = np.full((len(x_test), clf.model.config.num_labels),
                                                1 / clf.model.config.num_labels)
        torch.save({"fit": fit, "state_dict": clf.model.state_dict()}, out)

    monkeypatch.setattr(accelerate, "notebook_launcher", launcher)
    monkeypatch.delenv("VIT_CARS_SKIP_GPU_CHECK", raising=False)
    session = opening.start("03_vit_finetune", {
        "profile": "gpu", "data_dir": str(synth_root),
        "overrides": {"checkpoint": str(tiny_checkpoint), "torch_threads": 1}})
    assert calls == [], "the notebook's opening initialised CUDA"
    assert session.processes == 2  # one per GPU
    p = session.params
    records, _ = session.fit_runs(lambda run: finetune_runs.fit_config(
        run, session.task.parts, session.task.labels, p, model_dir=session.model_dir(run.name),
        processes=session.processes))
    assert launches == [(2, []), (2, [])], launches
    assert calls == []
    assert [r.params["world_size"] for r in records] == [2, 2]
    assert all(r.metrics.test_images == len(session.task.parts.test) for r in records)


def test_the_probe_sees_what_initialises_cuda(monkeypatch):
    import torch

    calls = fake_gpus(monkeypatch, 2)
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    assert torch.cuda.device_count() == 2 and torch.cuda.is_available() and calls == []
    monkeypatch.delenv("PYTORCH_NVML_BASED_CUDA_CHECK")
    assert torch.cuda.is_available()
    with pytest.raises(RuntimeError, match="probe"):
        torch.cuda.get_device_name(0)
    assert calls == ["cudaGetDeviceCount (cuInit: poisons fork)", "torch.cuda._lazy_init"]


def test_one_process_that_sees_several_gpus_is_refused(monkeypatch, tmp_path):
    """The Trainer gives a process that sees N GPUs nn.DataParallel: its batch becomes
    N times the parameters' (below, 32 x 2 = 64). Refused in one line, whether the kernel
    counts its processes or fine-tunes alone (gpu_check's path)."""
    from transformers import TrainingArguments

    from common.training import hf_trainer

    monkeypatch.setattr(TrainingArguments, "n_gpu", property(lambda self: 2))
    args = hf_trainer._training_arguments(HfTraining(batch_size=32), tmp_path, 0, False, 1)
    assert args.train_batch_size == 64  # what DataParallel would train with

    fake_gpus(monkeypatch, 2)
    with pytest.raises(ValueError) as err:
        runtime.training_processes(1, [32])
    line = str(err.value)
    assert "\n" not in line and "nn.DataParallel" in line
    assert "processes: null" in line and "CUDA_VISIBLE_DEVICES=0" in line
    with pytest.raises(ValueError, match="nn.DataParallel"):
        runtime.training_processes(None, [31])  # no GPU count divides the batch
    assert runtime.training_processes(None, [32]) == 2
    assert runtime.training_processes(2, [32]) == 2
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    x = np.zeros((4, 32, 32, 3), np.uint8)
    clf = hf_classifier.Classifier(None, None, weights={}, checkpoint="none")
    with pytest.raises(ValueError, match="nn.DataParallel"):
        hf_trainer.fine_tune(clf, x, [0, 1, 0, 1], x, [0, 1, 0, 1], HfRun(name="r"))
