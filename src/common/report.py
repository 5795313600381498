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

import argparse
import base64
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import yaml

from common import atomic

PROJECT_DIR = Path(__file__).resolve().parents[2] / "report"  # holds _quarto.yml
FALLBACK_MESSAGE = "quarto is not on the PATH: fallback renderer, pandoc (HTML) and typst (PDF)"
_FRONT = re.compile(r"\A---[ \t]*\n(.*?\n)?---[ \t]*(\n|\Z)", re.DOTALL)
_MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
           "octobre", "novembre", "décembre")  # fmt: skip
_MIME_ORDER = ("text/markdown", "image/png", "image/jpeg", "image/svg+xml", "text/html",
               "text/plain")

CSS = """<style>
body{max-width:58em;font-family:system-ui,"Segoe UI",Roboto,sans-serif;line-height:1.55}
img{max-width:100%;height:auto} figure{margin:1.2em 0;text-align:center}
figcaption{font-size:.9em;color:#57606a} .header-section-number{color:#8c959f;margin-right:.3em}
table{border-collapse:collapse;margin:1em auto;font-size:.9em}
th,td{border:1px solid #d0d7de;padding:.3em .7em} thead{background:#f6f8fa}
nav#TOC{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:.4em 1.4em}
.callout{border:1px solid #d0d7de;border-left:5px solid #0969da;border-radius:5px;
  background:#f0f6ff;padding:.5em 1em;margin:1em 0} .callout-title{font-weight:bold;margin:.2em 0}
.callout-note{border-left-color:#0969da;background:#f0f6ff}
.callout-tip{border-left-color:#1a7f37;background:#effaf1}
.callout-warning{border-left-color:#d4a72c;background:#fff8e1}
.callout-caution{border-left-color:#e16f24;background:#fff1e6}
.callout-important{border-left-color:#cf222e;background:#ffebe9}
</style>
"""
TYPST_HEADER = "#set table(stroke: 0.5pt + luma(180))\n"

# Pandoc Lua filter: HTML outputs (pandas tables) -> Pandoc tables (always for Typst, tables
# only for HTML); Quarto callouts -> titled boxes; without level-1 headings, sections are
# numbered from level 2 (as Quarto does).
LUA = r"""
local TITLES = {note="Note", tip="Astuce", warning="Avertissement", caution="Attention",
                important="Important"}
local COLORS = {note="#0969da", tip="#1a7f37", warning="#d4a72c", caution="#e16f24",
                important="#cf222e"}
local html = FORMAT:match("html") ~= nil
function RawBlock(el)
  if el.format == "html" and (not html or el.text:find("<table")) then
    local ok, doc = pcall(pandoc.read, el.text, "html")
    if ok then return doc.blocks end
  end
end
function Div(el)
  local kind
  for _, c in ipairs(el.classes) do kind = kind or c:match("^callout%-(%a+)$") end
  if not kind then return nil end
  local title = pandoc.Inlines(TITLES[kind] or kind)
  if el.attributes.title then
    title = pandoc.utils.blocks_to_inlines(pandoc.read(el.attributes.title, "markdown").blocks)
  elseif #el.content > 0 and el.content[1].t == "Header" then
    title = el.content[1].content
    el.content:remove(1)
  end
  el.attributes.title = nil
  if html then
    el.classes:insert("callout")
    el.content:insert(1, pandoc.Div(pandoc.Plain(title), {class="callout-title"}))
    return el
  end
  local col = 'rgb("' .. (COLORS[kind] or "#0969da") .. '")'
  local out = pandoc.Blocks{pandoc.RawBlock(FORMAT, "#block(width: 100%, inset: 8pt, radius: 3pt, "
    .. "fill: " .. col .. ".lighten(88%), stroke: (left: 3pt + " .. col .. "))[")}
  out:insert(pandoc.Para{pandoc.Strong(title)})
  out:extend(el.content)
  out:insert(pandoc.RawBlock(FORMAT, "]"))
  return out
end
function Pandoc(doc)
  local has_h1 = false
  doc:walk{Header = function(h) has_h1 = has_h1 or h.level == 1 end}
  if has_h1 then return doc end
  return doc:walk{Header = function(h) h.level = math.max(1, h.level - 1); return h end}
end
"""


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
             "filter.lua": LUA, "style.html": CSS, "head.typ": TYPST_HEADER}
    for fname, text in files.items():
        (tmp / fname).write_text(text, encoding="utf-8")
    args = [pypandoc.get_pandoc_path(), "doc.md", "--from=markdown", "--standalone", "--toc",
            "--toc-depth=3", "--number-sections", "--metadata-file=meta.yaml",
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


def _to_markdown(nb, media: Path) -> tuple[dict, str]:
    """Front matter -> metadata; markdown cells kept; code cells -> their outputs only."""
    media.mkdir(parents=True, exist_ok=True)
    cells, meta, parts = list(nb.cells), {}, []
    if cells and cells[0].cell_type in ("raw", "markdown"):
        first = cells[0].source.lstrip()
        m = _FRONT.match(first)
        if m:  # the front matter becomes metadata; any text after it in the cell is kept
            meta, cells = yaml.safe_load(m.group(1) or "") or {}, cells[1:]
            parts.append(first[m.end():].strip())
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
            parts.append(src)
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
            for k, out in enumerate(cell.get("outputs", [])):
                parts.append(_output(out, media / f"out{i}-{k}", opts.get("fig-cap", "")))
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


def main(argv=None) -> int:
    doc = __doc__.splitlines()[0]
    parser = argparse.ArgumentParser(prog="python -m common.report", description=doc)
    cmd = parser.add_subparsers(dest="command", required=True).add_parser(
        "render", help="render an executed notebook to HTML and PDF")
    cmd.add_argument("notebook", type=Path)
    cmd.add_argument("--out-dir", type=Path, required=True)
    cmd.add_argument("--name", default="rapport")
    cmd.add_argument("--formats", nargs="+", default=["html", "pdf"], choices=["html", "pdf"])
    cmd.add_argument("--no-quarto", action="store_true", help="use the pandoc+typst fallback")
    args = parser.parse_args(argv)
    try:
        result = render(args.notebook, args.out_dir, args.name, args.formats,
                        quarto=None if args.no_quarto else "auto")
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for fmt in args.formats:
        print(f"{fmt.upper()} : {result[fmt]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
