"""Atomic writes: a writer interrupted mid-write (an exception, or SIGKILL) leaves the old file or the new one."""

import os
import signal
import stat
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from skssl import MaskedAutoencoder, load_model, save_model
from skssl._atomic import atomic_path, atomic_write
from skssl.io import ExpressionData, _gct, _table, read_table, write_gct, write_table

OLD = b"the previous file, which an interrupted write must not destroy\n"


def _expression(n_samples=40, n_genes=6, seed=0):
    X = np.random.default_rng(seed).normal(size=(n_samples, n_genes)).astype(np.float32)
    return ExpressionData(X, [f"g{j}" for j in range(n_genes)], [f"s{i}" for i in range(n_samples)])


def _leftovers(directory, target):
    return sorted(name for name in os.listdir(directory) if name != os.path.basename(target))


def _fail_after(function, n_calls):
    """`function`, raising on its `n_calls`-th call: an interruption after some rows are already written."""
    calls = []

    def failing(*args, **kwargs):
        calls.append(None)
        if len(calls) >= n_calls:
            raise RuntimeError("interrupted mid-write")
        return function(*args, **kwargs)

    return failing


def test_atomic_write_text_and_binary(tmp_path):
    path = tmp_path / "out.txt"
    with atomic_write(path) as f:
        f.write("héllo\n")
    assert path.read_bytes() == "héllo\n".encode()
    with atomic_write(path, "wb") as f:
        f.write(b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert _leftovers(tmp_path, path) == []
    with pytest.raises(ValueError, match="mode must be"):
        with atomic_write(path, "a"):
            pass


@pytest.mark.parametrize("mode", ["w", "wb"])
def test_atomic_write_exception_keeps_old_file_and_removes_temporary(tmp_path, mode):
    path = tmp_path / "out.bin"
    path.write_bytes(OLD)
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_write(path, mode) as f:
            f.write("partial" * 10_000 if mode == "w" else b"partial" * 10_000)
            f.flush()
            raise RuntimeError("interrupted")
    assert path.read_bytes() == OLD
    assert _leftovers(tmp_path, path) == []


def test_atomic_write_exception_without_old_file_creates_nothing(tmp_path):
    path = tmp_path / "new.txt"
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(path) as f:
            f.write("partial")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_atomic_permissions_follow_open(tmp_path):
    # New files get open()'s permissions (not mkstemp's owner-only 0o600); replaced files keep theirs.
    umask = os.umask(0o022)
    try:
        new = tmp_path / "new.txt"
        with atomic_write(new) as f:
            f.write("x")
        assert stat.S_IMODE(new.stat().st_mode) == 0o644
        old = tmp_path / "old.txt"
        old.write_text("old")
        old.chmod(0o640)
        with atomic_write(old) as f:
            f.write("new")
        assert stat.S_IMODE(old.stat().st_mode) == 0o640
    finally:
        os.umask(umask)


def test_atomic_writes_through_symlinks(tmp_path):
    target = tmp_path / "target.txt"
    target.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    with atomic_write(link) as f:
        f.write("new")
    assert link.is_symlink()
    assert target.read_text() == "new"


def test_atomic_path_exception(tmp_path):
    path = tmp_path / "data.h5ad"
    path.write_bytes(OLD)
    with pytest.raises(OSError, match="disk full"):
        with atomic_path(path, suffix=".h5ad") as tmp:
            assert tmp.endswith(".h5ad") and os.path.dirname(tmp) == str(tmp_path)
            with open(tmp, "wb") as f:
                f.write(b"partial")
            raise OSError("disk full")
    assert path.read_bytes() == OLD
    assert _leftovers(tmp_path, path) == []


@pytest.mark.parametrize(
    ("name", "module", "write"),
    [
        ("expr.csv", _table, write_table),
        ("expr.tsv.gz", _table, write_table),
        ("expr.gct", _gct, write_gct),
    ],
)
def test_io_writer_interrupted_in_process(tmp_path, monkeypatch, name, module, write):
    path = tmp_path / name
    path.write_bytes(OLD)
    data = _expression(n_samples=40, n_genes=40)  # write_table formats a row per sample, write_gct one per gene
    # Fails on row 30 of 40, after enough rows that a plain open() would have left a truncated table behind.
    monkeypatch.setattr(module, "_format_values", _fail_after(module._format_values, 30))
    with pytest.raises(RuntimeError, match="interrupted mid-write"):
        write(data, path)
    assert path.read_bytes() == OLD
    assert _leftovers(tmp_path, path) == []
    monkeypatch.undo()
    write(data, path)
    assert _leftovers(tmp_path, path) == []
    if module is _table:
        np.testing.assert_allclose(read_table(path).X, data.X, rtol=1e-6)


def test_write_table_sample_table_interrupted(tmp_path, monkeypatch):
    path, table = tmp_path / "expr.csv", tmp_path / "samples.csv"
    table.write_bytes(OLD)
    data = _expression()
    data.metadata["batch"] = np.array(["a", "b"] * 20, dtype=object)
    monkeypatch.setattr(_table, "_format_cell", _fail_after(_table._format_cell, 10))
    with pytest.raises(RuntimeError, match="interrupted mid-write"):
        write_table(data, path, sample_table=table)
    assert table.read_bytes() == OLD
    assert sorted(os.listdir(tmp_path)) == ["expr.csv", "samples.csv"]


def test_save_model_interrupted_keeps_previous_model(tmp_path, monkeypatch):
    X = np.random.default_rng(0).normal(size=(30, 5)).astype(np.float32)
    model = MaskedAutoencoder(n_components=2, hidden_dims=(8,), max_epochs=1, random_state=0, device="cpu").fit(X)
    path = tmp_path / "model.skssl"
    save_model(model, path)
    before = path.read_bytes()
    writestr = zipfile.ZipFile.writestr

    def failing_writestr(archive, name, data, *args, **kwargs):
        if name.endswith(".pt"):  # after the description is written: a half-written archive
            raise OSError("disk full")
        return writestr(archive, name, data, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", failing_writestr)
    with pytest.raises(OSError, match="disk full"):
        save_model(model, path, metadata={"new": True})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert _leftovers(tmp_path, path) == []
    np.testing.assert_array_equal(load_model(path).transform(X), model.transform(X))


# The child writes a table big enough that writing takes a while; the parent kills it with SIGKILL (no cleanup,
# no flush, no finally) and checks the target. With the "pause" argument the child stops half-way through the
# rows, so the kill certainly lands mid-write; without it the kill lands wherever the write has got to.
_CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from skssl.io import ExpressionData, write_table
    from skssl.io import _table

    path, pause = sys.argv[1], sys.argv[2] == "pause"
    X = np.arange(400 * 300, dtype=np.float32).reshape(400, 300) / 7
    data = ExpressionData(X, [f"g{j}" for j in range(300)], [f"s{i}" for i in range(400)])
    if pause:
        format_values, rows = _table._format_values, []

        def slow(values):
            rows.append(None)
            if len(rows) == 200:
                print("midway", flush=True)
                time.sleep(120)
            return format_values(values)

        _table._format_values = slow
    else:
        print("midway", flush=True)
    write_table(data, path)
    print("done", flush=True)
    """
)


def _new_table_bytes(tmp_path):
    X = np.arange(400 * 300, dtype=np.float32).reshape(400, 300) / 7
    data = ExpressionData(X, [f"g{j}" for j in range(300)], [f"s{i}" for i in range(400)])
    reference = tmp_path / "reference" / "expr.csv"
    reference.parent.mkdir()
    write_table(data, reference)
    return reference.read_bytes()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX-only")
@pytest.mark.parametrize("pause", [True, False], ids=["killed-mid-write", "killed-anytime"])
def test_write_table_killed_leaves_old_or_new_file(tmp_path, pause):
    directory = tmp_path / "out"
    directory.mkdir()
    path = directory / "expr.csv"
    path.write_bytes(OLD)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path), "pause" if pause else "go"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "midway", child.stderr.read()
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=60)
        child.stdout.close()
        child.stderr.close()
    content = path.read_bytes()
    if pause:
        assert content == OLD
    else:
        assert content in (OLD, _new_table_bytes(tmp_path))
    # A killed process cannot clean up: at most its one hidden temporary file is left, never a partial target.
    assert all(name.startswith(".expr.csv.") for name in _leftovers(directory, path))
