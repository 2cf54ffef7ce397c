"""Every script in examples/ runs, and every notebook there executes top to bottom, in quick mode.

Each script runs in its own Python process with ``SKSSL_EXAMPLE_QUICK=1`` (the scripts read it to shrink data sizes
and epochs), from a temporary working directory (so nothing is written into the repository) and with one torch
thread per process unless ``OMP_NUM_THREADS`` is already set (on a small shared CI machine more threads mostly add
contention). Scripts that read ``../shared/data`` are skipped when that folder is absent. The notebooks run in a
Jupyter kernel through nbclient; the test skips, saying why, when nbclient or ipykernel is not installed.

The notebooks are stored with their outputs, which ``docs/regenerate_notebook.py`` produces and stamps with the
skssl version and a hash of the code cells; a stale stamp fails ``test_notebook_outputs_are_current``.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import skssl

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SHARED_DATA = ROOT.parent / "shared" / "data"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
QUICK_FLAG = "SKSSL_EXAMPLE_QUICK"
TIMEOUT = 600  # seconds per example: generous, for loaded machines; in quick mode each takes seconds
REGENERATE = ROOT / "docs" / "regenerate_notebook.py"


def _needs_shared_data(path):
    text = path.read_text(encoding="utf-8")
    return '"shared" / "data"' in text or "shared/data" in text


def _example_env():
    env = dict(os.environ)
    env[QUICK_FLAG] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", env["OMP_NUM_THREADS"])
    env.setdefault("MPLBACKEND", "Agg")
    # The working tree's skssl, even when another copy is installed.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _skip_without_data(path):
    if _needs_shared_data(path) and not SHARED_DATA.is_dir():
        pytest.skip(f"{path.name} reads ../shared/data, which is not at {SHARED_DATA}")


def test_examples_are_found():
    assert SCRIPTS, f"no example scripts in {EXAMPLES}"
    assert NOTEBOOKS, f"no example notebook in {EXAMPLES}"


@pytest.mark.parametrize("path", SCRIPTS + NOTEBOOKS, ids=lambda p: p.name)
def test_example_reads_the_quick_flag(path):
    # Without it the test suite would run the full-size example.
    assert QUICK_FLAG in path.read_text(encoding="utf-8"), f"{path.name} does not read {QUICK_FLAG}"


@pytest.mark.slow
@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_example_script_runs(path, tmp_path):
    _skip_without_data(path)
    result = subprocess.run(
        [sys.executable, str(path)],
        check=False,
        cwd=tmp_path,
        env=_example_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, (
        f"{path.name} exited with {result.returncode}\n--- stdout ---\n{result.stdout[-3000:]}\n"
        f"--- stderr ---\n{result.stderr[-5000:]}"
    )
    assert result.stdout.strip(), f"{path.name} printed nothing"
    assert "Traceback" not in result.stderr, result.stderr[-5000:]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_with_its_outputs(path):
    nbformat = pytest.importorskip("nbformat", reason="nbformat is needed to read the notebooks")
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, f"{path.name} has no code cell"
    assert all(cell.execution_count for cell in code), f"{path.name} is stored without running every cell"
    counts = [cell.execution_count for cell in code]
    assert counts == list(range(1, len(code) + 1)), f"{path.name} was not run top to bottom in one go: {counts}"
    errors = [out for cell in code for out in cell.outputs if out.output_type == "error"]
    assert not errors, f"{path.name} is stored with an error output"
    images = [out for cell in code for out in cell.outputs if "image/png" in out.get("data", {})]
    assert images, f"{path.name} is stored without its plots"


def _regenerate_module():
    spec = importlib.util.spec_from_file_location("regenerate_notebook", REGENERATE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_outputs_are_current(path):
    # The stored outputs must come from this version of skssl and from the code cells as they now stand.
    nbformat = pytest.importorskip("nbformat", reason="nbformat is needed to read the notebooks")
    assert REGENERATE.is_file(), f"{REGENERATE} is missing"
    regenerate = _regenerate_module()
    notebook = nbformat.read(path, as_version=4)
    stamp = notebook.metadata.get(regenerate.STAMP_KEY)
    fix = f"regenerate its outputs with `{regenerate.COMMAND}` (about a minute on 2 CPU cores)"
    assert stamp, f"examples/{path.name} has no skssl version stamp in its metadata: {fix}"
    assert stamp.get("version") == skssl.__version__, (
        f"examples/{path.name} stores outputs of skssl {stamp.get('version')}, but the package is skssl "
        f"{skssl.__version__}: {fix}"
    )
    assert stamp.get("code_sha256") == regenerate.code_sha256(notebook), (
        f"a code cell of examples/{path.name} was edited after its outputs were generated: {fix}"
    )


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path, tmp_path, monkeypatch):
    _skip_without_data(path)
    nbformat = pytest.importorskip("nbformat", reason="running the notebooks needs nbformat: pip install nbformat")
    nbclient = pytest.importorskip("nbclient", reason="running the notebooks needs nbclient: pip install nbclient")
    pytest.importorskip("ipykernel", reason="running the notebooks needs a Python kernel: pip install ipykernel")
    for key, value in _example_env().items():
        if key != "MPLBACKEND":  # the kernel's inline backend renders the figures
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if a cell fails
    images = [
        out
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if "image/png" in out.get("data", {})
    ]
    assert images, f"{path.name} drew no figure"
