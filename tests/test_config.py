"""The configuration layer: every parameter file loads, and a misspelt key at any level
stops before training with the key, the file and the accepted keys."""

from __future__ import annotations

import inspect

import pytest
import yaml

from common import config, hf_training, paths


@pytest.mark.parametrize("profile", config.PROFILES)
@pytest.mark.parametrize("notebook", list(config.NOTEBOOKS))
def test_every_parameter_file_loads(profile, notebook):
    p = config.load(notebook, profile)
    assert p.profile == profile and p.file == paths.params_file(profile, notebook)
    raw = yaml.safe_load(p.file.read_text())
    for key, value in raw.items():
        if key not in ("runs", "profile"):
            assert getattr(p, key) == value, key
    for run in getattr(p, "runs", []):
        # each run is the file's defaults with the run's own values on top
        own = next(r for r in raw["runs"] if r["name"] == run["name"])
        assert run == {**(raw.get("defaults") or {}), **own}


def test_overrides_apply_and_none_keeps_the_file_value():
    p = config.load("01_vit_scratch", "smoke", seed=7, data_dir=None)
    assert p.seed == 7 and p.data_dir == "data/synth"
    p = config.load("02_vit_scratch_10classes", "cpu", runs=[{"name": "one", "image_size": 32,
                                                              "patch_size": 4}])
    assert [r["name"] for r in p.runs] == ["one"] and p.runs[0]["epochs"] == 2  # defaults


@pytest.mark.parametrize("notebook,overrides,where", [
    ("01_vit_scratch", {"epochz": 3}, "in the overrides"),
    ("01_vit_scratch", {"runs": [{"name": "a", "image_size": 32, "patch_size": 4,
                                  "learning_rat": 0.1}]}, "in run 'a'"),
    ("01_vit_scratch", {"defaults": {"epochs": 1, "batch_sise": 4}}, "in `defaults`"),
    ("02_vit_scratch_10classes", {"runs": [{"name": "p", "image_size": 32, "patch_size": 4,
                                            "pretrain": {"epochs": 1}}]}, "in run 'p'"),
    ("03_vit_finetune", {"runs": [{"name": "b", "balanse": True}]}, "in run 'b'"),
    ("04_vit_finetune_10classes", {"fallback": {"config": {}, "trainig": {}}}, "in `fallback`"),
    ("04_vit_finetune_10classes", {"fallback": {"config": {}, "training": {"epoch": 1}}},
     "in `fallback.training`"),
    ("05_efficientnet", {"frozen": {"epochs": 1, "learning_rat": 0.1}}, "in `frozen`"),
])
def test_unknown_keys_are_named_with_the_file_and_the_accepted_keys(notebook, overrides,
                                                                     where):
    with pytest.raises(config.ConfigError) as err:
        config.load(notebook, "smoke", **overrides)
    message = str(err.value)
    bad = [k for k in ("epochz", "learning_rat", "batch_sise", "pretrain", "balanse",
                       "trainig", "epoch") if f"'{k}'" in message]
    assert bad and where in message and "accepted keys:" in message
    assert str(paths.params_file("smoke", notebook)) in message


def test_missing_run_keys_unknown_profile_and_notebook():
    with pytest.raises(config.ConfigError, match="run 'a' lacks image_size, patch_size"):
        config.load("01_vit_scratch", "smoke", runs=[{"name": "a"}])
    with pytest.raises(config.ConfigError, match="unknown profile 'foo'.*smoke, cpu, gpu"):
        config.load("01_vit_scratch", "foo")
    with pytest.raises(config.ConfigError, match="unknown notebook"):
        config.load("06_other", "smoke")
    with pytest.raises(config.ConfigError, match="two runs are named 'a'"):
        config.load("03_vit_finetune", "smoke", runs=[{"name": "a"}, {"name": "a"}])


def test_schemas_match_what_the_code_reads():
    """The accepted keys are those the model code uses: a key added there and forgotten
    here (or the reverse) fails."""
    from common import vit

    build = set(inspect.signature(vit.build_vit).parameters) - {
        "num_classes", "image_size", "patch_size", "augmentation", "mean", "variance", "name"}
    assert build <= config.RUN_KEYS["keras_vit"]["optional"]
    assert hf_training.TRAIN_DEFAULTS is config.HF_TRAINING_DEFAULTS
    assert set(config.NOTEBOOKS) == {p.stem for p in (paths.ROOT / "notebooks").glob("0*.py")}
    assert set(config.REFERENCE_2022) == set(config.NOTEBOOKS)


def test_as_record_keeps_every_value_and_a_relative_file():
    p = config.load("05_efficientnet", "smoke", seed=3)
    record = config.as_record(p)
    assert record["file"] == "params/smoke/05_efficientnet.yaml" and record["seed"] == 3
    assert record["frozen"] == p.frozen and "defaults" not in record


@pytest.mark.parametrize("notebook", list(config.NOTEBOOKS))
def test_a_notebook_opened_as_it_is_runs_the_cpu_profile(notebook):
    """The parameters cell holds only profile (cpu), data_dir, overrides and dry_run; nothing
    has to be injected for the next cell to load the cpu parameter file."""
    import jupytext

    nb = jupytext.read(paths.ROOT / "notebooks" / f"{notebook}.py")
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1
    namespace = {}
    exec(cells[0].source, namespace)
    namespace.pop("__builtins__")
    assert namespace == {"profile": "cpu", "data_dir": None, "overrides": {}, "dry_run": False}
    p = config.load(notebook, namespace["profile"], dry_run=namespace["dry_run"],
                    data_dir=namespace["data_dir"], **namespace["overrides"])
    assert p.profile == "cpu" and p.outputs == "cpu"
    assert "config.load(NOTEBOOK, profile, dry_run=dry_run, data_dir=data_dir, **overrides)" \
        in "".join(c.source for c in nb.cells)


def test_init_from_needs_01s_split_and_run(tmp_path, monkeypatch):
    run = {"name": "i", "image_size": 24, "patch_size": 4, "init_from": "improved-hybrid"}
    assert config.load("02_vit_scratch_10classes", "smoke", runs=[run]).runs[0]["init_from"]
    # a parameter file of 02 whose split differs from 01's
    import shutil

    shutil.copytree(paths.ROOT / "params" / "smoke", tmp_path / "smoke")
    other = tmp_path / "smoke" / "02_vit_scratch_10classes.yaml"
    other.write_text(other.read_text().replace("test_fraction: 0.2", "test_fraction: 0.3"))
    with pytest.raises(config.ConfigError, match="init_from 'nope', not a run of"):
        config.load("02_vit_scratch_10classes", "smoke", runs=[{**run, "init_from": "nope"}])
    # an override of the split applies to both notebooks (make's PARAMS does so)
    assert config.load("02_vit_scratch_10classes", "smoke", seed=3).seed == 3
    monkeypatch.setattr(paths, "params_file",
                        lambda profile, nb: tmp_path / profile / f"{nb}.yaml")
    with pytest.raises(config.ConfigError, match="test_fraction is 0.3 but .*01_vit_scratch"):
        config.load("02_vit_scratch_10classes", "smoke")
