#!/usr/bin/env bash
# Build the HTML documentation with warnings as errors; offline (no intersphinx, no downloads).
#
#   pip install -e ".[docs]"     # sphinx, numpydoc, myst-parser
#   bash docs/build.sh           # -> docs/_build/html/index.html
#
# Extra arguments go to sphinx-build (e.g. `bash docs/build.sh -q`).
set -euo pipefail
cd "$(dirname "$0")"
if ! python -c "import sphinx, numpydoc, myst_parser" 2>/dev/null; then
    echo "docs/build.sh: sphinx, numpydoc and myst-parser are needed: pip install -e \".[docs]\"" >&2
    exit 1
fi
# Fresh stub pages and environment every time, so a renamed object cannot leave a stale page behind.
rm -rf generated _build/doctrees
python -m sphinx -W --keep-going -E -b html -d _build/doctrees "$@" . _build/html
echo "docs/build.sh: HTML in $(pwd)/_build/html/index.html"
