"""The five notebooks, run once per session by the ``smoke_run`` fixture (papermill's command
line, only ``profile`` and ``data_dir`` given), then the profiles and inputs that must stop a
notebook before it trains."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from common.__main__ import main as cli
from common.config import loading
from common.core import paths
from common.data import splits
from common.data import table as data
from common.inference import predictor
from common.models.origin import weights_info
from common.pipeline import notebooks
from common.results import contract as results

pytestmark = pytest.mark.slow

HF_FILES = ("model.safetensors", "config.json", "preprocessor_config.json", "labels.json",
            "preprocess.json")


def _model_dir(smoke_run, run) -> Path:
    """A run's model folder: results files hold it relative to the output folder."""
    assert not Path(run["model_dir"]).is_absolute()
    return smoke_run["out"] / run["model_dir"]


def _check(smoke_run, name, n_classes, runs, files=("model.keras", "labels.json",
                                                    "preprocess.json")):
    payload = smoke_run["results"][name]
    assert results.problems(payload, smoke_run["out"]) == []
    assert payload["notebook"] == name and payload["profile"] == "smoke"
    assert payload["dataset"]["synthetic"] is True
    assert payload["dataset"]["n_classes"] == n_classes
    assert [r["name"] for r in payload["runs"]] == runs
    # every parameter used is recorded, from the smoke parameter file
    assert payload["params"]["file"] == f"params/smoke/{name}.yaml"
    assert payload["params"]["seed"] == 0
    for run in payload["runs"]:
        assert run["train_images_per_second"] > 0
        for f in files:
            assert (_model_dir(smoke_run, run) / f).is_file(), f
    for figure in payload["figures"]:
        assert not Path(figure).is_absolute() and (smoke_run["out"] / figure).is_file()


def test_01_vit_scratch(smoke_run):
    payload = smoke_run["results"]["01_vit_scratch"]
    _check(smoke_run, "01_vit_scratch", 12,
           ["32px-patch6", "24px-patch6-2layers", "improved-hybrid"])
    assert payload["dataset"]["split_sizes"]["test"] == 48  # the generated official test split
    assert all(r["weights"] == weights_info("random-init", pretrained=False)
               for r in payload["runs"])
    assert any(f.endswith("_patches.png") for f in payload["figures"])
    assert payload["environment"]["keras_backend"] == "torch"  # as the cpu profile
    # the ViT itself is shown, layer by layer (Keras' summary)
    assert "Total params" in smoke_run["executed"]["01_vit_scratch"]

    # augmentation runs in the training loop (kornia), or inside the model when a run asks
    def layer_names(run):
        model = predictor.Predictor(_model_dir(smoke_run, payload["runs"][0]).parent / run).model
        return {layer.name for layer in model.layers}

    assert "flip" not in layer_names("32px-patch6")
    assert "flip" in layer_names("24px-patch6-2layers")


def test_02_vit_scratch_10classes_and_predict(smoke_run, tmp_path, capsys):
    payload = smoke_run["results"]["02_vit_scratch_10classes"]
    _check(smoke_run, "02_vit_scratch_10classes", 5, ["24px-patch6", "24px-patch8", "improved"])
    assert payload["dataset"]["class_ids"] == [2, 3, 5, 7, 11]
    assert any(f.endswith("_confusion.png") for f in payload["figures"])
    executed = smoke_run["executed"]["02_vit_scratch_10classes"]
    # the smoke parameters set a target: the notebook judges the run chosen on validation
    # from its 95 % interval (reached, missed or undecided), and shows that run only
    best = max(payload["runs"], key=lambda r: r["metrics"]["best_val_accuracy"])
    low, high = best["metrics"]["test_accuracy_ci95"]
    verdict = "atteint" if low >= 0.5 else "non atteint" if high < 0.5 else "indécis"
    assert f"Objectif **{verdict}**" in executed
    assert f"choisie sur la validation, **{best['name']}**" in executed
    assert "meilleur score de test" not in executed
    # each run's per-image predictions lie beside the results, and agree with them
    from common.results import predictions

    frame = predictions.read(smoke_run["out"] / payload["predictions"]["file"])
    assert set(frame["run"]) == {r["name"] for r in payload["runs"]}
    rows = predictions.of_run(frame, best["name"])
    assert len(rows) == payload["dataset"]["test_set"]["images"]
    assert (rows["label"] == rows["predicted"]).mean() == best["metrics"]["test_accuracy"]
    assert all(len(t.split()) == 5 for t in rows["top5"])
    learned = payload["runs"][-1]
    # it starts from 01's network, trained on the 12 generated classes
    assert [r["weights"]["source"] for r in payload["runs"]] == ["random-init"] * 2 + [
        "pretrained-here"]
    assert learned["weights"]["from"] == "01_vit_scratch/improved-hybrid"
    assert learned["weights"]["classes"] == 12
    assert "**improved** part du réseau `01_vit_scratch/improved-hybrid`" in executed
    # the smoke parameters train 02 on the torch backend; the saved model is read back
    # below by this process (tensorflow backend by default)
    assert payload["environment"]["keras_backend"] == "torch"
    # its checkpoint is the best validation epoch, and each epoch's time is recorded
    assert learned["metrics"]["best_val_accuracy"] == max(learned["history"]["val_accuracy"])
    assert len(learned["epoch_seconds"]) == len(learned["history"]["loss"]) == 30
    low, high = learned["metrics"]["test_accuracy_ci95"]
    assert low <= learned["metrics"]["test_accuracy"] <= high
    labels = json.loads((_model_dir(smoke_run, learned) / "labels.json").read_text())
    assert [v["class_id"] for v in labels.values()] == [2, 3, 5, 7, 11]
    # images of the training classes: the smoke model must name them (official ids)
    root = smoke_run["data"]
    table = splits.select_classes(data.load_table(root), class_ids=[2, 3, 5, 7, 11])
    pick = table[table["split"] == "train"].groupby("class_id").head(2)
    csv_out = tmp_path / "pred.csv"
    not_image = tmp_path / "notes.txt"
    not_image.write_text("not an image")
    code = cli(["predict", str(_model_dir(smoke_run, learned)), *pick["path"], str(not_image),
                         "--csv", str(csv_out)])
    assert code == 1  # one input was not an image; the others were predicted
    assert "notes.txt: error" in capsys.readouterr().err
    rows = pd.read_csv(csv_out)
    assert list(rows.columns) == ["path", "class_id", "class_name", "probability", "top_class_ids"]
    assert len(rows) == len(pick)
    truth = dict(zip(pick["path"], pick["class_id"]))
    right = sum(truth[p] == c for p, c in zip(rows["path"], rows["class_id"]))
    assert right >= 0.8 * len(rows), rows
    assert all(int(r.split()[0]) == c for r, c in zip(rows["top_class_ids"], rows["class_id"]))
    assert str(root / "cars_train") in rows["path"][0]


def _predict(model_dir, root, class_ids, tmp_path, capsys):
    """python -m common predict loads the saved Hugging Face folder and names official classes."""
    table = splits.select_classes(data.load_table(root), class_ids=class_ids)
    pick = table[table["split"] == "test"].groupby("class_id").head(1)
    out = tmp_path / "pred.csv"
    assert cli(["predict", str(model_dir), *pick["path"], "--csv", str(out), "--top", "3"]) == 0
    assert capsys.readouterr().out.count("| top:") == len(pick)
    rows = pd.read_csv(out)
    assert len(rows) == len(pick) and set(rows["class_id"]) <= set(class_ids)
    assert rows["probability"].between(0, 1).all()
    labels = json.loads((Path(model_dir) / "labels.json").read_text())
    assert [v["class_id"] for v in labels.values()] == sorted(class_ids)


@pytest.mark.parametrize("name,n_classes,runs,class_ids", [
    ("03_vit_finetune", 12, ["balanced", "cap64"], list(range(1, 13))),
    ("04_vit_finetune_10classes", 5, ["balanced"], [2, 3, 5, 7, 11]),
])
def test_fine_tuning_falls_back_visibly_without_the_hub(smoke_run, tmp_path, capsys, name,
                                                        n_classes, runs, class_ids):
    payload = smoke_run["results"][name]
    _check(smoke_run, name, n_classes, runs, files=HF_FILES)
    assert payload["dataset"]["split_sizes"]["test"] == 4 * n_classes  # the official test
    for run in payload["runs"]:
        assert len(run["history"]["loss"]) == run["params"]["epochs"]
        weights = run["weights"]
        assert weights["source"] == "random-init" and weights["pretrained"] is False
        assert weights["requested"] == payload["params"]["checkpoint"]
        assert weights["reason"].startswith("pretrained unavailable: hub unreachable")
        assert "not in the local cache" in weights["reason"]
    for suffix in ("_predictions.png", "_attention.png", "_curves.png"):
        assert any(f.endswith(suffix) for f in payload["figures"]), suffix
    assert "Avertissement : poids pré-entraînés indisponibles" in smoke_run["executed"][name]
    # the model is shown, module by module, with its head for the task's classes
    assert "ViTForImageClassification(" in smoke_run["executed"][name]
    assert f"out_features={n_classes}" in smoke_run["executed"][name]
    assert "WARNING" in smoke_run["stderr"][name]
    _predict(_model_dir(smoke_run, payload["runs"][0]), smoke_run["data"], class_ids, tmp_path,
             capsys)


def test_05_efficientnet_and_predict(smoke_run):
    payload = smoke_run["results"]["05_efficientnet"]
    _check(smoke_run, "05_efficientnet", 12, ["efficientnetb0-gele", "efficientnetb0-degele"])
    for run in payload["runs"]:
        assert run["weights"]["source"] == "random-init"
        assert run["weights"]["reason"].startswith("pretrained unavailable:")
    pred = predictor.Predictor(_model_dir(smoke_run, payload["runs"][-1]))
    rows = pred.predict_files(list(data.load_table(smoke_run["data"])["path"][:3]), top=2)
    assert all(1 <= r["class_id"] <= 12 and len(r["top"]) == 2 for r in rows)


# --------------------------------------------------------------------------- refusals

def _execute(smoke_run, monkeypatch, tmp_path, name, profile, **overrides):
    for key, value in smoke_run["env"].items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("VIT_CARS_OUTPUT", str(tmp_path / "out"))
    return notebooks.execute(paths.ROOT / "notebooks" / f"{name}.py", profile,
                             {"data_dir": str(smoke_run["data"]), **overrides}, progress=False)


def test_gpu_profile_stops_without_pretrained_weights(smoke_run, monkeypatch, tmp_path):
    monkeypatch.setenv("VIT_CARS_SKIP_GPU_CHECK", "1")  # no GPU here: reach the weights
    with pytest.raises(Exception) as err:
        _execute(smoke_run, monkeypatch, tmp_path, "03_vit_finetune", "gpu")
    assert type(err.value).__name__ == "PapermillExecutionError"
    message = str(err.value)
    assert "PretrainedUnavailable" in message and "never trains from scratch" in message
    assert "google/vit-base-patch16-224-in21k" in message and "HF_HOME" in message
    assert results.read("gpu", "03_vit_finetune") is None
    assert not paths.models_dir("gpu", "03_vit_finetune").exists()


def test_05_gpu_profile_refuses_random_weights(smoke_run, monkeypatch, tmp_path):
    from papermill.exceptions import PapermillExecutionError

    monkeypatch.setenv("VIT_CARS_SKIP_GPU_CHECK", "1")  # no GPU here: reach the weights
    with pytest.raises(PapermillExecutionError, match="WeightsUnavailable"):
        _execute(smoke_run, monkeypatch, tmp_path, "05_efficientnet", "gpu", image_size=32,
                 weights=str(tmp_path / "absent.h5"), data_dir=str(smoke_run["data"]))
    assert results.read("gpu", "05_efficientnet") is None
    assert not (tmp_path / "out" / "models" / "gpu" / "05_efficientnet").exists()


def test_misspelt_key_in_a_run_stops_the_notebook_before_training(smoke_run, monkeypatch,
                                                                   tmp_path):
    import papermill
    from papermill.exceptions import PapermillExecutionError

    # through python -m common run (make run): refused before any kernel starts
    with pytest.raises(loading.ConfigError, match="'epochz'.*accepted keys"):
        _execute(smoke_run, monkeypatch, tmp_path, "01_vit_scratch", "smoke", epochz=3)
    # through papermill directly: the notebook's first code cell stops it
    runs = [{"name": "typo", "network": {"image_size": 24, "patch_size": 6},
             "learning_rate": 0.1}]  # a key of the optimiser group, written flat
    source = tmp_path / "01.ipynb"
    import jupytext

    jupytext.write(jupytext.read(paths.ROOT / "notebooks" / "01_vit_scratch.py"), source,
                   fmt="ipynb")
    with pytest.raises(PapermillExecutionError) as err:
        papermill.execute_notebook(str(source), str(tmp_path / "out.ipynb"),
                                   parameters={"profile": "smoke",
                                               "data_dir": str(smoke_run["data"]),
                                               "overrides": {"runs": runs}},
                                   cwd=str(paths.ROOT), progress_bar=False)
    message = str(err.value)
    assert "ConfigError" in message and "'learning_rate'" in message
    assert "write optimiser.learning_rate" in message
    assert "params/smoke/01_vit_scratch.yaml" in message and "in run 'typo'" in message
    assert not (tmp_path / "out" / "models").exists()


def test_one_test_set_per_task(smoke_run):
    """01, 03 and 05 are scored on the same test images, 02 and 04 on the 10 classes' part
    of that test set: equal fingerprints, and every run scored on the whole test set."""
    res = smoke_run["results"]
    tests = {n: payload["dataset"]["test_set"] for n, payload in res.items()}
    assert tests["01_vit_scratch"] == tests["03_vit_finetune"] == tests["05_efficientnet"]
    assert tests["02_vit_scratch_10classes"] == tests["04_vit_finetune_10classes"]
    assert tests["01_vit_scratch"]["fingerprint"] != tests["02_vit_scratch_10classes"][
        "fingerprint"]
    assert tests["02_vit_scratch_10classes"]["images"] == 5 * 4  # 4 test images per class
    for name, payload in res.items():
        assert {r["metrics"]["test_images"] for r in payload["runs"]} == {tests[name]["images"]}
    whole = splits.select_classes(data.load_table(smoke_run["data"]))
    ten = whole[(whole["split"] == "test") & whole["class_id"].isin([2, 3, 5, 7, 11])]
    # the images and the study's one crop they are read with
    assert tests["02_vit_scratch_10classes"]["crop"] == "crop squash"
    assert splits.inputs_fingerprint(splits.row_ids(ten), "crop squash") == \
        tests["02_vit_scratch_10classes"]["fingerprint"]


def test_a_name_papermill_injects_that_the_notebook_does_not_declare_stops_it(smoke_run,
                                                                              tmp_path):
    """`papermill ... -p epochs 3`: the notebook stops at once, with one line naming the
    parameter and the overrides form that would work."""
    import subprocess
    import sys

    import jupytext

    source = tmp_path / "01.ipynb"
    jupytext.write(jupytext.read(paths.ROOT / "notebooks" / "01_vit_scratch.py"), source,
                   fmt="ipynb")
    proc = subprocess.run(
        [sys.executable, "-m", "papermill", str(source), str(tmp_path / "out.ipynb"),
         "--cwd", str(paths.ROOT), "-p", "profile", "smoke", "-p", "data_dir",
         str(smoke_run["data"]), "-p", "epochs", "3", "--no-progress-bar"],
        env=smoke_run["env"], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    line = ("ConfigError: unknown parameter 'epochs': 01_vit_scratch declares only profile, "
            "data_dir, overrides; pass it as -y '{overrides: {runs.*.epochs: 3}}'")
    assert line in proc.stderr
    executed = json.loads((tmp_path / "out.ipynb").read_text())
    outputs = [o for c in executed["cells"] for o in c.get("outputs", [])
               if o.get("output_type") == "error"]
    assert len(outputs) == 1 and outputs[0]["traceback"] == [line]
