"""Re-execute the stored example notebook(s) in place and stamp them with the skssl version that produced them.

Run from anywhere, in one command (no argument needed)::

    python docs/regenerate_notebook.py            # every examples/*.ipynb
    python docs/regenerate_notebook.py examples/label_efficiency.ipynb

Each notebook runs top to bottom in a fresh ``python3`` Jupyter kernel, at full size (``SKSSL_EXAMPLE_QUICK`` is
removed from the environment), with this working tree's skssl first on ``PYTHONPATH`` and ``examples/`` as its
working directory. The executed notebook replaces the stored one, and its metadata gets::

    "skssl": {"version": skssl.__version__, "generated": <UTC date>, "code_sha256": <hash of the code cells>,
              "seconds": <execution time>, "load_average": [<before>, <after>], "command": ...,
              "python": ..., "torch": ..., "scikit-learn": ...}

``tests/test_examples.py`` fails when the stamp is missing, when its version differs from the package's, or when a
code cell was edited after the run (the hash no longer matches), and names this script. Editing markdown cells does
not need a re-run. A cell that raises stops the script and leaves the stored notebook unchanged.

Needs ``nbformat``, ``nbclient`` and ``ipykernel`` (``pip install -e ".[notebook]"``), and matplotlib and pandas,
which the notebook imports. About a minute on an idle 2-core machine (68 s at 0.2.1) (the stamp's ``seconds``),
longer on a busy one (the run times printed in the notebook are then as long; the load average is recorded in the
stamp).
"""

import argparse
import datetime
import hashlib
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
STAMP_KEY = "skssl"
COMMAND = "python docs/regenerate_notebook.py"


def code_sha256(notebook):
    """Hash of the code cells' sources, in order: what the stored outputs were computed from."""
    digest = hashlib.sha256()
    for cell in notebook.cells:
        if cell.cell_type == "code":
            digest.update(cell.source.encode("utf-8"))
            digest.update(b"\0")
    return digest.hexdigest()


def _versions():
    sys.path.insert(0, str(ROOT))  # the working tree's skssl, as the kernel will import it
    import sklearn
    import torch

    import skssl

    return {
        "version": skssl.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "scikit-learn": sklearn.__version__,
    }


def regenerate(path, timeout):
    import nbclient
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)  # timestamps of an earlier run (Jupyter's record_timing)
    client = nbclient.NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        record_timing=False,  # no per-cell timestamps in the stored file: smaller diffs
        resources={"metadata": {"path": str(path.parent)}},
    )
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError (with the cell and its traceback) before anything is written
    seconds = time.perf_counter() - start
    versions = _versions()
    notebook.metadata[STAMP_KEY] = {
        "version": versions["version"],
        "generated": datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
        "code_sha256": code_sha256(notebook),
        "seconds": round(seconds),
        # Other processes lengthen the printed run times: the 1-minute load average before and after the run.
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "command": COMMAND,
        "python": versions["python"],
        "torch": versions["torch"],
        "scikit-learn": versions["scikit-learn"],
    }
    nbformat.validate(notebook)
    nbformat.write(notebook, path)
    return seconds, versions["version"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every examples/*.ipynb")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell (default 1800)")
    args = parser.parse_args()
    try:
        import ipykernel  # noqa: F401
        import nbclient  # noqa: F401
        import nbformat  # noqa: F401
    except ImportError as error:
        sys.exit(f"{error}: install the notebook tools with pip install nbformat nbclient ipykernel")

    # A full-size run, in the inline backend, of this working tree's skssl.
    os.environ.pop("SKSSL_EXAMPLE_QUICK", None)
    os.environ.pop("MPLBACKEND", None)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)

    paths = [p.resolve() for p in args.notebooks] or sorted(EXAMPLES.glob("*.ipynb"))
    paths = [p for p in paths if not p.name.endswith(".nbconvert.ipynb")]
    if not paths:
        sys.exit(f"no notebook to run in {EXAMPLES}")
    for path in paths:
        print(f"running {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} ...", flush=True)
        seconds, version = regenerate(path, args.timeout)
        print(f"  done in {seconds:.0f} s; stored with its outputs, stamped skssl {version}", flush=True)


if __name__ == "__main__":
    main()
