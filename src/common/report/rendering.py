"""Render the executed report notebook (French) to a self-contained HTML file and a PDF.

``render()`` uses Quarto when it is on the PATH (with ``report/_quarto.yml``), otherwise a
real fallback: the notebook's stored outputs are turned into one Pandoc Markdown document
(code hidden), then ``pandoc`` (bundled by pypandoc-binary) writes the HTML and Typst source,
and ``typst`` (Python binding) compiles the PDF. Nothing is ever executed here: run the
notebook first (jupytext -> papermill).

Front matter: Quarto reads it from the notebook's first cell, documented as a *raw* cell
holding a ``---`` YAML block (a markdown cell works but is not promised). From the jupytext
percent source that is a ``# %% [raw]`` cell whose lines are ``# ---``, ``# title: ...``,
``# ---``. The fallback accepts a raw or a markdown first cell and turns it into metadata.
Quarto-style ``::: {.callout-warning}`` divs become styled boxes in both outputs.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import nbformat
import yaml

from common.core import atomic, paths

PROJECT_DIR = paths.ROOT / "report"  # holds _quarto.yml
FALLBACK_MESSAGE = "quarto is not on the PATH: fallback renderer, pandoc (HTML) and typst (PDF)"
_FRONT = re.compile(r"\A---[ \t]*\n(.*?\n)?---[ \t]*(\n|\Z)", re.DOTALL)
_MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
           "octobre", "novembre", "décembre")  # fmt: skip
_MIME_ORDER = ("text/markdown", "image/png", "image/jpeg", "image/svg+xml", "text/html",
               "text/plain")

CSS = PROJECT_DIR / "fallback.html"  # the HTML page style of the fallback renderer

# Figures and tables carry their numbered French caption ("Figure 3 – ...") already; tables
# are set small enough to fit a portrait A4 page.
TYPST_HEADER = """#set table(stroke: 0.5pt + luma(180), inset: 4pt)
#set figure(numbering: none)
#show table: set text(size: 7.5pt)
#show table: set par(justify: false)
"""

# Pandoc Lua filter: HTML outputs (pandas tables) -> Pandoc tables (always for Typst, tables
# only for HTML); Quarto callouts -> titled boxes; sections numbered from the highest level
# used (as Quarto does), the heading levels kept (the title is the page's only h1).
LUA = PROJECT_DIR / "fallback.lua"



def render(notebook: Path, out_dir: Path, name: str = "rapport", formats=("html", "pdf"),
           quarto: str | None = "auto") -> dict:
    """Render an executed notebook to ``out_dir/<name>.html`` and ``out_dir/<name>.pdf``.

    ``quarto``: "auto" (use it when on the PATH), a command or path, or None (fallback).
    Returns {"renderer": "quarto" | "pandoc+typst", "html": Path, "pdf": Path}.
    """
    notebook, out_dir, formats = Path(notebook), Path(out_dir), tuple(formats)
    if set(formats) - {"html", "pdf"}:
        raise ValueError(f"unknown formats {formats}: use 'html' and/or 'pdf'")
    nb = _load_executed(notebook)
    exe = shutil.which("quarto" if quarto == "auto" else quarto) if quarto else None
    if quarto and quarto != "auto" and not exe:
        raise FileNotFoundError(f"quarto not found: {quarto}")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rapport-") as tmp:
        print(f"rendering with quarto ({exe})" if exe else FALLBACK_MESSAGE)
        if exe:
            built = _render_quarto(exe, notebook, Path(tmp), name, formats)
        else:
            built = _render_fallback(nb, notebook.parent, Path(tmp), formats)
        result = {"renderer": "quarto" if exe else "pandoc+typst"}
        for fmt in formats:
            result[fmt] = atomic.copy_file(built[fmt], out_dir / f"{name}.{fmt}")
    return result


def _load_executed(notebook: Path):
    if not notebook.is_file():
        raise FileNotFoundError(f"notebook not found: {notebook}. Execute the report notebook "
                                "first (jupytext --to ipynb, then papermill).")
    if notebook.suffix != ".ipynb":
        raise ValueError(f"{notebook} is not an .ipynb: convert it (jupytext --to ipynb) and "
                         "execute it with papermill before rendering.")
    nb = nbformat.read(notebook, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    if code and not any(c.get("outputs") for c in code):
        executed = notebook.with_stem(notebook.stem + "-execute")
        raise ValueError(f"{notebook} was not executed: none of its {len(code)} code cells has "
                         f"an output. Execute it first (e.g. `papermill {notebook} "
                         f"{executed}`), then render the executed notebook.")
    return nb


def _run(cmd: list, cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, check=False)
    if proc.returncode:
        raise RuntimeError(f"command failed (exit {proc.returncode}): {' '.join(map(str, cmd))}")


def _render_quarto(exe: str, notebook: Path, tmp: Path, name: str, formats) -> dict:
    """``quarto render`` a staged copy next to the project's _quarto.yml, without execution."""
    shutil.copyfile(PROJECT_DIR / "_quarto.yml", tmp / "_quarto.yml")
    shutil.copyfile(notebook, tmp / f"{name}.ipynb")
    built = {}
    for fmt in formats:
        to = {"html": "html", "pdf": "typst"}[fmt]
        _run([exe, "render", f"{name}.ipynb", "--to", to, "--no-execute",
              "--output-dir", f"_{fmt}"], tmp)
        built[fmt] = tmp / f"_{fmt}" / f"{name}.{fmt}"
        if not built[fmt].is_file():
            raise RuntimeError(f"quarto render did not produce {built[fmt]}")
    return built


def _render_fallback(nb, resource_dir: Path, tmp: Path, formats) -> dict:
    """Notebook -> Pandoc Markdown -> HTML (pandoc) and Typst (pandoc) -> PDF (typst)."""
    import pypandoc
    import typst

    meta, markdown = _to_markdown(nb, tmp / "media")
    files = {"doc.md": markdown, "meta.yaml": yaml.safe_dump(meta, allow_unicode=True),
             "filter.lua": LUA.read_text(encoding="utf-8"),
             "style.html": CSS.read_text(encoding="utf-8"), "head.typ": TYPST_HEADER}
    for fname, text in files.items():
        (tmp / fname).write_text(text, encoding="utf-8")
    args = [pypandoc.get_pandoc_path(), "doc.md", "--from=markdown", "--standalone", "--toc",
            "--toc-depth=3", "--metadata-file=meta.yaml",
            "--lua-filter=filter.lua", f"--resource-path=.{os.pathsep}{resource_dir.resolve()}"]
    if "html" in formats:
        html = ["--to=html5", "--embed-resources", "--include-in-header=style.html"]
        _run([*args, *html, "--output=doc.html"], tmp)
    if "pdf" in formats:
        variables = ["papersize=a4", "page-numbering=1", "margin.x=2cm", "margin.y=2.5cm"]
        typ = ["--to=typst", "--extract-media=typst-media", "--include-in-header=head.typ"]
        _run([*args, *typ, *(f"--variable={v}" for v in variables), "--output=doc.typ"], tmp)
        typst.compile(str(tmp / "doc.typ"), output=str(tmp / "doc.pdf"), root=str(tmp))
    return {fmt: tmp / f"doc.{fmt}" for fmt in formats}


_XREF = re.compile(r"@((fig|tbl)-[\w-]+)")
KINDS = {"fig": "Figure", "tbl": "Tableau"}


def _numbers(cells) -> dict[str, str]:
    """Quarto's numbering of labelled figures and tables: label -> 'Figure 3' (document
    order, figures and tables counted apart; a cell without its figure gets no number)."""
    counts, out = {"fig": 0, "tbl": 0}, {}
    for cell in cells:
        if cell.cell_type != "code":
            continue
        label = str(_cell_options(cell.source).get("label", ""))
        kind = label.split("-", 1)[0]
        if kind not in KINDS:
            continue
        mimes = {m for o in cell.get("outputs", []) for m in o.get("data", {})}
        has = (mimes & {"image/png", "image/jpeg", "image/svg+xml"} if kind == "fig"
               else any("|" in _text(o) for o in cell.get("outputs", [])))
        if has:
            counts[kind] += 1
            out[label] = f"{KINDS[kind]} {counts[kind]}"
    return out


def _text(out) -> str:
    value = out.get("data", {}).get("text/markdown", "")
    return "".join(value) if isinstance(value, list) else value


def _crossrefs(text: str, numbers: dict[str, str]) -> str:
    """``@fig-x`` -> a link 'Figure 3' to the figure, as Quarto writes it; a reference to a
    figure that is not there (a notebook without results) -> '?fig-x', as Quarto marks it
    (without the '@', which pandoc would read as a citation)."""
    return _XREF.sub(lambda m: f"[{numbers[m.group(1)]}](#{m.group(1)})"
                     if m.group(1) in numbers else f"?{m.group(1)}", text)  # no citation


def _table_caption(text: str, label: str, caption: str) -> str:
    """A Markdown table output with its caption after the table, in a div with its id."""
    lines = text.splitlines()
    rows = [i for i, line in enumerate(lines) if line.startswith("|")]
    if not rows:
        return text
    end = rows[0]
    while end + 1 < len(lines) and lines[end + 1].startswith("|"):
        end += 1
    body = lines[:end + 1] + ["", f": {caption}", ""] + lines[end + 1:]
    return f"::: {{#{label}}}\n" + "\n".join(body) + "\n:::"


def _to_markdown(nb, media: Path) -> tuple[dict, str]:
    """Front matter -> metadata; markdown cells kept; code cells -> their outputs only.
    Figures and tables labelled as Quarto wants them (``#| label: fig-...`` with
    ``fig-cap``, ``tbl-...`` with ``tbl-cap``) are numbered and captioned the way Quarto
    does ("Figure 3 – ..."), and ``@fig-...`` references become links."""
    media.mkdir(parents=True, exist_ok=True)
    cells, meta, parts = list(nb.cells), {}, []
    if cells and cells[0].cell_type in ("raw", "markdown"):
        first = cells[0].source.lstrip()
        m = _FRONT.match(first)
        if m:  # the front matter becomes metadata; any text after it in the cell is kept
            meta, cells = yaml.safe_load(m.group(1) or "") or {}, cells[1:]
            parts.append(first[m.end():].strip())
    numbers = _numbers(cells)
    for i, cell in enumerate(cells):
        tags = set(cell.metadata.get("tags", []))
        if "remove-cell" in tags:
            continue
        if cell.cell_type == "markdown":
            src = cell.source
            for fname, data in cell.get("attachments", {}).items():
                payload = next(iter(data.values()))
                path = media / f"att{i}-{fname}"
                path.write_bytes(base64.b64decode(payload))
                src = src.replace(f"attachment:{fname}", f"media/{path.name}")
            parts.append(_crossrefs(src, numbers))
        elif cell.cell_type == "raw":
            mimetype = cell.metadata.get("raw_mimetype")
            fmt = {"text/html": "html", "text/latex": "latex"}.get(mimetype)
            parts.append(_fence(cell.source, f"{{={fmt}}}") if fmt else cell.source)
        else:
            opts = _cell_options(cell.source)
            if opts.get("include") is False:
                continue
            if opts.get("echo") is True and "remove-input" not in tags:
                code = "\n".join(line for line in cell.source.splitlines()
                                 if not line.startswith("#|"))
                parts.append(_fence(code.strip(), "python"))
            if opts.get("output") is False or "remove-output" in tags:
                continue
            label = str(opts.get("label", ""))
            number = numbers.get(label)
            caption = opts.get("fig-cap", "")
            if number and label.startswith("fig-"):
                caption = f"{number} – {caption}"
            for k, out in enumerate(cell.get("outputs", [])):
                text = _output(out, media / f"out{i}-{k}", caption)
                if number and label.startswith("fig-") and text.startswith("!["):
                    text, number = text + f"{{#{label}}}", None  # the first image only
                elif number and label.startswith("tbl-") and "|" in text:
                    text = _table_caption(text, label, f"{number} – {opts.get('tbl-cap', '')}")
                    number = None
                parts.append(text)
    return _metadata(meta), "\n\n".join(p for p in parts if p and p.strip()) + "\n"


def _output(out, stem: Path, caption: str) -> str:
    if out.output_type == "stream":
        return _fence(out.text.rstrip(), "") if out.name == "stdout" else ""
    if out.output_type == "error":
        return _fence(f"{out.ename}: {out.evalue}", "")
    data = out.get("data", {})
    mime = next((m for m in _MIME_ORDER if m in data), None)
    value = data.get(mime)
    text = "".join(value) if isinstance(value, list) else value
    if mime == "text/markdown":
        return text
    if mime in ("image/png", "image/jpeg", "image/svg+xml"):
        path = stem.with_suffix({"image/png": ".png", "image/jpeg": ".jpg"}.get(mime, ".svg"))
        if mime == "image/svg+xml":
            path.write_text(text, encoding="utf-8")
        else:
            path.write_bytes(base64.b64decode(text))
        return f"![{caption}](media/{path.name})"
    if mime == "text/html":
        return _fence(text, "{=html}")
    return _fence(text.rstrip(), "") if mime else ""


def _fence(text: str, info: str) -> str:
    ticks = "`" * max(3, 1 + max((len(r) for r in re.findall(r"`+", text)), default=0))
    return f"{ticks}{info}\n{text}\n{ticks}"


def _cell_options(source: str) -> dict:
    lines = [line[2:] for line in source.splitlines() if line.startswith("#|")]
    try:
        opts = yaml.safe_load("\n".join(lines)) if lines else {}
    except yaml.YAMLError:
        return {}
    return opts if isinstance(opts, dict) else {}


def _french_date(value):
    if value in ("today", "now", "last-modified"):
        value = datetime.date.today()
    if isinstance(value, str):
        try:
            value = datetime.date.fromisoformat(value)
        except ValueError:
            return value
    return f"{value.day} {_MONTHS[value.month - 1]} {value.year}"


def _metadata(meta: dict) -> dict:
    """Quarto front matter -> Pandoc metadata (author names, French dates, defaults)."""
    meta = {k: v for k, v in meta.items() if k not in ("format", "execute", "jupyter", "engine")}
    authors = meta.get("author", [])
    authors = authors if isinstance(authors, list) else [authors]
    names = [a.get("name", "") if isinstance(a, dict) else a for a in authors]
    names = [" ".join(str(v) for v in n.values()) if isinstance(n, dict) else str(n) for n in names]
    if names:
        meta["author"] = names
    if "date" in meta:
        meta["date"] = _french_date(meta["date"])
    meta.setdefault("lang", "fr")
    meta.setdefault("toc-title", "Table des matières")
    if "title" not in meta:
        meta["pagetitle"] = "Rapport"
    return json.loads(json.dumps(meta, default=str))
