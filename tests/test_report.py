"""`make report PROFILE=smoke` on the notebook outputs of the session's smoke run, and the
failure and re-run paths of `make run`."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from common.core import paths
from common.report import presentation

# one worker runs this module: its tests share one rendered report (`make test` runs them
# in two pytest-xdist workers)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("report")]


def _make(*args, env, check=True):
    proc = subprocess.run(["make", *args, f"VENV={sys.prefix}"], cwd=paths.ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)
    if check and proc.returncode != 0:
        raise AssertionError(f"make {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="module")
def smoke_report(smoke_run, tmp_path_factory):
    """`make report` over a copy of the smoke run's outputs (the tests here change them; the
    smoke run is shared by other tests, which may run meanwhile in another worker): its
    results are up to date, so make only executes and renders the report."""
    out = tmp_path_factory.mktemp("smoke-report") / "out"
    shutil.copytree(smoke_run["out"], out)
    env = {k: v for k, v in smoke_run["env"].items() if k != "VIT_CARS_OUTPUT"}
    args = ["PROFILE=smoke", f"OUTPUT={out}", f"DATA_DIR={smoke_run['data']}"]
    proc = _make("report", *args, env=env)
    return {**smoke_run, "out": out, "env": env, "args": args,
            "log": proc.stdout + proc.stderr}


def test_report_uses_the_results_and_runs_no_notebook_again(smoke_report):
    assert "-m common run notebooks/" not in smoke_report["log"]
    out = smoke_report["out"] / "report" / "_output" / "smoke"
    html = (out / "rapport.html").read_text(encoding="utf-8").replace("&nbsp;", "\u00a0")
    import pypdf

    assert (out / "rapport.pdf").read_bytes().startswith(b"%PDF")
    assert len(pypdf.PdfReader(out / "rapport.pdf").pages) >= 5
    results = smoke_report["results"]
    for payload in results.values():
        for run in payload["runs"]:
            assert presentation.breakable(run["name"]) in html
            assert presentation.pct(run["metrics"]["test_accuracy"]) in html, run["name"]
            assert presentation.pct(run["metrics"]["test_macro_f1"]) in html, run["name"]
    assert payload["git_commit"] in html
    # the provenance box names the Keras backend each notebook ran on (smoke 05: tensorflow)
    flat = " ".join(html.split())  # pandoc wraps long lines
    assert "01 torch, 02 torch" in flat and "05 tensorflow" in flat
    assert "quarto is not on the PATH" in smoke_report["log"]
    # a normal run prints no warning of papermill or of its kernel
    assert "Unable to parse" not in smoke_report["log"]
    assert "[IPKernelApp] WARNING" not in smoke_report["log"]
    # the runs chosen on validation are compared on the same test images, image by image:
    # 03 with 01, 05 with 01 and with 03, 04 with 02
    text = re.sub(r"<[^>]+>", "", flat)
    assert text.count("McNemar exact") == 4, text[text.find("Nous ne comparons"):][:3000]
    assert "nous ne les comparons pas" not in text
    # the fine-tuning section names the checkpoint that the profile asked for, and that it
    # could not be loaded
    asked = results["03_vit_finetune"]["params"]["checkpoint"]
    assert f"le profil smoke demandait {asked}" in re.sub(r"<[^>]+>", "", flat)
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
    assert "-m common run" not in proc.stdout
    assert before == {p: p.stat().st_mtime_ns for p in before}


def test_a_module_reruns_only_the_notebooks_that_import_it(smoke_report):
    """`make -W FILE` pretends FILE was just modified (without touching it)."""
    def would_run(module):
        proc = _make("-n", "-W", f"src/common/{module}.py", "run", *smoke_report["args"],
                     env=smoke_report["env"])
        return sorted(set(re.findall(r"notebooks/(\d\d)_\w+\.py", proc.stdout)))

    assert would_run("inference/attention") == ["03", "04"]
    assert would_run("models/efficientnet") == ["05"]
    assert would_run("models/vit") == ["01", "02"]
    assert would_run("report/rendering") == []
    assert would_run("results/contract") == ["01", "02", "03", "04", "05"]
    assert would_run("data/task") == ["01", "02", "03", "04", "05"]


def test_failing_notebook_keeps_previous_results_and_names_the_cell(smoke_report):
    target = smoke_report["out"] / "results" / "smoke" / "01_vit_scratch.json"
    good = target.read_bytes()
    proc = _make("run", *smoke_report["args"], "FORCE=1", "PARAMS=-p data_dir /absent/cars",
                 env=smoke_report["env"], check=False)
    assert proc.returncode != 0
    err = proc.stdout + proc.stderr
    assert "01_vit_scratch" in err and "In [" in err and "dataset folder not found" in err
    assert target.read_bytes() == good
    assert (smoke_report["out"] / "runs" / "smoke" / "01_vit_scratch.ipynb").is_file()


def test_unknown_parameter_is_refused_and_a_new_params_reruns(smoke_report):
    proc = _make("run", *smoke_report["args"], "FORCE=1", "PARAMS=-p epochz 1",
                 env=smoke_report["env"], check=False)
    assert proc.returncode != 0 and "'epochz'" in proc.stderr
    # a changed PARAMS makes every results file out of date (-n: nothing runs)
    proc = _make("-n", "run", *smoke_report["args"], "PARAMS=-p seed 3", env=smoke_report["env"])
    assert len(re.findall(r"-m common run notebooks/0", proc.stdout)) == 5


def test_missing_results_are_named_in_the_report(smoke_report, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(smoke_report["out"] / "results", out / "results")
    (out / "results" / "smoke" / "05_efficientnet.json").unlink()
    env = {**smoke_report["env"], "VIT_CARS_OUTPUT": str(out)}
    proc = subprocess.run([sys.executable, "-m", "common", "report", "--profile",
                           "smoke"], cwd=paths.ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = (out / "report" / "_output" / "smoke" / "rapport.html").read_text()
    assert "EfficientNetB0" in html and "pas de résultats" in html


# --------------------------------------------------------------------------- as a reader sees it

MARGIN_X, MARGIN_Y = 2 / 2.54 * 72, 2.5 / 2.54 * 72  # the report's A4 margins, in points
DECIMAL_POINT_PERCENT = re.compile(r"\d\.\d+\s*%")


def _pdf_spans(path):
    import pymupdf

    with pymupdf.open(path) as doc:
        for page in doc:
            for block in page.get_text("dict")["blocks"]:
                for line in block.get("lines", []):
                    for span in line["spans"]:
                        if span["text"].strip():
                            yield page.number + 1, page.rect, pymupdf.Rect(span["bbox"]), \
                                span["text"]


def test_pdf_text_never_overlaps_and_stays_inside_the_margins(smoke_report):
    pdf = smoke_report["out"] / "report" / "_output" / "smoke" / "rapport.pdf"
    by_page, outside = {}, []
    for page, rect, box, text in _pdf_spans(pdf):
        by_page.setdefault(page, []).append((box, text))
        is_page_number = text.strip().isdigit() and box.y0 > rect.height - MARGIN_Y
        if not is_page_number and (box.x0 < MARGIN_X - 2 or box.x1 > rect.width - MARGIN_X + 2
                                   or box.y0 < MARGIN_Y - 2
                                   or box.y1 > rect.height - MARGIN_Y + 2):
            outside.append((page, text, tuple(round(v) for v in box)))
    overlaps = []
    for page, spans in by_page.items():
        for i, (a, ta) in enumerate(spans):
            for b, tb in spans[i + 1:]:
                inter = a & b
                if not inter.is_empty and inter.width > 1 and inter.height > 1:
                    overlaps.append((page, ta, tb))
    assert overlaps == [] and outside == []


def test_numbers_are_french_and_every_figure_and_table_has_a_caption(smoke_report):
    out = smoke_report["out"] / "report" / "_output" / "smoke"
    html = (out / "rapport.html").read_text(encoding="utf-8")
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<(style|script)[^>]*>.*?</\1>", "", html,
                                          flags=re.S))
    assert not DECIMAL_POINT_PERCENT.findall(text)
    pdf_text = " ".join(t for *_, t in _pdf_spans(out / "rapport.pdf"))
    assert not DECIMAL_POINT_PERCENT.findall(pdf_text)
    figures = re.findall(r"<figure[^>]*>.*?</figure>", html, flags=re.S)
    assert figures and all(re.search(r"<figcaption[^>]*>\s*(<p>)?Figure \d+ – ", f)
                           for f in figures)
    tables = re.findall(r"<table[^>]*>.*?</table>", html, flags=re.S)
    assert tables and all(re.search(r"<caption[^>]*>\s*(<p>)?Tableau \d+ – ", t)
                          for t in tables)
    numbers = [int(n) for n in re.findall(r"<figcaption[^>]*>\s*(?:<p>)?Figure (\d+)", html)]
    assert numbers == list(range(1, len(numbers) + 1))
    assert "Figure 1 –" in pdf_text and "Tableau 1 –" in pdf_text


def test_html_is_self_contained_with_one_title_and_working_links(smoke_report):
    html = (smoke_report["out"] / "report" / "_output" / "smoke" / "rapport.html").read_text(
        encoding="utf-8")
    sources = re.findall(r"<img[^>]*\ssrc=\"([^\"]*)\"", html)
    assert sources and all(s.startswith("data:image/") for s in sources)
    assert len(re.findall(r"<h1[\s>]", html)) == 1
    ids = set(re.findall(r"\sid=\"([^\"]+)\"", html))
    targets = re.findall(r"href=\"#([^\"]+)\"", html)
    assert targets and not [t for t in targets if t not in ids]
