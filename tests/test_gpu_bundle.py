"""`make gpu-bundle`: what travels to the rented GPU box (Python 3.12, no Keras, no network).
Its wheels install alone (--no-deps) into an empty folder, and with what the box has they
are all the check imports; its 10-class subset keeps the official ids and boxes; the whole
fits in 64 MiB. Needs pip's package indexes (local here). Part of `make test-dry-run` with the
rest of the GPU box's path: the bundle is what lets Keras run on torch without TensorFlow there."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name, parse_wheel_filename

from common.config.study import TEN_CLASSES
from common.core import paths

pytestmark = [pytest.mark.dryrun, pytest.mark.xdist_group("gpu-bundle")]  # one bundle, one worker
sys.path.insert(0, str(paths.ROOT / "benchmarks"))
import gpu_bundle  # noqa: E402

PLATFORMS = [a for p in gpu_bundle.PLATFORMS for a in ("--platform", p)]

# An interpreter that sees only what the box has: the project's site-packages is taken off
# the path, and only the top-level modules of the box's packages are found there; the
# rest must come from the bundle's folder (first on PYTHONPATH).
BOX_ONLY = textwrap.dedent('''
    import importlib.machinery, json, os, sys

    _site = os.path.realpath(os.environ["BOX_SITE"])
    _allowed = set(json.loads(os.environ["BOX_MODULES"]))
    sys.path[:] = [p for p in sys.path if os.path.realpath(p) != _site]


    class BoxOnly:
        @classmethod
        def find_spec(cls, name, path=None, target=None):
            if "." in name or name not in _allowed:
                return None
            return importlib.machinery.PathFinder.find_spec(name, [_site])


    sys.meta_path.append(BoxOnly)
''')


def _box_closure() -> set[str]:
    """The box's packages and, as installed here, everything they require (no extras)."""
    from packaging.requirements import Requirement

    todo, seen = list(gpu_bundle.BOX), set()
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.distribution(name).requires or []
        except md.PackageNotFoundError:
            continue
        for spec in requires:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen | {"vit-cars-poc"}  # the project's own code (src/) travels with the checkout


def _box_modules() -> list[str]:
    box = _box_closure() - {canonicalize_name(n) for n in gpu_bundle.BUNDLE}
    return sorted(m for m, dists in md.packages_distributions().items()
                  if any(canonicalize_name(d) in box for d in dists))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    base = tmp_path_factory.mktemp("bundle")
    if not (paths.SHARED_DATA / "devkit" / "cars_meta.mat").is_file():
        pytest.skip("the shared Stanford Cars copy is not here")
    proc = subprocess.run([sys.executable, "benchmarks/gpu_bundle.py", "--wheels",
                           str(base / ".whl"), "--subset", str(base / ".gl" / "cars10")],
                          cwd=paths.ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout[:proc.stdout.rindex("}") + 1])
    return base, summary


def test_the_bundle_fits_and_holds_py312_wheels_of_what_the_box_lacks(bundle):
    base, summary = bundle
    assert summary["total_mib"] <= 64
    wheels = sorted((base / ".whl").glob("*.whl"))
    names = {canonicalize_name(parse_wheel_filename(w.name)[0]) for w in wheels}
    assert names == {canonicalize_name(n) for n in gpu_bundle.BUNDLE}
    assert not names & gpu_bundle.BOX  # only what the box lacks
    for wheel in wheels:
        tags = parse_wheel_filename(wheel.name)[3]
        assert any(t.interpreter in ("cp312", "py3") and t.abi in ("cp312", "abi3", "none")
                   and (t.platform == "any" or t.platform.endswith("x86_64")) for t in tags), \
            wheel.name
    assert gpu_bundle.unmet(wheels, "3.12") == []
    # the install step of gpu_check.sh, for the box's Python 3.12, into an empty folder
    target = base / "site312"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index",
                           "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
                           "--implementation", "cp", "--abi", "cp312", *PLATFORMS,
                           "--target", str(target), *map(str, wheels)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (target / "keras").is_dir() and (target / "pydantic_core").is_dir()


def test_the_subset_keeps_the_official_ids_and_boxes(bundle):
    from common.data import splits
    from common.data import table as data

    base, summary = bundle
    subset = data.load_table(base / ".gl" / "cars10")
    assert sorted(subset["class_id"].unique()) == sorted(TEN_CLASSES)
    assert len(splits.select_classes(subset, class_ids=TEN_CLASSES)) == len(subset)
    full = data.load_table(paths.SHARED_DATA).set_index(
        data.load_table(paths.SHARED_DATA)["path"].map(lambda p: Path(p).name))
    for row in subset.itertuples():
        same = full.loc[Path(row.path).name]
        assert (row.class_id, row.bbox_x2, row.bbox_y2) == (
            same.class_id, same.bbox_x2, same.bbox_y2)


def test_installed_alone_the_bundle_gives_the_check_what_it_imports(tmp_path):
    """The same wheels for this Python, installed with --no-deps into an empty folder: in an
    interpreter that sees only the box's packages besides, the check's imports all load,
    Keras and pydantic from the bundle."""
    wheels = gpu_bundle.download(tmp_path / "whl", f"{sys.version_info[0]}.{sys.version_info[1]}")
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                    "--target", str(target), *map(str, wheels)], check=True, timeout=300)
    (tmp_path / "box").mkdir()
    (tmp_path / "box" / "sitecustomize.py").write_text(BOX_ONLY)
    site = next(p for p in sys.path if p.endswith("site-packages")
                and (Path(p) / "keras").is_dir())
    env = {**os.environ, "KERAS_BACKEND": "torch", "BOX_SITE": site,
           "BOX_MODULES": json.dumps(_box_modules()),
           "PYTHONPATH": os.pathsep.join([str(tmp_path / "box"), str(target),
                                          str(paths.ROOT / "src")])}
    code = textwrap.dedent('''
        import keras, pydantic
        from common.config import loading
        from common.training import finetune_runs, hf_trainer, keras_fit, vit_runs
        from common.models import efficientnet
        from common.data.task import load_task
        try:
            import tensorflow
        except ImportError:
            pass
        else:
            raise SystemExit("tensorflow is not on the box")
        print(keras.__file__, pydantic.__file__, keras.backend.backend())
    ''')
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    keras_file, pydantic_file, backend = proc.stdout.split()[-3:]
    assert keras_file.startswith(str(target)) and pydantic_file.startswith(str(target))
    assert backend == "torch"
    # gpu_check.sh's first step on the box, here with this environment's versions (the
    # lock's): they fit what the wheels need
    proc = subprocess.run([sys.executable, "benchmarks/gpu_bundle.py", "--check",
                           str(tmp_path / "whl")], cwd=paths.ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_the_box_check_refuses_versions_that_do_not_fit(tmp_path):
    """What the bundle's wheels declare is checked against the box's installed versions,
    not only its package names (pydantic needs a recent typing-extensions)."""
    import zipfile

    wheel = tmp_path / "pydantic-2.12.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pydantic-2.12.0.dist-info/METADATA",
                   "Metadata-Version: 2.1\nName: pydantic\nVersion: 2.12.0\n"
                   "Requires-Dist: typing-extensions>=4.14.1\n"
                   "Requires-Dist: email-validator>=2; extra == 'email'\n")
    old = {"typing-extensions": "4.12.2", "numpy": "1.26.4"}
    assert gpu_bundle.unmet([wheel], "3.12", old) == [
        f"{wheel.name} needs typing-extensions>=4.14.1, the box has typing-extensions 4.12.2"]
    assert gpu_bundle.unmet([wheel], "3.12", {"typing-extensions": "4.15.0"}) == []
    assert gpu_bundle.unmet([wheel], "3.12", {}) == [
        f"{wheel.name} needs typing-extensions>=4.14.1"]
    # the check of this interpreter, as gpu_check.sh runs it on the box: one line, exit 1
    proc = subprocess.run([sys.executable, "benchmarks/gpu_bundle.py", "--check",
                           str(tmp_path / "none")], cwd=paths.ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "make gpu-bundle" in proc.stderr
