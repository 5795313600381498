"""The shape of src/common: subpackages in layers that import only downwards, one job per
module, no import cycle, no private Keras import, and the notebooks' make dependencies read
from their imports. (No line count: what a module does decides where its code lives.)"""

from __future__ import annotations

import subprocess
import sys

from common.core import paths
from common.pipeline import dependencies

SOURCE = paths.ROOT / "src" / "common"
# bottom to top: a layer imports only the layers below it (and itself)
LAYERS = ["core", "config", "data", "results", "models", "inference", "training", "report",
          "pipeline"]
COMMANDS = {"__main__", "explore"}  # the command line and what only it runs: above every layer


def _rank(module: str) -> int:
    layer = dependencies.layer(module)
    return len(LAYERS) if layer in COMMANDS else LAYERS.index(layer)


def test_every_module_sits_in_a_layer():
    graph = dependencies.graph()
    outside = sorted(m for m in graph
                     if dependencies.layer(m) not in {*LAYERS, *COMMANDS, "__main__"})
    assert outside == []
    assert {p.name for p in SOURCE.iterdir() if p.is_dir() and p.name != "__pycache__"} \
        == set(LAYERS)


def test_layers_import_only_downwards():
    upwards = sorted(f"{m} -> {n}" for m, deps in dependencies.graph().items() for n in deps
                     if _rank(n) > _rank(m))
    assert upwards == []


def test_the_model_and_inference_never_import_training_code():
    graph = dependencies.graph()
    for module in graph:
        if dependencies.layer(module) in ("models", "inference"):
            reached = dependencies.closure({module}, graph)
            assert not [m for m in reached if dependencies.layer(m) == "training"], module


def test_a_layer_check_catches_an_upward_import():
    fake = {"models.vit": {"training.keras_fit"}, "training.keras_fit": {"models.vit"}}
    assert [f"{m} -> {n}" for m, deps in fake.items() for n in deps
            if _rank(n) > _rank(m)] == ["models.vit -> training.keras_fit"]


def test_no_import_cycle():
    assert dependencies.cycles(dependencies.graph()) == []


def test_cycles_are_found():
    assert dependencies.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [
        ["a", "b", "c", "a"]]


def test_no_private_keras_import():
    private = [str(p) for p in [*SOURCE.rglob("*.py"), *(paths.ROOT / "benchmarks").glob("*.py")]
               if "keras.src" in p.read_text()]
    assert private == []


def test_config_imports_no_ml_library():
    # the configuration is read before Keras is imported: it must not import it
    code = ("import sys; import common.config.loading, common.core.runtime, "
            "common.pipeline.opening; "
            "print(sorted(m for m in ('keras', 'tensorflow', 'torch', 'transformers') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_make_rules_follow_the_imports():
    rules = dependencies.make_rules(sorted(str(p) for p in (paths.ROOT / "notebooks")
                                           .glob("0*.py")), paths.ROOT)
    lines = {line.split(":")[0].rsplit("/", 1)[1]: line for line in rules.splitlines()[1:]}
    assert "src/common/models/vit.py" in lines["01_vit_scratch.json"]
    assert "src/common/training/keras_fit.py" in lines["05_efficientnet.json"]
    assert "src/common/models/vit.py" not in lines["05_efficientnet.json"]
    assert "src/common/training/hf_trainer.py" not in lines["01_vit_scratch.json"]
    assert "src/common/inference/attention.py" in lines["03_vit_finetune.json"]
    assert "src/common/config/schema.py" in lines["02_vit_scratch_10classes.json"]
    assert all("src/common/report/rendering.py" not in line for line in lines.values())
