"""Reading a matrix in batches and putting them on a device.

Three kinds of input reach the training loop, and none of them is ever densified whole:

* in-memory dense arrays (numpy, pandas),
* scipy.sparse matrices (converted to CSR, densified one batch at a time),
* out-of-core arrays: ``np.memmap`` and HDF5 datasets (read one batch or one chunk at a time).

This module owns how rows are read (:func:`read_rows`, the one function through which every block of rows is read
from the matrix), the batches over them (:func:`iter_batches`, :class:`BatchReader`), the bound on a memmap's resident
pages (:class:`PageReleaser`), the copy to a device and the ``device`` parameter. A block read can be checked for
finiteness on the way (:func:`check_finite_block`); the message naming the first NaN or infinite value
(:func:`non_finite_message`) lives here so that this module imports no other part of skssl: it is the leaf that
:mod:`skssl._statistics`, :mod:`skssl._input_checks` and :mod:`skssl._validation` build on.
"""

from __future__ import annotations

import mmap

import numpy as np
import scipy.sparse as sp
import torch

# Rows read at once by the streaming passes (statistics, validation of out-of-core input, transform).
CHUNK_ROWS = 4096


def is_out_of_core(X):
    """Whether ``X`` lives on disk (``np.memmap`` or an HDF5 dataset) and must be read in chunks."""
    if isinstance(X, np.memmap):
        return True
    module = type(X).__module__ or ""
    return module.startswith("h5py") and hasattr(X, "shape") and hasattr(X, "dtype")


def n_rows(X):
    return X.shape[0]


def n_features_of(X):
    return X.shape[1]


def read_rows(X, rows):
    """Dense float32 numpy block of the given (sorted) row indices or slice of ``X``."""
    if isinstance(rows, slice):
        block = X[rows]
    elif is_out_of_core(X) and not isinstance(X, np.memmap):
        block = X[np.asarray(rows)]  # h5py wants increasing indices, the callers sort them
    else:
        block = X[rows]
    if sp.issparse(block):
        block = block.toarray()
    return np.ascontiguousarray(block, dtype=np.float32)


_NON_FINITE_FIX = "impute them or drop those genes/samples before fitting; skssl's embedders need finite values"


def non_finite_message(
    values, *, names=None, allow_nan=False, dtype=np.float32, rows=None, cols=None, row_offset=0, where=""
):
    """Describe the NaN / infinite values of ``values`` (a dense block, or the ``data`` of a sparse matrix with
    ``rows`` / ``cols``), or return None when there are none. ``row_offset`` shifts reported row numbers."""
    nan = np.zeros(values.shape, dtype=bool) if allow_nan else np.isnan(values)
    big = np.isinf(values)
    if dtype is not None and np.dtype(dtype) == np.float32:
        with np.errstate(invalid="ignore"):
            big |= np.abs(values) > np.finfo(np.float32).max  # finite in float64, infinite once read as float32
    bad = nan | big
    if not bad.any():
        return None
    with np.errstate(invalid="ignore"):
        overflow = big & np.isfinite(values)
    infinity = "infinity (or values too large for float32)" if overflow.any() else "infinity"
    what = " and ".join(k for k, m in (("NaN", nan), (infinity, big)) if m.any())
    if rows is None:
        row, col = (int(i) for i in np.argwhere(bad)[0])
    else:
        first = int(np.flatnonzero(bad)[0])
        row, col = int(rows[first]), int(cols[first])
    column = f"column {str(names[col])!r}" if names is not None else f"column {col}"
    return (
        f"X contains {what} in {int(bad.sum())} value(s){where} (first in row {row + row_offset}, {column}): "
        f"{_NON_FINITE_FIX}."
        + (" (NaN marks a missing view in a multi-view VAE; infinities are never accepted.)" if allow_nan else "")
    )


def check_finite_block(block, X, allow_nan=False, row_offset=None):
    """Raise a ValueError naming the first NaN / infinite value of ``block`` (rows ``row_offset`` on of ``X``)."""
    if allow_nan:
        if not np.isinf(block).any():
            return
    elif np.isfinite(block).all():
        return
    where = f" of rows {row_offset}-{row_offset + len(block) - 1}" if row_offset is not None else " of a batch"
    message = non_finite_message(block, allow_nan=allow_nan, dtype=None, row_offset=row_offset or 0, where=where)
    raise ValueError(f"{message} (input of shape {X.shape})")


def iter_batches(X, batch_size, *, indices=None, check_finite=False, allow_nan=False):
    """Yield ``(rows, dense float32 block)`` over ``indices`` (default: all rows, in order) in batches.

    ``check_finite`` rejects non-finite values (only infinities when ``allow_nan``).
    """
    pager = PageReleaser(X)
    if indices is None:
        for start in range(0, n_rows(X), batch_size):
            stop = min(start + batch_size, n_rows(X))
            block = read_rows(X, slice(start, stop))
            if check_finite:
                check_finite_block(block, X, allow_nan=allow_nan, row_offset=start)
            pager.tick(block.nbytes)
            yield slice(start, stop), block
        return
    # A randomly chosen row maps far more than its own bytes: fault-around and large page-cache folios map up to
    # about 1 MiB around each access (measured on Linux 6.x), so a batch of random rows is released at once.
    mapped_per_row = max(PageReleaser.MAPPED_PER_RANDOM_ROW, 4 * n_features_of(X))
    for start in range(0, len(indices), batch_size):
        # Sorted rows: sequential reads for memmaps and the increasing indices h5py requires.
        rows = np.sort(indices[start : start + batch_size])
        block = read_rows(X, rows)
        pager.tick(len(rows) * mapped_per_row)
        yield rows, block


class PageReleaser:
    """Keeps the resident memory of a pass over an ``np.memmap`` bounded.

    Pages of a memory-mapped file that a process has read count towards its resident set until the kernel needs
    them back; a pass over an 8 GB file would look like 8 GB of RSS. Every ``every_bytes`` read, tell the kernel
    the pages can go (they stay in the page cache, so re-reading is cheap).
    """

    MAPPED_PER_RANDOM_ROW = 2**20

    def __init__(self, X, every_bytes=256 * 2**20):
        self._mmap = getattr(X, "_mmap", None) if isinstance(X, np.memmap) else None
        self._every = every_bytes
        self._read = 0

    def tick(self, n_bytes):
        if self._mmap is None or not hasattr(self._mmap, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
            return
        self._read += n_bytes
        if self._read >= self._every:
            self._read = 0
            self._mmap.madvise(mmap.MADV_DONTNEED)


class BatchReader:
    """Hands the training loop batches of rows as float32 tensors on ``device``.

    On CUDA, an in-memory dense matrix that fits comfortably in free GPU memory is copied to the GPU once and
    batches are gathered there; otherwise each batch is read on the CPU (densified if sparse, paged in if on
    disk) and copied through pinned memory without blocking.
    """

    def __init__(self, X, device, max_gpu_fraction=0.5):
        self.X = X
        self.device = device
        self.resident = None
        if device.type == "cuda" and isinstance(X, np.ndarray) and not is_out_of_core(X):
            free, _ = torch.cuda.mem_get_info(device)
            if X.nbytes < max_gpu_fraction * free:
                self.resident = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).to(device)

    def batches(self, batch_size, indices):
        """Yield ``(rows, tensor)`` over ``indices`` in batches (rows sorted within a batch)."""
        if self.resident is not None:
            index = torch.as_tensor(indices, device=self.device)
            for start in range(0, len(indices), batch_size):
                rows = torch.sort(index[start : start + batch_size]).values
                yield rows, self.resident.index_select(0, rows)
            return
        for rows, block in iter_batches(self.X, batch_size, indices=indices):
            yield rows, to_device(block, self.device, non_blocking=self.device.type == "cuda")


def to_device(block, device, non_blocking=False):
    """A numpy block as a tensor on ``device`` (through pinned memory when ``non_blocking``)."""
    if not block.flags.writeable:  # slices of read-only memmaps: torch wants writable memory
        block = block.copy()
    tensor = torch.from_numpy(block)
    if device.type != "cuda":
        return tensor
    if non_blocking:
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=non_blocking)


def resolve_device(device):
    """Turn the ``device`` parameter into a ``torch.device``, failing clearly when CUDA is asked for but absent."""
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"device={device!r} is not a valid device; use 'auto', 'cpu', 'cuda' or 'cuda:N'.") from exc
    if resolved.type == "cpu":
        return resolved
    if resolved.type != "cuda":
        raise ValueError(f"device={device!r} is not supported; use 'auto', 'cpu', 'cuda' or 'cuda:N'.")
    if not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but no CUDA GPU is available to torch on this machine; "
            "use device='cpu' or device='auto'."
        )
    if resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ValueError(
            f"device={device!r} was requested but only {torch.cuda.device_count()} CUDA device(s) are available."
        )
    return resolved
