"""The configuration layer: every parameter file loads, holds only what differs from the
typed defaults, and a bad key or value stops before any kernel with one line naming the
file, the key and what is allowed."""

from __future__ import annotations

import pytest
import yaml

from common.config import loading, schema
from common.config.study import NOTEBOOKS, PROFILES
from common.core import paths
from common.pipeline import notebooks, opening


@pytest.mark.parametrize("profile", PROFILES)
def test_every_parameter_file_opens_with_at_most_eight_lines(profile):
    """A params file says what it is (the command, the expected duration and accuracy, the
    commit they were measured at) in a header of at most 8 lines; the history of what was
    tried lives in the journal (explorations/) and the report."""
    for file in sorted((paths.ROOT / "params" / profile).glob("*.yaml")):
        lines = file.read_text().splitlines()
        header = next((i for i, line in enumerate(lines) if not line.startswith("#")),
                      len(lines))
        assert header <= 8, f"{file.name}: a header of {header} lines"


@pytest.mark.parametrize("profile", [*PROFILES, "gpu-dry"])
@pytest.mark.parametrize("notebook", list(NOTEBOOKS))
def test_every_parameter_file_loads(profile, notebook):
    p = loading.load(notebook, profile)
    assert isinstance(p, schema.SCHEMAS[notebook])
    assert p.outputs == profile and p.file == f"params/{profile.split('-')[0]}/{notebook}.yaml"
    raw = yaml.safe_load(paths.params_file(p.profile, notebook).read_text())
    for key, value in raw.items():
        if key not in ("runs", "defaults") and not p.dry_run:
            got = getattr(p, key)
            if hasattr(got, "model_dump"):  # a block: the keys the file gives
                got = {k: v for k, v in got.model_dump(exclude_none=True).items() if k in value}
            assert got == value, key


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("notebook", [*NOTEBOOKS, "study"])
def test_parameter_files_hold_only_what_differs_from_the_defaults(profile, notebook):
    model = schema.Study if notebook == "study" else schema.SCHEMAS[notebook]
    raw = yaml.safe_load(paths.params_file(profile, notebook).read_text()) or {}
    for key, value in raw.items():
        field = model.model_fields.get(key)
        if field is not None and not field.is_required():
            default = field.get_default()
            default = default.model_dump() if hasattr(default, "model_dump") else default
            assert value != default, f"{profile}/{notebook}.yaml restates the default of {key}"


def test_every_key_has_a_type_a_default_or_required_and_a_docstring():
    models = {schema.Study, schema.KerasVitRun, schema.HfRun, schema.HfFallback,
              schema.UnfrozenStage, *schema.SCHEMAS.values()}
    for model in models:
        for key, field in model.model_fields.items():
            assert field.description and "\n" not in field.description, (model, key)
            assert field.annotation is not None


def test_overrides_reach_one_run_every_run_a_block_and_the_study():
    p = loading.load("01_vit_scratch", "cpu", **{"runs.improved-hybrid.epochs": 3})
    assert {r.name: r.epochs for r in p.runs}["improved-hybrid"] == 3
    assert {r.name: r.epochs for r in p.runs}["72px-patch6"] == 2  # the file's defaults
    p = loading.load("03_vit_finetune", "cpu", **{"runs.*.epochs": 1, "split_seed": 7})
    assert [r.epochs for r in p.runs] == [1, 1] and p.study.split_seed == 7
    p = loading.load("05_efficientnet", "cpu", **{"frozen.epochs": 1, "seed": 3})
    assert p.frozen.epochs == 1 and p.seed == 3 and p.unfrozen.epochs == 2
    p = loading.load("02_vit_scratch_10classes", "cpu", runs=[
        {"name": "one", "network": {"image_size": 32, "patch_size": 4}}])
    assert [r.name for r in p.runs] == ["one"] and p.runs[0].epochs == 2  # file defaults


def test_a_runs_settings_are_grouped_and_overrides_reach_a_group_key():
    """A run's network, optimiser and augmentation are groups: a dotted override reaches
    one key of a group and leaves its other keys; the file's defaults fill a group key by
    key (smoke: the defaults' narrow network, each run's own image and patch sizes)."""
    p = loading.load("01_vit_scratch", "cpu", **{
        "runs.improved-hybrid.network.transformer_layers": 6,
        "runs.*.optimiser.learning_rate": 0.01})
    run = {r.name: r for r in p.runs}["improved-hybrid"]
    assert run.network.transformer_layers == 6 and run.network.stem_channels == [16, 32, 64, 64]
    assert {r.optimiser.learning_rate for r in p.runs} == {0.01}
    assert run.optimiser.schedule == "linear" and run.augmentation.mixup_alpha == 0.8
    smoke = {r.name: r.network for r in loading.load("01_vit_scratch", "smoke").runs}
    assert smoke["32px-patch6"].projection_dim == 16 and smoke["32px-patch6"].image_size == 32
    assert smoke["improved-hybrid"].stem_channels == [8, 16]
    assert smoke["improved-hybrid"].mlp_head_units == [32]


def test_a_key_outside_its_group_is_refused_naming_its_group(tmp_path, monkeypatch):
    """A run key written flat (as before the groups) is refused in one line that says which
    group it belongs to, in an override as in a file; it is never read as the group's."""
    with pytest.raises(loading.ConfigError) as err:
        loading.load("01_vit_scratch", "cpu", **{"runs.improved-hybrid.image_size": 64})
    message = str(err.value)
    assert "\n" not in message and "unknown key 'image_size' in run 'improved-hybrid'" in message
    assert "network group: write network.image_size" in message
    import shutil

    shutil.copytree(paths.ROOT / "params" / "cpu", tmp_path / "cpu")
    file = tmp_path / "cpu" / "02_vit_scratch_10classes.yaml"
    file.write_text(file.read_text().replace("    epochs: 120\n", "    epochs: 120\n"
                                             "    mixup_alpha: 0.2\n"))
    monkeypatch.setattr(paths, "params_file", lambda profile, nb: tmp_path / profile / f"{nb}.yaml")
    with pytest.raises(loading.ConfigError) as err:
        loading.load("02_vit_scratch_10classes", "cpu")
    assert "02_vit_scratch_10classes.yaml" in str(err.value)
    assert "augmentation group: write augmentation.mixup_alpha" in str(err.value)


@pytest.mark.parametrize("notebook,overrides,words", [
    ("01_vit_scratch", {"runs": [{"name": "x", "network": {"image_size": 32, "patch_size": 4},
                                  "epochs": "ten"}]}, ["run 'x'", "epochs", "integer ≥ 1"]),
    ("01_vit_scratch", {"runs.*.optimiser.learning_rate": -0.001},
     ["optimiser: learning_rate", "> 0"]),
    ("01_vit_scratch", {"runs": [{"name": "x", "network": {"image_size": 32, "patch_size": 5}}]},
     ["run 'x' network", "patch_size 5 does not divide image_size 32"]),
    ("01_vit_scratch", {"epochz": 3}, ["unknown key 'epochz'", "accepted keys:"]),
    ("01_vit_scratch", {"runs.improved-hybrid.crop_mode": "bbox"},
     ["unknown key 'crop_mode' in run 'improved-hybrid' (crop_mode is a key of the study "
      "file, params/<profile>/study.yaml: one value for every notebook)"]),
    ("01_vit_scratch", {"runs.improved-hybrid.optimiser.learning_rat": 0.1},
     ["unknown key 'learning_rat'", "run 'improved-hybrid' optimiser", "accepted keys:"]),
    ("01_vit_scratch", {"runs.nope.epochs": 1}, ["names no run", "improved-hybrid"]),
    ("03_vit_finetune", {"runs": [{"name": "b", "balanse": True}]},
     ["unknown key 'balanse'", "run 'b'"]),
    ("03_vit_finetune", {"runs.*.warmup_ratio": 1.5}, ["warmup_ratio", "< 1"]),
    ("04_vit_finetune_10classes", {"fallback.training.epoch": 1},
     ["unknown key 'epoch'", "fallback training"]),
    ("05_efficientnet", {"frozen.epochs": 0}, ["frozen", "epochs", "integer ≥ 1"]),
    ("05_efficientnet", {"val_fraction": 1.5}, ["study.yaml", "val_fraction", "< 1"]),
    ("03_vit_finetune", {"runs": [{"name": "a"}, {"name": "a"}]}, ["two runs are named 'a'"]),
    ("01_vit_scratch", {"runs.improved-hybrid.init_from": "x"}, ["init_from", "only 02"]),
    ("02_vit_scratch_10classes", {"runs.improved-hybrid.init_from": "nope"},
     ["init_from 'nope' is not a run of params/cpu/01_vit_scratch.yaml"]),
])
def test_a_bad_key_or_value_is_one_line_naming_the_file_and_the_key(notebook, overrides,
                                                                    words):
    with pytest.raises(loading.ConfigError) as err:
        loading.load(notebook, "cpu", **overrides)
    message = str(err.value)
    assert "\n" not in message and message.startswith("params/cpu/")
    for word in words:
        assert word in message, (word, message)


def test_a_wrong_value_in_a_file_names_that_file(tmp_path, monkeypatch):
    import shutil

    shutil.copytree(paths.ROOT / "params" / "smoke", tmp_path / "smoke")
    bad = tmp_path / "smoke" / "05_efficientnet.yaml"
    bad.write_text(bad.read_text() + "image_size: big\n")
    monkeypatch.setattr(paths, "params_file", lambda profile, nb: tmp_path / profile / f"{nb}.yaml")
    with pytest.raises(loading.ConfigError, match=r"05_efficientnet.yaml: at the top level: "
                                                  r"image_size: .*'big'.*integer ≥ 1"):
        loading.load("05_efficientnet", "smoke")
    bad.write_text("profile: smoke\n")
    with pytest.raises(loading.ConfigError, match="unknown key 'profile'"):
        loading.load("05_efficientnet", "smoke")


def test_unknown_profile_and_notebook():
    with pytest.raises(loading.ConfigError, match="unknown profile 'foo'.*smoke, cpu, gpu"):
        loading.load("01_vit_scratch", "foo")
    with pytest.raises(loading.ConfigError, match="unknown notebook"):
        loading.load("06_other", "smoke")


def test_a_dry_run_shrinks_amounts_only():
    full, dry = loading.load("03_vit_finetune", "gpu"), loading.load("03_vit_finetune", "gpu-dry")
    assert dry.dry_run and dry.outputs == "gpu-dry" and loading.limits(dry)
    assert [r.epochs for r in dry.runs] == [1, 1] and dry.runs[0].batch_size <= 4
    assert dry.runs[0].attention == full.runs[0].attention and dry.checkpoint == full.checkpoint


def test_papermill_names_the_notebook_does_not_declare_stop_with_the_overrides_form():
    namespace = {"profile": "cpu", "data_dir": None, "overrides": {}, "epochs": 3,
                 "In": [], "Out": {}, "_i1": "", "get_ipython": print}
    assert opening.injected_unknown(namespace) == ["epochs"]
    with pytest.raises(loading.ConfigError) as err:
        opening.start("01_vit_scratch", namespace)
    message = str(err.value)
    assert "unknown parameter 'epochs'" in message and "\n" not in message
    assert "-y '{overrides: {runs.*.epochs: 3}}'" in message
    assert err.value._render_traceback_() == [f"ConfigError: {message}"]  # one line in Jupyter
    assert "frozen.epochs: 3" in loading.suggestion("epochs", 3, "05_efficientnet")


def test_make_params_with_a_notebook_prefix_reach_that_notebook_only():
    overrides = {"01.runs.improved-hybrid.epochs": 3, "seed": 7}
    assert notebooks.for_notebook("01_vit_scratch", overrides) == {
        "runs.improved-hybrid.epochs": 3, "seed": 7}
    assert notebooks.for_notebook("03_vit_finetune", overrides) == {"seed": 7}
    with pytest.raises(loading.ConfigError, match="no notebook 07"):
        notebooks.for_notebook("01_vit_scratch", {"07.seed": 1})


def test_as_record_keeps_every_value():
    p = loading.load("05_efficientnet", "smoke", seed=3)
    record = loading.as_record(p)
    assert record["file"] == "params/smoke/05_efficientnet.yaml" and record["seed"] == 3
    assert record["frozen"] == p.frozen.model_dump() and record["study"]["split_seed"] == 0


@pytest.mark.parametrize("notebook", list(NOTEBOOKS))
def test_every_notebook_opens_with_the_same_three_cells(notebook):
    """The parameters cell holds only profile (cpu), data_dir and overrides, then one call
    loads parameters, data and splits, and one call shows them: opened as it is, the
    notebook runs the cpu profile."""
    import jupytext

    nb = jupytext.read(paths.ROOT / "notebooks" / f"{notebook}.py")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    namespace = {}
    exec(code[0].source, namespace)
    namespace.pop("__builtins__")
    assert namespace == {"profile": "cpu", "data_dir": None, "overrides": {}}
    assert f'session = opening.start("{notebook}", globals())' in code[1].source
    assert code[2].source.strip() == "opening.show(session)"
    assert sum("parameters" in c.metadata.get("tags", []) for c in nb.cells) == 1


def test_a_run_that_starts_from_01_with_another_shape_is_refused_on_loading():
    """02's improved run starts from 01's network: a key that shapes the network (here the
    width of the heads) set otherwise is one line, before any kernel, naming the key and 01's
    value (it once reached the training as a shape mismatch deep in the notebook)."""
    with pytest.raises(loading.ConfigError) as err:
        loading.load("02_vit_scratch_10classes", "cpu",
                     **{"runs.improved-hybrid.network.key_dim": 32})
    message = str(err.value)
    assert "\n" not in message and "network.key_dim is 32" in message and "has 16" in message
    for profile in PROFILES:  # every profile's own files agree
        loading.load("02_vit_scratch_10classes", profile)


def test_one_table_defines_the_notebooks():
    """The table of notebooks names every notebook source, params file and schema, and a
    notebook starts only from the networks of one that runs before it, of its kind."""
    names = list(NOTEBOOKS)
    assert sorted(p.stem for p in (paths.ROOT / "notebooks").glob("[0-9]*.py")) == names
    for profile in PROFILES:
        assert sorted(p.stem for p in (paths.ROOT / "params" / profile).glob("[0-9]*.yaml")) \
            == names
    for name, entry in NOTEBOOKS.items():
        assert schema.SCHEMAS[name].__name__ == entry.schema
        if entry.starts_from:
            source = NOTEBOOKS[entry.starts_from]
            assert names.index(entry.starts_from) < names.index(name)
            assert source.kind == entry.kind == "scratch"
