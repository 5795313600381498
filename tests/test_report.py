"""`make report PROFILE=smoke` end to end, and the failure paths of `make run`."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from common import paths

pytestmark = pytest.mark.slow


def _make(*args, env, check=True):
    proc = subprocess.run(["make", *args], cwd=paths.ROOT, env=env, capture_output=True,
                          text=True, timeout=1800)
    if check and proc.returncode != 0:
        raise AssertionError(f"make {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    env = {**os.environ, "VIT_CARS_CACHE": str(base / "cache")}
    env.pop("VIT_CARS_OUTPUT", None)
    args = ["PROFILE=smoke", f"OUTPUT={base / 'out'}", f"DATA_DIR={base / 'synth'}"]
    proc = _make("report", *args, env=env)
    return {"base": base, "out": base / "out", "env": env, "args": args, "log": proc.stdout}


def _results(out):
    return {p.stem: json.loads(p.read_text()) for p in (out / "results" / "smoke").glob("*.json")}


def test_report_has_both_files_and_the_numbers_of_the_results(smoke_report):
    out = smoke_report["out"] / "report" / "_output" / "smoke"
    html = (out / "rapport.html").read_text(encoding="utf-8")
    pdf = (out / "rapport.pdf").read_bytes()
    assert pdf.startswith(b"%PDF")
    import pypdf

    assert len(pypdf.PdfReader(out / "rapport.pdf").pages) >= 5
    results = _results(smoke_report["out"])
    assert sorted(results) == ["01_vit_scratch", "02_vit_scratch_10classes", "03_vit_finetune",
                               "04_vit_finetune_10classes", "05_efficientnet"]
    for payload in results.values():
        for run in payload["runs"]:
            assert run["name"] in html
            assert f"{run['metrics']['test_accuracy']:.1%}" in html, run["name"]
            assert f"{run['metrics']['test_macro_f1']:.1%}" in html, run["name"]
    assert payload["git_commit"] in html
    # the provenance box names the Keras backend each notebook ran on (smoke 02: torch)
    flat = " ".join(html.split())  # pandoc wraps long lines
    assert "01 tensorflow, 02 torch" in flat
    assert "Quarto introuvable" in smoke_report["log"]
    # generated data and random weights are flagged at the top
    assert "Avertissement" in html and "données générées" in html and "poids aléatoires" in html
    assert html.index("Avertissement") < html.index('id="introduction"')
    # no missing value where a number belongs
    cells = re.findall(r"<td[^>]*>(.*?)</td>", html, flags=re.S)
    assert cells and not [c for c in cells if c.strip() in {"nan", "None", "NaN", ""}]
    assert "data:image/png;base64" in html


def test_rerun_reuses_results(smoke_report):
    folder = smoke_report["out"] / "results" / "smoke"
    before = {p: p.stat().st_mtime_ns for p in folder.glob("*.json")}
    proc = _make("run", *smoke_report["args"], env=smoke_report["env"])
    assert "common.notebooks run" not in proc.stdout
    after = {p: p.stat().st_mtime_ns for p in before}
    assert before == after


def test_failing_notebook_keeps_previous_results_and_names_the_cell(smoke_report):
    target = smoke_report["out"] / "results" / "smoke" / "01_vit_scratch.json"
    good = target.read_bytes()
    proc = _make("run", *smoke_report["args"], "FORCE=1", "PARAMS=-p class_ids [999]",
                 env=smoke_report["env"], check=False)
    assert proc.returncode != 0
    err = proc.stdout + proc.stderr
    assert "01_vit_scratch" in err and "In [" in err and "unknown class id(s) [999]" in err
    assert target.read_bytes() == good
    assert (smoke_report["out"] / "runs" / "smoke" / "01_vit_scratch.ipynb").is_file()


def test_missing_results_are_named_in_the_report(smoke_report):
    (smoke_report["out"] / "results" / "smoke" / "05_efficientnet.json").unlink()
    env = {**smoke_report["env"], "VIT_CARS_OUTPUT": str(smoke_report["out"])}
    proc = subprocess.run([str(paths.ROOT / ".venv" / "bin" / "python"), "-m", "common.notebooks",
                           "report", "--profile", "smoke"], cwd=paths.ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = (smoke_report["out"] / "report" / "_output" / "smoke" / "rapport.html").read_text()
    assert "EfficientNetB0" in html and "pas de résultats" in html
