"""The shape of src/common: one job per module, no import cycle, no module over 400 lines,
and the notebooks' make dependencies read from their imports."""

from __future__ import annotations

import subprocess
import sys

from common import dependencies, paths

SOURCE = paths.ROOT / "src" / "common"


def test_no_import_cycle():
    assert dependencies.cycles(dependencies.graph()) == []


def test_cycles_are_found():
    assert dependencies.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [
        ["a", "b", "c", "a"]]


def test_no_module_over_400_lines():
    sizes = {p.name: len(p.read_text().splitlines()) for p in SOURCE.glob("*.py")}
    assert {n: s for n, s in sizes.items() if s > 400} == {}


def test_model_code_imports_no_reader_and_config_no_ml_library():
    graph = dependencies.graph()
    # the model folder is written by the trainers and read by predict: nothing imports predict
    assert not [m for m, deps in graph.items() if "predict" in deps]
    assert "vit" not in dependencies.closure({"efficientnet"}, graph)
    # the configuration is read before Keras is imported: it must not import it
    code = ("import sys; import common.config, common.runtime; "
            "print(sorted(m for m in ('keras', 'tensorflow', 'torch', 'transformers') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_make_rules_follow_the_imports():
    rules = dependencies.make_rules(sorted(str(p) for p in (paths.ROOT / "notebooks")
                                           .glob("0*.py")), paths.ROOT)
    lines = {line.split(":")[0].rsplit("/", 1)[1]: line for line in rules.splitlines()[1:]}
    assert "src/common/vit.py" in lines["01_vit_scratch.json"]
    assert "src/common/keras_training.py" in lines["05_efficientnet.json"]
    assert "src/common/vit.py" not in lines["05_efficientnet.json"]
    assert "src/common/hf_training.py" not in lines["01_vit_scratch.json"]
    assert "src/common/attention.py" in lines["03_vit_finetune.json"]
    assert all("src/common/report.py" not in line for line in lines.values())
