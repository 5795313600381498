"""environment.yml (GPU box, conda) and pyproject.toml (pip) name the same packages."""

from __future__ import annotations

import re
import tomllib

import yaml

from common.core import paths

CONDA_TO_PIP = {"pytorch": "torch"}
NOT_PACKAGES = {"python", "pip"}


def _name(spec: str) -> str:
    name = re.split(r"[\s\[<>=!~;]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")
    return CONDA_TO_PIP.get(name, name)


def test_environment_yml_and_pyproject_name_the_same_packages():
    project = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]
    pip_names = {_name(s) for s in project["dependencies"]}
    pip_names |= {_name(s) for extra in project["optional-dependencies"].values() for s in extra}
    env = yaml.safe_load((paths.ROOT / "environment.yml").read_text())
    conda_names = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            conda_names |= {_name(s) for s in dep["pip"] if not s.startswith("-e")}
        else:
            conda_names.add(_name(dep))
    conda_names -= NOT_PACKAGES
    assert conda_names == pip_names, (
        f"only in environment.yml: {sorted(conda_names - pip_names)}; "
        f"only in pyproject.toml: {sorted(pip_names - conda_names)}")
