"""Reading a notebook's parameters: the study file, the notebook's file, the overrides, one
check of every key and value.

:func:`load` reads ``params/<profile>/study.yaml`` (the data and the split that every
notebook shares) and ``params/<profile>/<notebook>.yaml`` (what differs from the defaults of
:mod:`common.config.schema`), merges each run with the file's ``defaults``, applies the
overrides and validates the whole with pydantic. Anything wrong (an unknown key, a wrong
type, a value out of range, a patch that does not divide the image) raises
:class:`ConfigError`: one line naming the file, the key and what is allowed.

Overrides (papermill's ``overrides`` parameter, ``make ... PARAMS="-p KEY VALUE"``):

- ``KEY``: a key of the notebook (``seed``, ``runs``...) or of the study (``split_seed``,
  ``data_dir``...);
- ``runs.NAME.KEY``: one key of one run, e.g. ``runs.improved-hybrid.epochs``, or of one of
  its groups, e.g. ``runs.improved-hybrid.network.transformer_layers``;
- ``runs.*.KEY``: that key in every run;
- ``BLOCK.KEY``: one key of a block, e.g. ``frozen.epochs`` or ``fallback.training.epochs``.

A profile name ending in ``-dry`` (``gpu-dry``) is that profile's dry run: the same models
and settings, with only the amounts shrunk (:func:`shrink`).
"""

from __future__ import annotations

import copy
import types
import typing
from pathlib import Path

import annotated_types
import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from common.config import schema
from common.config.study import NOTEBOOKS, PROFILES
from common.core import paths

DRY = "-dry"
# the names a notebook's parameters cell declares (papermill may inject these only)
NOTEBOOK_PARAMETERS = ("profile", "data_dir", "overrides")
# A dry run keeps every setting but the amounts: batches of at most 4 images, 1 epoch per
# stage, 2 steps per epoch (8 training images), at most 16 evaluation images per split; and
# no torch.compile of the Keras models (jit_compile), which takes minutes a model on a CPU
# (tests/test_dry_run.py compiles a tiny one).
DRY_RUN_BATCH = 4
DRY_RUN_LIMITS = {"train": 2 * DRY_RUN_BATCH, "evaluation": 16}
OVERRIDE_FORMS = "KEY, runs.NAME.KEY, runs.*.KEY or BLOCK.KEY"


class ConfigError(ValueError):
    """A parameter file or override that cannot be used; the message names the file, the
    key and what is allowed. In a notebook it shows as that one line, without traceback."""

    def _render_traceback_(self):  # IPython shows this instead of a traceback
        return [f"ConfigError: {self}"]


def split_profile(profile: str) -> tuple[str, bool]:
    """``"gpu-dry"`` -> ``("gpu", True)``; refuses an unknown profile."""
    base = profile[:-len(DRY)] if profile.endswith(DRY) else profile
    if base not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}: use one of {', '.join(PROFILES)} "
                          f"(or {PROFILES[-1]}{DRY}, a dry run)")
    return base, profile != base


def _read(file: Path, required: bool = True) -> dict:
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        if not required:
            return {}
        raise ConfigError(f"no parameter file {_shown(file)}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{_shown(file)} is not valid YAML: "
                          f"{' '.join(str(exc).split())}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{_shown(file)} must be a mapping of parameter names to values")
    return raw


def _shown(file: Path) -> str:
    file = Path(file)
    return str(file.relative_to(paths.ROOT)) if file.is_relative_to(paths.ROOT) else str(file)


def user_keys(model: type[BaseModel]) -> list[str]:
    """The keys a parameter file may give for ``model``."""
    return sorted(k for k in model.model_fields if k not in schema.LOADER_KEYS)


def _unknown(key: str, accepted, where: str, file: Path,
             owner: type[BaseModel] | None = None) -> ConfigError:
    leaf = key.rsplit(".", 1)[-1]
    groups = [name for name, field in (owner.model_fields.items() if owner else ())
              if (group := model_in(field.annotation)) is not None
              and leaf in group.model_fields]
    if leaf in schema.Study.model_fields:
        hint = (f" ({leaf} is a key of the study file, params/<profile>/study.yaml: one value "
                f"for every notebook)")
    elif groups:
        hint = f" (it is a key of the {groups[0]} group: write {groups[0]}.{leaf})"
    else:
        hint = ""
    return ConfigError(f"{_shown(file)}: unknown key {key!r} {where}{hint}; accepted keys: "
                       f"{', '.join(accepted)}")


def _merged(defaults: dict, run: dict) -> dict:
    """A run's keys over the file's ``defaults``, group by group: a group the run gives
    (``network: {...}``) keeps the defaults' keys it does not give."""
    out = copy.deepcopy(defaults)
    for key, value in run.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _set_dotted(values: dict, key: str, value, model: type[schema.Notebook],
                file: Path) -> None:
    """Apply one dotted override (``runs.NAME.KEY``, ``runs.*.KEY``, ``BLOCK.KEY``)."""
    head, _, rest = key.partition(".")
    if head == "runs" and "runs" in model.model_fields:
        name, _, field = rest.partition(".")
        runs = values.get("runs") or []
        chosen = runs if name == "*" else [r for r in runs if r.get("name") == name]
        if not field or not chosen:
            raise ConfigError(
                f"{_shown(file)}: override {key!r} names no run; use runs.NAME.KEY with NAME "
                f"one of {', '.join(str(r.get('name')) for r in runs)}, or runs.*.KEY")
        for run in chosen:
            _set_path(run, field.split("."), value)
        return
    if head not in model.model_fields or head in schema.LOADER_KEYS:
        raise _unknown(key, user_keys(model), f"in the overrides (forms: {OVERRIDE_FORMS})",
                       file)
    block = values.setdefault(head, {})
    if not isinstance(block, dict):
        raise ConfigError(f"{_shown(file)}: override {key!r}: {head} is not a block of keys")
    _set_path(block, rest.split("."), value)


def _set_path(target: dict, parts: list[str], value) -> None:
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value


def load(notebook: str, profile: str, dry_run: bool = False, data_dir=None,
         **overrides) -> schema.Notebook:
    """The checked parameters of ``notebook`` for ``profile`` (``<profile>-dry`` or
    ``dry_run``: its dry run), with ``overrides`` on top and ``data_dir`` (when not None)
    replacing the study's. Returns the notebook's model of :mod:`common.config.schema`,
    with ``profile``, ``dry_run``, ``file`` and ``study`` set. Raises :class:`ConfigError`."""
    notebook = Path(notebook).stem
    if notebook not in schema.SCHEMAS:
        raise ConfigError(f"unknown notebook {notebook!r}; the notebooks are "
                          f"{', '.join(NOTEBOOKS)}")
    profile, dry = split_profile(profile)
    dry = dry or bool(dry_run)
    model = schema.SCHEMAS[notebook]
    file = paths.params_file(profile, notebook)
    study_file = paths.params_file(profile, "study")
    values, study = _read(file), _read(study_file, required=False)
    for key in values:
        if key not in user_keys(model) and key != "defaults":
            where = ("belongs in " + _shown(study_file)) if key in schema.Study.model_fields \
                else "at the top level"
            raise _unknown(key, user_keys(model), where, file)
    defaults = values.pop("defaults", None) or {}
    if defaults and "runs" not in model.model_fields:
        raise _unknown("defaults", user_keys(model), "at the top level", file)
    if not isinstance(defaults, dict):
        raise ConfigError(f"{_shown(file)}: `defaults` must be a mapping of run keys")
    dotted = {}
    for key, value in overrides.items():
        if "." in key:
            dotted[key] = value
        elif key in schema.Study.model_fields:
            study[key] = value
        elif key in user_keys(model):
            values[key] = value
        else:
            raise _unknown(key, user_keys(model) + user_keys(schema.Study),
                           f"in the overrides (forms: {OVERRIDE_FORMS})", file)
    if data_dir is not None and str(data_dir) != "":
        study["data_dir"] = str(data_dir)
    if isinstance(values.get("runs"), list):
        values["runs"] = [_merged(defaults, r) if isinstance(r, dict) else r
                          for r in values["runs"]]
    for key, value in dotted.items():
        _set_dotted(values, key, value, model, file)
    try:
        study_params = schema.Study.model_validate(study)
    except ValidationError as exc:
        raise ConfigError(one_line(exc, schema.Study, study, study_file)) from None
    try:
        params = model.model_validate({**values, "profile": profile, "dry_run": dry,
                                       "file": _shown(file), "study": study_params})
    except ValidationError as exc:
        raise ConfigError(one_line(exc, model, values, file)) from None
    _check_init_from(notebook, profile, params, file)
    return shrink(params) if dry else params


def _check_init_from(notebook: str, profile: str, params: schema.Notebook, file: Path) -> None:
    """``init_from`` names a run of the notebook this one starts from (its ``starts_from``
    in the table of notebooks: 02 from 01), of the same profile, whose network has the shape
    this run's network group gives (``VitNetwork.SHAPE_KEYS``)."""
    wanted = [r for r in getattr(params, "runs", []) if getattr(r, "init_from", None)]
    if not wanted:
        return
    source = NOTEBOOKS[notebook].starts_from
    if source is None:
        starters = [f"{n} from {e.starts_from}" for n, e in NOTEBOOKS.items() if e.starts_from]
        raise ConfigError(f"{_shown(file)}: in run {wanted[0].name!r}: init_from: {notebook} "
                          f"starts from no other notebook's network (only "
                          f"{', '.join(starters)})")
    first = {r.name: r for r in load(source, profile).runs}
    for run in wanted:
        if run.init_from not in first:
            raise ConfigError(f"{_shown(file)}: in run {run.name!r}: init_from "
                              f"{run.init_from!r} is not a run of "
                              f"params/{profile}/{source}.yaml ({', '.join(first)})")
        mine, theirs = run.network, first[run.init_from].network
        for key in schema.VitNetwork.SHAPE_KEYS:  # the network is 01's: its shape must agree
            if getattr(mine, key) != getattr(theirs, key):
                raise ConfigError(
                    f"{_shown(file)}: in run {run.name!r}: network.{key} is "
                    f"{getattr(mine, key)!r} but the network it starts from "
                    f"(params/{profile}/{source}.yaml, run {run.init_from!r}) has "
                    f"{getattr(theirs, key)!r}: set network.{key} as there")


# --------------------------------------------------------------------------- messages

def one_line(exc: ValidationError, model: type[BaseModel], values: dict, file: Path) -> str:
    """pydantic's first error as one line: the file, where, the key, what is allowed."""
    errors = exc.errors(include_url=False)
    # an unknown key first: a key in the wrong place also leaves the right place empty
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = list(first["loc"])
    where, owner = [], model
    if loc and loc[0] == "runs" and len(loc) > 1 and isinstance(loc[1], int):
        runs = values.get("runs") or []
        run = runs[loc[1]] if loc[1] < len(runs) and isinstance(runs[loc[1]], dict) else {}
        where.append(f"run {run.get('name', loc[1])!r}")
        owner = model.model_fields["runs"].annotation
        owner = model_in(owner)
        loc = loc[2:]
    # descend into the groups (a group's own check, a value_error, is the group's)
    while (len(loc) > 1 or loc and first["type"] == "value_error") \
            and isinstance(owner, type) and loc[0] in owner.model_fields:
        nested = model_in(owner.model_fields[loc[0]].annotation)
        if nested is None:
            break
        where.append(str(loc[0]))
        owner, loc = nested, loc[1:]
    key = ".".join(str(part) for part in loc)
    place = f"in {' '.join(where)}" if where else "at the top level"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if first["type"] == "extra_forbidden":
        return str(_unknown(key, user_keys(owner) if owner else [], place, file, owner)) + more
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "missing":
        return f"{_shown(file)}: {place}, {key!r} is required{more}"
    field = owner.model_fields.get(str(loc[0])) if owner and loc else None
    allowed = f"; allowed: {describe(field)}" if field is not None and len(loc) == 1 else ""
    got = f" (got {first['input']!r})" if key and len(loc) == 1 else ""
    label = f"{key}: " if key else ""
    return f"{_shown(file)}: {place}: {label}{message}{got}{allowed}{more}"


def model_in(annotation):
    """The pydantic model inside an annotation (list[Run], Model | None...), or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = model_in(arg)
        if found is not None:
            return found
    return None


_BOUNDS = ((annotated_types.Gt, "> {}"), (annotated_types.Ge, "≥ {}"),
           (annotated_types.Lt, "< {}"), (annotated_types.Le, "≤ {}"))


def describe(field: FieldInfo | typing.Any) -> str:
    """What a key allows, in words: 'an integer ≥ 1', 'a number > 0 and < 1', 'null'..."""
    if isinstance(field, FieldInfo):
        return _describe(field.annotation, list(field.metadata))
    return _describe(field, [])


def _describe(tp, meta: list) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *more = typing.get_args(tp)
        return _describe(base, meta + more)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        parts = [_describe(a, meta) for a in args if a is not type(None)]
        return " or ".join(parts + (["null"] if type(None) in args else []))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    flat = []
    for m in meta:
        flat.extend(m.metadata if isinstance(m, FieldInfo) else [m])
    bounds = [text.format(getattr(m, kind.__name__.lower()))
              for m in flat for kind, text in _BOUNDS if isinstance(m, kind)]
    if tp is bool:
        word = "true or false"
    elif tp is int:
        word = "an integer"
    elif tp is float:
        word = "a number"
    elif tp is str:
        word = "text"
    elif origin in (list, tuple):
        word = "a list"
    elif isinstance(tp, type) and issubclass(tp, BaseModel):
        word = "a mapping of " + ", ".join(user_keys(tp))
    else:
        word = getattr(tp, "__name__", str(tp))
    return word + (" " + " and ".join(bounds) if bounds else "")


def suggestion(name: str, value, notebook: str) -> str:
    """The ``overrides`` form that sets ``name`` for ``notebook``, as papermill's YAML
    option: ``-y '{overrides: {runs.*.epochs: 3}}'``."""
    model = schema.SCHEMAS.get(Path(notebook).stem, schema.Notebook)
    run_model = model_in(model.model_fields["runs"].annotation) \
        if "runs" in model.model_fields else None
    if name in user_keys(model) or name in schema.Study.model_fields:
        key = name
    elif run_model is not None and name in run_model.model_fields:
        key = f"runs.*.{name}"
    elif run_model is not None and (groups := [
            k for k, f in run_model.model_fields.items()
            if (m := model_in(f.annotation)) is not None and name in m.model_fields]):
        key = f"runs.*.{groups[0]}.{name}"
    else:
        blocks = [k for k, f in model.model_fields.items() if k not in schema.LOADER_KEYS
                  and (m := model_in(f.annotation)) is not None and name in m.model_fields]
        if not blocks:
            return (f"{name!r} is not a parameter of this notebook; its keys: "
                    f"{', '.join(user_keys(model))}")
        key = f"{blocks[0]}.{name}"
    shown = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    return f"pass it as -y '{{overrides: {{{key}: {shown}}}}}'"


# --------------------------------------------------------------------------- dry runs

def shrink(params: schema.Notebook) -> schema.Notebook:
    """The amounts of a dry run (see :data:`DRY_RUN_LIMITS`): every other setting stays."""
    def small(model, *keys):
        return model.model_copy(update={k: min(getattr(model, k), DRY_RUN_BATCH)
                                        for k in keys if hasattr(model, k)})

    update = {}
    if isinstance(params, (schema.KerasVitNotebook, schema.HfNotebook)):
        runs = []
        for run in params.runs:
            run = small(run, "batch_size", "eval_batch_size")
            changes = {"epochs": 1}
            if isinstance(run, schema.KerasVitRun):
                changes.update(select_from_epoch=1,
                               optimiser=run.optimiser.model_copy(update={"warmup_epochs": 0}),
                               jit_compile=False if run.jit_compile is True else run.jit_compile)
            else:
                changes["train_eval_images"] = min(run.train_eval_images,
                                                   DRY_RUN_LIMITS["evaluation"])
            runs.append(run.model_copy(update=changes))
        update["runs"] = runs
    if isinstance(params, schema.HfNotebook) and params.fallback:
        training = params.fallback.training.model_copy(update={"epochs": 1})
        update["fallback"] = params.fallback.model_copy(update={"training": training})
    if isinstance(params, schema.EfficientNetNotebook):
        update.update(batch_size=min(params.batch_size, DRY_RUN_BATCH),
                      jit_compile=False if params.jit_compile is True else params.jit_compile,
                      frozen=params.frozen.model_copy(update={"epochs": 1}),
                      unfrozen=params.unfrozen.model_copy(update={"epochs": 1}))
    return params.model_copy(update=update)


def limits(params: schema.Notebook) -> dict | None:
    """The most images per split of a dry run (None otherwise)."""
    return dict(DRY_RUN_LIMITS) if params.dry_run else None


def as_record(params: schema.Notebook) -> dict:
    """Every parameter actually used, as the results file records them."""
    return params.model_dump(mode="json")
