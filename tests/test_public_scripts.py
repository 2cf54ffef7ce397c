"""Scripts outside the package (benchmarks/, examples/, the notebook, docs/*.py) use skssl's public API only.

A script that imports a private module or name, or replaces a library function at run time, ties the library to it:
the library then keeps code for the script, and a refactoring breaks the script silently. This test parses every
such script and fails on an import of ``skssl._x`` / ``skssl.x._y`` / ``from skssl.x import _y``, on an attribute
``<skssl module>._y``, and on an assignment to an attribute of an skssl module.
"""

import ast
import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _private(dotted):
    return any(part.startswith("_") and not part.startswith("__") for part in dotted.split("."))


def private_uses(source, filename="<string>"):
    """``(line, text)`` of each private skssl import or attribute, or assignment into an skssl module."""
    tree = ast.parse(source, filename)
    modules = {}  # local name -> dotted skssl module path
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "skssl":
                    modules[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else "skssl"
                    if _private(alias.name):
                        found.append((node.lineno, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "skssl":
            for alias in node.names:
                if _private(f"{node.module}.{alias.name}"):
                    found.append((node.lineno, f"from {node.module} import {alias.name}"))
                modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
            target = f"{modules[node.value.id]}.{node.attr}"
            if _private(node.attr):
                found.append((node.lineno, target))
            if isinstance(node.ctx, ast.Store):
                found.append((node.lineno, f"{target} = ..."))
    return sorted(set(found))


def test_detector_finds_private_imports_attributes_and_replacements():
    source = (
        "import skssl\n"
        "import skssl._base\n"
        "from skssl._training import fit_loop\n"
        "from skssl.benchmark import _datasets\n"
        "from skssl.benchmark._protocol import score\n"
        "from skssl import MaskedAutoencoder, make_expression\n"
        "from skssl.benchmark import labeled_subsets\n"
        "skssl._validation.validate_X\n"
        "skssl.make_expression = None\n"
        "print(skssl.__version__)\n"
    )
    found = [text for _, text in private_uses(source)]
    assert found == [
        "import skssl._base",
        "from skssl._training import fit_loop",
        "from skssl.benchmark import _datasets",
        "from skssl.benchmark._protocol import score",
        "skssl._validation",
        "skssl.make_expression = ...",
    ]


def _scripts():
    paths = [*ROOT.glob("benchmarks/*.py"), *ROOT.glob("examples/*.py"), *ROOT.glob("docs/*.py")]
    return sorted(paths) + sorted(ROOT.glob("examples/*.ipynb"))


def _source(path):
    if path.suffix != ".ipynb":
        return path.read_text(encoding="utf-8")
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    code = ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"]
    # IPython magics and shell escapes are not Python.
    return "\n".join(line for block in code for line in block.splitlines() if not line.lstrip().startswith(("%", "!")))


@pytest.mark.parametrize("path", _scripts(), ids=lambda p: str(p.relative_to(ROOT)))
def test_script_uses_the_public_api_only(path):
    assert private_uses(_source(path), str(path)) == []


def test_the_scripts_were_found():
    names = {p.name for p in _scripts()}
    assert {"transfer_ceiling.py", "train_step_speed.py", "quickstart_pipeline.py", "label_efficiency.ipynb"} <= names
