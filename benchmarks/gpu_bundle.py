"""What travels to the rented GPU box for ``benchmarks/gpu_check.sh``: ``make gpu-bundle``.

    python benchmarks/gpu_bundle.py [--data DIR] [--python-version 3.12] [--wheels .whl]
                                    [--subset .gl/cars10] [--limit-mib 64]

The box (Python 3.12, Linux x86_64, no network) has numpy, pandas, scipy, scikit-learn,
matplotlib, seaborn, h5py, timm, transformers, accelerate and torch, but no Keras, kornia,
TensorFlow or Jupyter. This writes:

- ``.whl/``: the exact wheels (the versions of ``requirements/cpu.lock.txt``) of what the
  check imports and the box lacks, for CPython 3.12 manylinux x86_64, each one alone
  (``gpu_check.sh`` installs them with ``--no-deps``); every dependency they declare is
  checked to be either in the bundle or on the box;
- ``.gl/cars10/``: the 10 classes of the study from ``--data`` (default ``CARS_DATA_DIR``,
  else the shared copy), in the devkit layout with their official ids and boxes
  (:func:`common.data.subset.write_subset`), as many images as the budget leaves;

then checks that the bundle and the checkout's tracked files together fit in ``--limit-mib``
(what can travel to the box). Both folders are ignored by git.

``--check .whl`` runs on the box (``gpu_check.sh`` does it first): it refuses, in one line,
a box whose installed versions do not fit what the bundled wheels declare.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from email.parser import Parser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from packaging.requirements import Requirement  # noqa: E402
from packaging.utils import canonicalize_name, parse_wheel_filename  # noqa: E402

from common.config.study import TEN_CLASSES  # noqa: E402
from common.core import paths  # noqa: E402
from common.results import lockfile  # noqa: E402

# what the check imports that the box lacks: Keras 3 and what it needs, pydantic (the
# parameters) and what it needs
BUNDLE = ("keras", "absl-py", "namex", "optree", "ml-dtypes", "rich", "markdown-it-py", "mdurl",
          "pygments", "pydantic", "pydantic-core", "annotated-types", "typing-inspection")
# on the box: the packages it lists and what they need
BOX = {canonicalize_name(n) for n in (
    "numpy", "pandas", "scipy", "scikit-learn", "matplotlib", "seaborn", "h5py", "timm",
    "transformers", "accelerate", "torch", "torchvision", "packaging", "pyyaml",
    "typing-extensions", "pillow", "tqdm", "huggingface-hub", "safetensors", "tokenizers",
    "regex", "requests", "filelock", "fsspec", "jinja2", "networkx", "sympy", "psutil",
    "python-dateutil", "pytz", "tzdata", "joblib", "threadpoolctl", "contourpy", "cycler",
    "fonttools", "kiwisolver", "pyparsing", "setuptools")}
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "linux_x86_64")


def locked_versions(names=BUNDLE) -> dict[str, str]:
    lock = lockfile.read_lock(paths.ROOT / lockfile.CPU_LOCK)
    return {n: lock[canonicalize_name(n)] for n in names}


def download(dest: Path, python_version: str = "3.12") -> list[Path]:
    """The bundle's wheels at their locked versions for ``python_version`` manylinux x86_64,
    into ``dest`` (replaced)."""
    tag = python_version.replace(".", "")
    with tempfile.TemporaryDirectory(prefix="wheels-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
               "--only-binary=:all:", "--python-version", python_version,
               "--implementation", "cp", "--abi", f"cp{tag}", "--abi", "abi3", "--abi", "none",
               *[a for p in PLATFORMS for a in ("--platform", p)], "-d", tmp,
               *[f"{n}=={v}" for n, v in locked_versions().items()]]
        subprocess.run(cmd, check=True)
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(tmp, dest)
    return sorted(dest.glob("*.whl"))


def unmet(wheels: list[Path], python_version: str = "3.12",
          versions: dict[str, str] | None = None) -> list[str]:
    """The dependencies the wheels declare (for Linux x86_64, ``python_version``, no extra)
    that are neither in the bundle nor on the box; with ``versions`` (the box's installed
    packages: canonical name -> version), also those the box has at a version outside the
    declared range (pydantic needs a recent typing-extensions, ml-dtypes numpy >= 2)."""
    bundled = {canonicalize_name(parse_wheel_filename(w.name)[0]) for w in wheels}
    have = bundled | (set(versions) if versions is not None else BOX)
    env = {"python_version": python_version, "python_full_version": f"{python_version}.0",
           "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
           "os_name": "posix", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "extra": ""}
    out = []
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as z:
            meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
            headers = Parser().parsestr(z.read(meta).decode())
        for spec in headers.get_all("Requires-Dist") or []:
            req = Requirement(spec)
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            name = canonicalize_name(req.name)
            if name not in have:
                out.append(f"{wheel.name} needs {spec}")
            elif (versions is not None and name not in bundled
                  and not req.specifier.contains(versions[name], prereleases=True)):
                out.append(f"{wheel.name} needs {spec}, the box has {name} {versions[name]}")
    return out


def box_versions() -> dict[str, str]:
    """The packages this interpreter has (the box's), by canonical name."""
    from importlib import metadata

    return {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()
            if d.metadata["Name"]}


def check(wheels_dir: Path) -> int:
    """On the box, before installing the bundle: 0 when every dependency the wheels of
    ``wheels_dir`` declare is bundled or installed at a version in its range, else 1 with
    one line that names them."""
    wheels = sorted(Path(wheels_dir).glob("*.whl"))
    if not wheels:
        print(f"error: no wheels in {wheels_dir}: make gpu-bundle builds them", file=sys.stderr)
        return 1
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    missing = unmet(wheels, version, box_versions())
    if missing:
        print("error: this box's packages do not fit the bundle: " + "; ".join(missing)
              + " (carry a fitting wheel in .whl/, or use another box)", file=sys.stderr)
        return 1
    return 0


def tracked_bytes() -> int:
    """The size of the checkout's tracked files (they travel too)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    return sum((ROOT / f).stat().st_size for f in files if f and (ROOT / f).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="a devkit-layout Stanford Cars folder (default: CARS_DATA_DIR, "
                             "else the shared copy)")
    parser.add_argument("--python-version", default="3.12")
    parser.add_argument("--wheels", type=Path, default=ROOT / ".whl")
    parser.add_argument("--subset", type=Path, default=ROOT / ".gl" / "cars10")
    parser.add_argument("--limit-mib", type=float, default=64.0)
    parser.add_argument("--check", type=Path, metavar="WHEELS",
                        help="on the box: check its versions against these wheels' needs")
    args = parser.parse_args(argv)
    if args.check:
        return check(args.check)
    limit = int(args.limit_mib * 2 ** 20)
    data = args.data or Path(os.environ.get("CARS_DATA_DIR") or paths.SHARED_DATA)

    wheels = download(args.wheels, args.python_version)
    missing = unmet(wheels, args.python_version)
    if missing:
        print("error: the bundle lacks dependencies the box does not have: "
              + "; ".join(missing), file=sys.stderr)
        return 1
    code, wheel_bytes = tracked_bytes(), folder_bytes(args.wheels)
    margin = 4 * 2 ** 20  # what gpu_check writes, and room to spare
    from common.data.subset import write_subset

    subset = write_subset(data, args.subset, TEN_CLASSES,
                          max_bytes=limit - code - wheel_bytes - margin)
    total = code + wheel_bytes + folder_bytes(args.subset)
    summary = {"wheels": [w.name for w in wheels], "wheels_mib": round(wheel_bytes / 2**20, 1),
               "subset": {**subset, "mib": round(folder_bytes(args.subset) / 2**20, 1),
                          "from": str(data)},
               "tracked_files_mib": round(code / 2**20, 1),
               "total_mib": round(total / 2**20, 1), "limit_mib": args.limit_mib}
    print(json.dumps(summary, indent=2))
    if total > limit:
        print(f"error: the bundle and the checkout take {total / 2**20:.1f} MiB, over the "
              f"{args.limit_mib:g} MiB that can travel", file=sys.stderr)
        return 1
    print(f"{args.wheels.name}/ and {args.subset.parent.name}/{args.subset.name}/ ready: "
          f"{total / 2**20:.1f} MiB of {args.limit_mib:g} MiB with the checkout")
    return 0


if __name__ == "__main__":
    sys.exit(main())
