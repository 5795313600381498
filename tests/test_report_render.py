"""Rendering of the executed report notebook: real pandoc+typst fallback, and the Quarto
command line (checked with a fake `quarto` executable on the PATH)."""

from __future__ import annotations

import base64
import io
import os
import re
import stat
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output, new_raw_cell

pytest.importorskip("pypandoc")
pytest.importorskip("typst")

from common.__main__ import main as cli
from common.report import rendering as report

CODE_SOURCE = "SECRET_CODE_SOURCE = entrainer_modele(epochs=42)"
TABLE_HTML = """<div><style scoped>.dataframe tbody tr th {vertical-align: top;}</style>
<table border="1" class="dataframe"><thead><tr style="text-align: right;"><th></th>
<th>modèle</th><th>précision</th></tr></thead><tbody>
<tr><th>0</th><td>ViT-B/16</td><td>0.8731</td></tr>
<tr><th>1</th><td>ResNet-50</td><td>0.8122</td></tr></tbody></table></div>"""


def _png_bytes() -> bytes:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([1, 2, 3], [0.61, 0.79, 0.87], marker="o")
    ax.set_title("Précision par époque")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def _notebook(path: Path, executed: bool = True) -> Path:
    png = base64.b64encode(_png_bytes()).decode()
    outputs = executed
    cells = [
        new_raw_cell(
            '---\ntitle: "Étude des Vision Transformers"\nauthor: "Équipe Données"\n'
            "date: 2022-06-15\n---"
        ),
        new_markdown_cell(
            "# Introduction\n\nLes modèles à base de *transformers* ont été évalués "
            "sur Stanford Cars : voilà un résumé détaillé.\n\n"
            "::: {.callout-warning}\n## Données à vérifier\n"
            "Le jeu de test contient des doublons.\n:::"
        ),
        new_code_cell(
            CODE_SOURCE,
            outputs=[
                new_output(
                    "display_data",
                    data={
                        "text/markdown": "La **précision finale** atteint 87,3 %.",
                        "text/plain": "<IPython.core.display.Markdown object>",
                    },
                )
            ]
            if outputs
            else [],
        ),
        new_markdown_cell("# Résultats\n\n## Courbe d'apprentissage"),
        new_code_cell(
            "plt.plot(historique)",
            outputs=[
                new_output(
                    "display_data", data={"image/png": png, "text/plain": "<Figure size 320x240>"}
                )
            ]
            if outputs
            else [],
        ),
        new_code_cell(
            "df",
            outputs=[
                new_output(
                    "execute_result",
                    data={"text/html": TABLE_HTML, "text/plain": "df"},
                    execution_count=3,
                )
            ]
            if outputs
            else [],
        ),
        new_code_cell(
            "print('cachée')",
            metadata={"tags": ["remove-cell"]},
            outputs=[new_output("stream", name="stdout", text="SORTIE_CACHEE\n")]
            if outputs
            else [],
        ),
    ]
    path.write_text(nbformat.writes(new_notebook(cells=cells)), encoding="utf-8")
    return path


def _pdf_pages(data: bytes) -> int:
    try:
        from pypdf import PdfReader
    except ImportError:
        return len(re.findall(rb"/Type\s*/Page(?![s\w])", data))
    return len(PdfReader(io.BytesIO(data)).pages)


def test_fallback_renders_html_and_pdf(tmp_path, capsys):
    nb = _notebook(tmp_path / "rapport-execute.ipynb")
    result = report.render(nb, tmp_path / "out", quarto=None)

    assert result["renderer"] == "pandoc+typst"
    assert "quarto is not on the PATH" in capsys.readouterr().out
    html_path, pdf_path = tmp_path / "out" / "rapport.html", tmp_path / "out" / "rapport.pdf"
    assert result["html"] == html_path and result["pdf"] == pdf_path
    html = html_path.read_text(encoding="utf-8")
    assert "<title>Étude des Vision Transformers</title>" in html
    assert "Équipe Données" in html and "15 juin 2022" in html
    assert 'lang="fr"' in html and "Table des matières" in html
    assert "voilà un résumé détaillé" in html
    assert "précision finale" in html and "87,3 %" in html
    assert "ViT-B/16" in html and "0.8731" in html and "<table" in html
    assert re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]{100,}', html)
    assert 'class="callout-warning callout"' in html and "Données à vérifier" in html
    assert "SECRET_CODE_SOURCE" not in html and "entrainer_modele" not in html
    assert "SORTIE_CACHEE" not in html
    assert "title: " not in html and "<hr" not in html  # front matter is metadata, not text
    assert 'src="media/' not in html  # self-contained
    pdf = pdf_path.read_bytes()
    assert pdf.startswith(b"%PDF") and _pdf_pages(pdf) >= 1
    assert not list((tmp_path / "out").glob(".*.tmp"))  # atomic writes left no temp files


def test_unexecuted_notebook_is_refused(tmp_path):
    nb = _notebook(tmp_path / "rapport.ipynb", executed=False)
    with pytest.raises(ValueError, match="was not executed.*papermill"):
        report.render(nb, tmp_path / "out", quarto=None)
    assert not (tmp_path / "out" / "rapport.html").exists()


def test_missing_notebook(tmp_path):
    with pytest.raises(FileNotFoundError, match="notebook not found"):
        report.render(tmp_path / "absent.ipynb", tmp_path / "out", quarto=None)


FAKE_QUARTO = """#!/bin/sh
# Fake quarto: records its arguments, writes what `quarto render` would.
echo "$PWD|$*" >> "$FAKE_QUARTO_LOG"
test -f _quarto.yml || { echo "no _quarto.yml" >&2; exit 3; }
input="$2"; stem="${input%.ipynb}"; to=""; outdir="."
while [ $# -gt 0 ]; do
  case "$1" in --to) to="$2"; shift;; --output-dir) outdir="$2"; shift;; esac; shift
done
mkdir -p "$outdir"
case "$to" in
  html) echo "<html>quarto</html>" > "$outdir/$stem.html";;
  typst) printf '%%PDF-1.7 quarto' > "$outdir/$stem.pdf";;
  *) exit 2;;
esac
"""


def test_quarto_command_line(tmp_path, monkeypatch, capsys):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "quarto"
    fake.write_text(FAKE_QUARTO)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "quarto.log"
    monkeypatch.setenv("FAKE_QUARTO_LOG", str(log))
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    nb = _notebook(tmp_path / "execute.ipynb")

    result = report.render(nb, tmp_path / "out", name="rapport")

    assert result["renderer"] == "quarto"
    assert "rendering with quarto" in capsys.readouterr().out
    assert (tmp_path / "out" / "rapport.html").read_text() == "<html>quarto</html>\n"
    assert (tmp_path / "out" / "rapport.pdf").read_bytes().startswith(b"%PDF")
    calls = [line.split("|", 1)[1] for line in log.read_text().splitlines()]
    assert calls == [
        "render rapport.ipynb --to html --no-execute --output-dir _html",
        "render rapport.ipynb --to typst --no-execute --output-dir _pdf",
    ]

    # quarto=None (CLI --no-quarto) bypasses Quarto even when it is on the PATH.
    assert (
        cli(
            [
                "render",
                str(nb),
                "--out-dir",
                str(tmp_path / "cli"),
                "--formats",
                "html",
                "--no-quarto",
            ]
        )
        == 0
    )
    assert "précision finale" in (tmp_path / "cli" / "rapport.html").read_text(encoding="utf-8")
    assert len(log.read_text().splitlines()) == 2


def test_markdown_front_matter_and_cell_options(tmp_path):
    nb = new_notebook(cells=[
        new_markdown_cell("---\ntitle: Essai\nauthor:\n  - name: Marie Curie\ndate: 2022-03-01\n"
                          "format: html\n---\n\n## Suite de la cellule"),
        new_code_cell("#| include: false\nimport os", outputs=[new_output(
            "stream", name="stdout", text="INVISIBLE\n")]),
        new_code_cell("#| echo: true\nx = 1", outputs=[new_output(
            "stream", name="stderr", text="avertissement\n")]),
    ])
    meta, markdown = report._to_markdown(nb, tmp_path / "media")
    assert meta == {"title": "Essai", "author": ["Marie Curie"], "date": "1 mars 2022",
                    "lang": "fr", "toc-title": "Table des matières"}
    assert markdown.startswith("## Suite de la cellule")
    assert "INVISIBLE" not in markdown and "avertissement" not in markdown
    assert "```python\nx = 1\n```" in markdown and "#|" not in markdown
