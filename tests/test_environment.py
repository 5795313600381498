"""The environment files agree: environment.yml (GPU box, conda), pyproject.toml (pip) and
the locks of exact versions (requirements/*.lock.txt) name the same direct dependencies,
each locked version lies in its declared range, and the project's .venv is the CPU lock."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from common.core import accelerators, paths
from common.results import lockfile

CONDA_TO_PIP = {"pytorch": "torch"}
NOT_PACKAGES = {"python", "pip"}
LOCKS = {"cpu": lockfile.CPU_LOCK, "gpu": lockfile.GPU_LOCK}
# conda's match spec for a build: pytorch[version='>=2.3',build='cuda*']
CONDA_BRACKETS = re.compile(r"^([A-Za-z0-9_.-]+)\[(.*)\]$")


def _name(spec: str) -> str:
    name = re.split(r"[\s\[<>=!~;]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")
    return CONDA_TO_PIP.get(name, name)


def _project_requirements() -> dict[str, Requirement]:
    """pyproject.toml's direct dependencies, the dev extra included, by canonical name."""
    project = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    specs += [s for extra in project["optional-dependencies"].values() for s in extra]
    reqs = [Requirement(s) for s in specs]
    return {canonicalize_name(r.name): r for r in reqs}


def _conda_specifiers() -> dict[str, SpecifierSet]:
    """environment.yml's packages (conda and pip sections) and their version ranges."""
    env = yaml.safe_load((paths.ROOT / "environment.yml").read_text())
    out: dict[str, SpecifierSet] = {}
    for dep in env["dependencies"]:
        specs = [s for s in dep["pip"] if not s.startswith("-")] if isinstance(dep, dict) else [dep]
        for spec in specs:
            if _name(spec) in NOT_PACKAGES:  # python=3.11: conda's own syntax
                continue
            match = CONDA_BRACKETS.match(spec)
            if match:
                fields = dict(re.findall(r"(\w+)='([^']*)'", match[2]))
                name, specifier = match[1], SpecifierSet(fields.get("version", ""))
            else:
                req = Requirement(spec)
                name, specifier = req.name, req.specifier
            out[canonicalize_name(CONDA_TO_PIP.get(name.lower(), name))] = specifier
    return out


def _via_project(lock: Path) -> set[str]:
    """The packages that pip-compile's annotations say come from pyproject.toml."""
    direct, current = set(), None
    for line in lock.read_text().splitlines():
        if line and not line.startswith((" ", "#", "-")):
            current = canonicalize_name(Requirement(line).name)
        elif current and "vit-cars-poc (pyproject.toml)" in line:
            direct.add(current)
    return direct


def test_environment_yml_and_pyproject_name_the_same_packages():
    pip_names = {_name(s) for s in _project_requirements()}
    conda_names = set(_conda_specifiers())
    assert conda_names == pip_names, (
        f"only in environment.yml: {sorted(conda_names - pip_names)}; "
        f"only in pyproject.toml: {sorted(pip_names - conda_names)}")


def test_environment_yml_declares_the_same_ranges_as_pyproject():
    project = _project_requirements()
    conda = _conda_specifiers()
    differ = {n: (str(project[n].specifier), str(conda[n])) for n in project
              if project[n].specifier != conda[n]}
    assert not differ, f"pyproject.toml and environment.yml ranges differ: {differ}"


@pytest.mark.parametrize("kind", sorted(LOCKS))
def test_lock_names_the_direct_dependencies_of_pyproject(kind):
    """Each lock came from the current pyproject.toml: what its annotations trace to
    pyproject.toml is exactly pyproject's list (else run `make lock`)."""
    lock = paths.ROOT / LOCKS[kind]
    project = set(_project_requirements())
    locked = set(lockfile.read_lock(lock))
    assert project <= locked, f"not in {LOCKS[kind]}: {sorted(project - locked)}; run make lock"
    via = _via_project(lock)
    assert via == project, (
        f"{LOCKS[kind]} is stale (run make lock): locked as direct but no longer declared: "
        f"{sorted(via - project)}; declared but not locked as direct: {sorted(project - via)}")


@pytest.mark.parametrize("kind", sorted(LOCKS))
def test_locked_versions_lie_in_the_declared_ranges(kind):
    """pyproject.toml's ranges, environment.yml's, and those of requirements/<kind>.in."""
    locked = lockfile.read_lock(paths.ROOT / LOCKS[kind])
    ranges = [("pyproject.toml", {n: r.specifier for n, r in _project_requirements().items()}),
              ("environment.yml", _conda_specifiers())]
    extra = paths.ROOT / "requirements" / f"{kind}.in"
    extra_reqs = [Requirement(line) for line in extra.read_text().splitlines()
                  if line.strip() and not line.startswith("#")]
    ranges.append((f"requirements/{kind}.in",
                   {canonicalize_name(r.name): r.specifier for r in extra_reqs}))
    outside = [f"{name}=={locked[name]} not in {source}'s {spec}"
               for source, specs in ranges for name, spec in specs.items()
               if not spec.contains(locked[name], prereleases=True)]
    assert not outside, outside


def test_cpu_and_gpu_locks_pin_the_same_versions():
    """The GPU lock is the CPU lock plus CUDA packages: shared packages at the same
    versions, torch at the same public version (2.13.0+cpu against the CUDA 2.13.0)."""
    cpu = lockfile.read_lock(paths.ROOT / lockfile.CPU_LOCK)
    gpu = lockfile.read_lock(paths.ROOT / lockfile.GPU_LOCK)
    assert not set(cpu) - set(gpu), f"only in the CPU lock: {sorted(set(cpu) - set(gpu))}"
    differ = {n: (cpu[n], gpu[n]) for n in cpu
              if Version(cpu[n]).public != Version(gpu[n]).public
              or (n != "torch" and cpu[n] != gpu[n])}
    assert not differ, f"CPU and GPU locks differ: {differ}"
    assert Version(cpu["torch"]).local == "cpu" and Version(gpu["torch"]).local is None
    assert not {n for n in set(gpu) - set(cpu)
                if not n.startswith(("nvidia-", "cuda-", "triton"))}, "GPU-only packages"


@pytest.mark.parametrize("kind", sorted(LOCKS))
def test_a_lock_installs_one_cuda_major_and_no_two_packages_write_the_same_file(kind):
    """torch's CUDA 13 packages beside TensorFlow's and-cuda CUDA 12 ones (the GPU lock
    before this test) would need two driver generations and have cuDNN and NCCL overwrite
    each other's libraries."""
    locked = lockfile.read_lock(paths.ROOT / LOCKS[kind])
    majors = lockfile.cuda_majors(locked)
    assert len(majors) <= 1, f"{LOCKS[kind]} mixes CUDA majors: {majors}"
    assert lockfile.same_files(locked) == [], lockfile.same_files(locked)
    if kind == "gpu":
        assert list(majors) == [13] and 13 in accelerators.DRIVER_FOR_CUDA
        assert "tensorflow" in locked and not any(n.endswith("-cu12") for n in locked)


def test_the_cuda_check_sees_two_majors_and_shared_files():
    mixed = {"cuda-toolkit": "13.0.3.0", "nvidia-cudnn-cu13": "9.20.0.48",
             "nvidia-cudnn-cu12": "9.28.0.42", "nvidia-cublas-cu12": "12.9.3.13",
             "nvidia-nccl-cu12": "2.32.3", "nvidia-nccl-cu13": "2.29.7", "numpy": "2.3.0"}
    assert sorted(lockfile.cuda_majors(mixed)) == [12, 13]
    assert lockfile.same_files(mixed) == [("nvidia-cudnn-cu12", "nvidia-cudnn-cu13"),
                                          ("nvidia-nccl-cu12", "nvidia-nccl-cu13")]


def test_locks_name_no_local_path_nor_index():
    for lock in LOCKS.values():
        text = (paths.ROOT / lock).read_text()
        assert not re.search(r"(?m)^\s*--?(index-url|extra-index-url|find-links|i|f)\b", text)
        assert not re.search(r"://|(^|\s)/(opt|tmp|work|home|root)/", text), lock


def _in_project_venv() -> bool:
    return Path(sys.prefix).resolve() == (paths.ROOT / ".venv").resolve()


@pytest.mark.skipif(not _in_project_venv(),
                    reason="not run from the project's .venv (make setup installs the CPU lock "
                           "there); e.g. a conda environment on a GPU box")
def test_project_venv_is_the_cpu_lock():
    """Every package of requirements/cpu.lock.txt installed at its locked version."""
    info = lockfile.lock_info(lockfile.CPU_LOCK)
    assert info["mismatches"] == [], (
        f"{len(info['mismatches'])} packages depart from {info['file']} "
        f"(run make setup): {info['mismatches'][:10]}")


# What the code calls that older versions lack, and the first version that has it: the
# declared lower bounds must be at least these (else an allowed install breaks a notebook).
NEEDED = {
    "transformers": ("4.54", "PreTrainedModel.set_attn_implementation (hf_trainer.use_settings, "
                             "inference.attention)"),
}


@pytest.mark.parametrize("name", sorted(NEEDED))
def test_declared_minimum_versions_have_what_the_code_calls(name):
    least, why = NEEDED[name]
    declared = {"pyproject.toml": _project_requirements()[name].specifier,
                "environment.yml": _conda_specifiers()[name]}
    for source, spec in declared.items():
        floors = [Version(s.version) for s in spec if s.operator in (">=", "==", "~=")]
        assert floors and min(floors) >= Version(least), (
            f"{source} allows {name}{spec}, but the code needs >= {least}: {why}")


def test_the_installed_transformers_has_set_attn_implementation():
    from transformers import PreTrainedModel

    assert callable(getattr(PreTrainedModel, "set_attn_implementation", None))


def test_jupyterlab_opens_python_files_as_notebooks():
    # make setup's setting, in this environment only: a notebooks/*.py opens as a notebook
    import json

    settings = Path(sys.prefix) / "etc" / "jupyter" / "labconfig" / "default_setting_overrides.json"
    viewers = json.loads(settings.read_text())["@jupyterlab/docmanager-extension:plugin"]
    assert viewers["defaultViewers"]["python"] == "Jupytext Notebook"
