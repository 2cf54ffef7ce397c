"""Private scikit-learn and torch names are used only through ``skssl/_compat.py``.

Upgrades of scikit-learn have broken third-party estimators through private helpers before; keeping every such use
in one module makes an upgrade a one-file review. This test walks the package's syntax trees and fails on any
import of a private scikit-learn/torch module or name, and on any ``torch._...`` / ``sklearn._...`` attribute, found
outside that module.
"""

import ast
import pathlib

import pytest

import skssl

PACKAGE = pathlib.Path(skssl.__file__).parent
UPSTREAM = ("sklearn", "torch")


def _is_private(part):
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def private_uses(source, filename="<string>"):
    """``(line, text)`` of every private upstream import or attribute in ``source``."""
    tree = ast.parse(source, filename)
    aliases = {}  # local name -> dotted upstream path, for ``import torch as T`` / ``from torch import nn``
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in UPSTREAM:
                    aliases[(alias.asname or alias.name).split(".")[0]] = (
                        alias.name if alias.asname else alias.name.split(".")[0]
                    )
                    if any(_is_private(part) for part in alias.name.split(".")):
                        found.append((node.lineno, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in UPSTREAM:
                for alias in node.names:
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                    path = f"{node.module}.{alias.name}".split(".")
                    if any(_is_private(part) for part in path):
                        found.append((node.lineno, f"from {node.module} import {alias.name}"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            root = node.value
            chain = [node.attr]
            while isinstance(root, ast.Attribute):
                chain.append(root.attr)
                root = root.value
            if isinstance(root, ast.Name) and root.id in aliases:
                found.append((node.lineno, ".".join([aliases[root.id], *reversed(chain)])))
    return sorted(set(found))


def test_detector_finds_private_imports_and_attributes():
    source = (
        "import torch\n"
        "from sklearn.base import _fit_context\n"
        "from sklearn.utils._param_validation import Interval\n"
        "import sklearn.utils._testing\n"
        "from torch import nn\n"
        "x = torch._standard_gamma(1)\n"
        "y = nn._reduction\n"
        "z = torch.__version__\n"
        "from sklearn.base import clone\n"
    )
    lines = [line for line, _ in private_uses(source)]
    assert lines == [2, 3, 4, 6, 7]


def test_private_upstream_names_only_in_compat():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "_compat.py" and path.parent == PACKAGE:
            continue
        for line, text in private_uses(path.read_text(), str(path)):
            offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {text}")
    assert not offenders, "private scikit-learn/torch names outside skssl/_compat.py:\n" + "\n".join(offenders)


@pytest.mark.parametrize("name", ["fit_context", "validate_params", "Interval", "StrOptions", "standard_gamma"])
def test_compat_names_resolve(name):
    from skssl import _compat

    assert callable(getattr(_compat, name))
