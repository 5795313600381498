"""Shared code of the vit-cars-poc notebooks: data, models, results, figures, predictions."""

import sys

# jsonschema, which nbformat imports (papermill, jupytext, the report's renderer), checks the
# IRI format with rfc3987-syntax when that package is installed (JupyterLab's jupyter-events
# asks for it), and rfc3987-syntax compiles its grammar when imported: 1.5 s in every process
# that runs or renders a notebook. No document this project validates has an IRI field;
# without the package, jsonschema leaves that one format unchecked.
sys.modules.setdefault("rfc3987_syntax", None)
