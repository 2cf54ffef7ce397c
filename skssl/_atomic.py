"""Atomic file writes: a reader, or a crash mid-write, sees the old file or the new one, never a part of one.

Both helpers write to a temporary file in the target's directory (so the final rename stays on one filesystem),
flush and fsync it, then :func:`os.replace` it onto the target, which POSIX and Windows perform atomically. If
anything raises before that, the temporary file is removed and the target is left as it was. A process killed
outright (SIGKILL, power loss) can leave a hidden ``.<name>.<random>.tmp`` file behind, but never a truncated
target.
"""

# License: BSD-3-Clause

import contextlib
import io
import os
import stat
import tempfile

__all__ = ["atomic_path", "atomic_write"]


def _file_mode(path):
    # mkstemp creates files readable by their owner only; what we write (tables, models) is meant to be shared,
    # so give the file the permissions open() would: those of the file it replaces, else 0o666 minus the umask.
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        pass
    # The umask can only be read by setting it, so set it back at once.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_directory(directory):
    # Makes the rename itself durable on POSIX; directories cannot be opened on Windows, where this is a no-op.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path, suffix=".tmp"):
    """Yield a temporary path next to `path`; on a clean exit, move it onto `path` atomically.

    For libraries that want a file name rather than a file object (``AnnData.write_h5ad``, ``h5py.File``). The
    caller writes the temporary path (and closes it) inside the ``with`` block; the file is then fsynced and
    renamed onto `path`. On an exception the temporary file is removed and `path` is untouched.

    Parameters
    ----------
    path : str or path-like
        The file to create or replace.

    suffix : str, default=".tmp"
        Suffix of the temporary file, for libraries that check the extension (e.g. ``".h5ad"``).

    Yields
    ------
    tmp : str
        Path of the temporary file (already created, empty).

    Examples
    --------
    >>> import os, tempfile
    >>> from skssl._atomic import atomic_path
    >>> path = os.path.join(tempfile.mkdtemp(), "out.txt")
    >>> with atomic_path(path) as tmp:
    ...     with open(tmp, "w") as f:
    ...         _ = f.write("done")
    >>> open(path).read()
    'done'
    """
    path = os.fspath(path)
    if os.path.islink(path):
        # Write through the link, as open() does, instead of replacing the link with a regular file.
        path = os.path.realpath(path)
    directory = os.path.dirname(os.path.abspath(path))
    handle, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=suffix, dir=directory)
    os.close(handle)
    try:
        yield tmp
        with open(tmp, "rb+") as file:
            os.fsync(file.fileno())
        os.chmod(tmp, _file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    _fsync_directory(directory)


@contextlib.contextmanager
def atomic_write(path, mode="w", *, encoding="utf-8", newline=None):
    """Open a temporary file next to `path` for writing; on a clean exit, move it onto `path` atomically.

    Parameters
    ----------
    path : str or path-like
        The file to create or replace.

    mode : {"w", "wb"}, default="w"
        Text or binary.

    encoding : str, default="utf-8"
        Text mode only.

    newline : str, default=None
        Text mode only, as for :func:`open`.

    Yields
    ------
    file : file object
        The open temporary file. Everything written to it replaces `path` when the ``with`` block ends without an
        exception; on an exception `path` keeps its old content (or stays absent) and the temporary file is
        removed.

    Examples
    --------
    >>> import os, tempfile
    >>> from skssl._atomic import atomic_write
    >>> path = os.path.join(tempfile.mkdtemp(), "out.csv")
    >>> with atomic_write(path) as f:
    ...     _ = f.write("a,b\\n1,2\\n")
    >>> open(path).read()
    'a,b\\n1,2\\n'
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}.")
    with atomic_path(path) as tmp, open(tmp, "wb") as raw:
        if mode == "wb":
            yield raw
            raw.flush()
        else:
            text = io.TextIOWrapper(raw, encoding=encoding, newline=newline)
            try:
                yield text
            except BaseException:
                # The content is discarded: detach without letting a flush error hide the original exception.
                with contextlib.suppress(Exception):
                    text.detach()
                raise
            # Detach (which flushes) rather than close: the outer ``with`` closes `raw`.
            text.detach()
