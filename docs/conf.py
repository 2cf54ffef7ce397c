"""Sphinx configuration of the skssl documentation.

Build with ``bash docs/build.sh`` (warnings are errors). Nothing here reaches the internet: no intersphinx, no
remote images, the default (bundled) theme.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # document the working tree even without an editable install

import skssl

project = "skssl"
author = "skssl developers"
copyright = "skssl developers, BSD-3-Clause"
version = release = skssl.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "build.sh", "README.md", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]

# -- MyST (Markdown pages) -----------------------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# -- API reference: autosummary + autodoc + numpydoc ---------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_typehints = "none"  # the numpydoc sections already give the types
autodoc_member_order = "groupwise"
autodoc_inherit_docstrings = True

numpydoc_show_class_members = False  # the class template lists the members through autodoc instead
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

# Every public class and function must have a docstring with an Examples section; the build fails otherwise
# (numpydoc reports the check as a warning and the build runs with -W). Methods and properties of classes (a
# CamelCase name followed by a member) are exempt: their class's Examples section shows them in use.
numpydoc_validation_checks = {"GL08", "EX01"}
numpydoc_validation_exclude = {r"\.[A-Z]\w*\.\w+$"}


def _skip_foreign_members(app, what, name, obj, skip, options):
    """Document only members defined in skssl.

    The estimators inherit ``get_params``, ``set_params``, ``set_output``, ``fit_transform``, the metadata-routing
    methods... from scikit-learn; those are documented by scikit-learn (and their docstrings use scikit-learn's
    own glossary, which this site does not have). The class template says so.
    """
    if skip:
        return True
    target = obj.fget if isinstance(obj, property) else obj
    module = getattr(target, "__module__", None) or getattr(inspect.getmodule(target), "__name__", None)
    if module is None:  # plain class attributes (dataclass fields...): keep autodoc's decision
        return None
    if not module.startswith("skssl"):
        return True
    return None


_TRAILING_UNDERSCORE = re.compile(r"(?<=\w)_(?=[,)\s]|$)")
_LITERAL = re.compile(r"(``.*?``|`.*?`)")


def _escape_shape_names(app, what, name, obj, options, lines):
    """Escape trailing underscores in shapes such as ``of shape (n_features_in_,)`` or ``(n, len(genes_))``.

    In reStructuredText ``n_features_in_`` is a hyperlink reference; docstrings write fitted attributes in shapes
    without backticks, so the escaping is done here, before numpydoc reads the docstring. Text in backticks is left
    alone.
    """
    for i, line in enumerate(lines):
        start = line.find("shape (")
        if start < 0:
            continue
        head, tail = line[:start], line[start:]
        parts = _LITERAL.split(tail)  # odd items are the literals
        lines[i] = head + "".join(p if k % 2 else _TRAILING_UNDERSCORE.sub(r"\\_", p) for k, p in enumerate(parts))


# -- Pages assembled at build time ----------------------------------------------------------------------------------
# docs/benchmarks.md and docs/performance.md are written with other parts of the project; the reference toctree
# links them when they exist. The examples page shows every script of examples/ (whatever scripts there are).
OPTIONAL_PAGES = ("benchmarks", "performance")
EXAMPLES = ROOT / "examples"


def _first_docstring_line(path):
    import ast

    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or path.stem.replace("_", " ")
    return doc.strip().splitlines()[0].rstrip(".")


def _example_sections():
    parts = []
    # The quickstart first, then alphabetical order.
    for path in sorted(EXAMPLES.glob("*.py"), key=lambda p: (not p.name.startswith("quickstart"), p.name)):
        parts += [
            f"## {_first_docstring_line(path)}",
            "",
            f"`python examples/{path.name}` · {{download}}`download {path.name} <../examples/{path.name}>`",
            "",
            f"```{{literalinclude}} ../examples/{path.name}",
            ":language: python",
            "```",
            "",
        ]
    return "\n".join(parts)


def _assemble_pages(app, docname, source):
    text = source[0]
    if "%SKSSL_OPTIONAL_PAGES%" in text:
        present = [name for name in OPTIONAL_PAGES if (DOCS / f"{name}.md").is_file()]
        text = text.replace("%SKSSL_OPTIONAL_PAGES%", "\n".join(present))
    # [text](%page%): a link to an optional page when it exists, plain text otherwise.
    text = re.sub(
        r"\[([^\]]+)\]\(%(" + "|".join(OPTIONAL_PAGES) + r")%\)",
        lambda m: f"{{doc}}`{m.group(1)} </{m.group(2)}>`" if (DOCS / f"{m.group(2)}.md").is_file() else m.group(1),
        text,
    )
    if "%SKSSL_EXAMPLE_SCRIPTS%" in text:
        text = text.replace("%SKSSL_EXAMPLE_SCRIPTS%", _example_sections())
    source[0] = text


def setup(app):
    app.connect("source-read", _assemble_pages)
    app.connect("autodoc-skip-member", _skip_foreign_members)
    # Before numpydoc (priority 500) turns the docstring into reStructuredText.
    app.connect("autodoc-process-docstring", _escape_shape_names, priority=100)


# -- HTML ----------------------------------------------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"skssl {release}"
html_static_path: list[str] = []
html_theme_options = {
    "description": "Self-supervised learning for gene-expression data, the scikit-learn way",
    "fixed_sidebar": False,
    "show_relbars": True,
}
html_show_sourcelink = False

# Nothing in the build may reach the network.
intersphinx_mapping: dict = {}
os.environ.setdefault("SKSSL_DOCS_BUILD", "1")
