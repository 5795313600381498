"""The one command line, ``python -m common``: every command that the README, ``make help``,
the Makefile, the report's sources and the params files name exists and answers ``--help``;
no other ``python -m common.<module>`` entry point is advertised."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from common import __main__ as cli
from common.core import paths
from common.data.table import LOADERS

# "python -m common data summary DIR", "$(PY) -m common synth …", "python3 -m common deps"
NAMED = re.compile(r"-m common((?:\s+[a-z][a-z-]*)*)")
DOCUMENTS = ["README.md", "Makefile", "report/rapport.py", "report/_quarto.yml",
             *(str(p.relative_to(paths.ROOT)) for pattern in ("params/*/*.yaml",
                                                               "src/common/**/*.py")
               for p in sorted(paths.ROOT.glob(pattern)))]


def _make_help() -> str:
    return subprocess.run(["make", "--no-print-directory", "help"], cwd=paths.ROOT,
                          capture_output=True, text=True, check=True).stdout


def _commands(parser) -> dict:
    """A parser's sub-commands: name -> parser (empty when it has none)."""
    return next((a.choices for a in parser._actions
                 if isinstance(a, argparse._SubParsersAction)), {})


def named_commands() -> dict[tuple[str, ...], str]:
    """Each command line named in the docs (its command and sub-command words) -> where."""
    texts = {name: (paths.ROOT / name).read_text() for name in DOCUMENTS}
    texts["make help"] = _make_help()
    commands = _commands(cli.parser())
    found = {}
    for where, text in texts.items():
        for match in NAMED.finditer(text):
            words = tuple(match.group(1).split())
            if words and words[0] in commands:
                words = words[:2] if _commands(commands[words[0]]) else words[:1]
            found.setdefault(words, where)
    return found


def test_the_docs_name_only_the_one_command_line():
    old = {where: line.strip() for where in DOCUMENTS
           for line in (paths.ROOT / where).read_text().splitlines()
           if re.search(r"-m common\.[a-z]", line)}
    assert old == {}


def test_every_named_command_exists_and_answers_help(capsys):
    named = named_commands()
    assert ("run",) in named and ("data", "summary") in named and ("explore",) in named
    for words, where in sorted(named.items()):
        assert not words or words[0] in cli.COMMANDS, f"{where} names python -m common {words}"
        with pytest.raises(SystemExit) as stop:
            cli.main([*words, "--help"])
        assert stop.value.code == 0, (words, where)
        usage = " ".join(("usage: python -m common", *words))
        assert capsys.readouterr().out.startswith(usage + " ")


def test_every_command_answers_help_in_a_fresh_process():
    # what a user types; deps must run with the standard library alone (make calls it
    # before any setup)
    for name in cli.COMMANDS:
        proc = subprocess.run([sys.executable, "-m", "common", name, "--help"], cwd=paths.ROOT,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and proc.stdout.startswith("usage:"), (name, proc.stderr)
    code = ("import sys, runpy; sys.argv = ['common', 'deps', 'notebooks/01_vit_scratch.py']\n"
            "try:\n    runpy.run_module('common', run_name='__main__')\n"
            "except SystemExit: pass\n"
            "print(sorted(m for m in ('yaml', 'pandas', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=paths.ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out.splitlines()[-1] == "[]"


def test_an_unknown_command_is_refused_in_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["nope"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nope'" in err and "Traceback" not in err


def test_synth_offers_every_layout_the_loader_reads():
    synth = _commands(cli.parser())["synth"]
    layout = next(a for a in synth._actions if a.dest == "layout")
    assert sorted(layout.choices) == sorted(LOADERS)
