"""Input validation, streaming statistics and batch feeding for the estimators.

Three kinds of input reach the training loop, and none of them is ever densified whole:

* in-memory dense arrays (numpy, pandas),
* scipy.sparse matrices (converted to CSR, densified one batch at a time),
* out-of-core arrays: ``np.memmap`` and HDF5 datasets (read one batch or one chunk at a time).
"""

from __future__ import annotations

import mmap
import numbers
import os
import sys

import numpy as np
import scipy.sparse as sp
import sklearn
import torch
from sklearn.utils.validation import validate_data

from ._compat import check_feature_names, check_n_features

# Rows read at once by the streaming passes (statistics, validation of out-of-core input, transform).
CHUNK_ROWS = 4096


def is_out_of_core(X):
    """Whether ``X`` lives on disk (``np.memmap`` or an HDF5 dataset) and must be read in chunks."""
    if isinstance(X, np.memmap):
        return True
    module = type(X).__module__ or ""
    return module.startswith("h5py") and hasattr(X, "shape") and hasattr(X, "dtype")


def validate_X(estimator, X, *, reset, dense_dtype=np.float32, allow_nan=False):
    """Validate ``X`` the scikit-learn way and return an array-like the batch readers understand.

    Sets ``n_features_in_`` / ``feature_names_in_`` when ``reset``; checks them otherwise. Finiteness of
    out-of-core input is checked later, chunk by chunk, by :func:`column_statistics` or :func:`iter_batches`.
    ``allow_nan=True`` lets NaN through (infinities are still rejected): multi-view estimators read a block of NaN
    as a missing view.
    """
    if is_out_of_core(X):
        if len(X.shape) != 2:
            raise ValueError(f"Expected a 2D array, got an array of shape {X.shape}.")
        n_samples, n_features = X.shape
        if n_samples < 1 or n_features < 1:
            raise ValueError(
                f"Found array with {n_samples} sample(s) and {n_features} feature(s) while a minimum of 1 is required."
            )
        if not np.issubdtype(np.dtype(X.dtype), np.number):
            raise ValueError(f"Expected numeric data, got dtype {X.dtype}.")
        check_feature_names(estimator, X, reset=reset)
        check_n_features(estimator, X, reset=reset)
        return X
    if not reset:
        check_column_order(estimator, X)
    try:
        return validate_data(
            estimator,
            X,
            reset=reset,
            accept_sparse="csr",
            dtype=dense_dtype,
            ensure_all_finite="allow-nan" if allow_nan else True,
        )
    except ValueError as exc:
        # Replace scikit-learn's generic texts (which suggest estimators that accept NaN) by ones that name the
        # offending values and say what to do; computed only on failure, so valid input pays nothing.
        message = _non_numeric_message(X) or _non_finite_message(X, allow_nan=allow_nan, dtype=dense_dtype)
        if message is None:
            raise
        raise ValueError(message) from exc


_NON_FINITE_FIX = "impute them or drop those genes/samples before fitting; skssl's embedders need finite values"


def check_column_order(estimator, X):
    """Raise a clear error when a DataFrame has the fitted gene names in another order (or a different gene set).

    scikit-learn rejects reordered columns with a generic feature-names error; this one says how to fix it.
    """
    fitted = getattr(estimator, "feature_names_in_", None)
    columns = getattr(X, "columns", None)
    if fitted is None or columns is None or is_out_of_core(X):
        return
    names = np.asarray([str(c) for c in columns], dtype=object)
    if len(names) == len(fitted) and np.array_equal(names, fitted):
        return
    if len(names) == len(fitted) and set(names) == set(fitted):
        first = int(np.flatnonzero(names != fitted)[0])
        raise ValueError(
            "The feature names should match those that were passed during fit: X has the same "
            f"{len(names)} gene names but in a different order (column {first} is {names[first]!r}, fit had "
            f"{fitted[first]!r}). Reorder the columns with X[est.feature_names_in_], or put "
            "skssl.GeneAligner() first in the pipeline to align (and fill missing) genes by name."
        )
    missing = [name for name in fitted if name not in set(names)]
    if missing and len(set(names) & set(fitted)) > 0:
        extra = [name for name in names if name not in set(fitted)]
        raise ValueError(
            f"The feature names should match those that were passed during fit: X lacks {len(missing)} of the "
            f"fitted genes (e.g. {_preview(missing)}) and has {len(extra)} unseen one(s)"
            f"{' (e.g. ' + _preview(extra) + ')' if extra else ''}. Put skssl.GeneAligner() first in the "
            "pipeline to align genes by name (missing genes are filled), or select X[est.feature_names_in_]."
        )


def _preview(names, limit=3):
    shown = ", ".join(repr(str(n)) for n in names[:limit])
    return shown + (", ..." if len(names) > limit else "")


def _non_numeric_message(X):
    """The message for a DataFrame with non-numeric (e.g. string annotation) columns, or None."""
    dtypes = getattr(X, "dtypes", None)
    if dtypes is None or not hasattr(X, "columns") or not (type(X).__module__ or "").startswith("pandas"):
        return None
    import pandas as pd

    bad = []
    for column, dtype in zip(X.columns, dtypes):
        if pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
            continue
        try:
            pd.to_numeric(X[column])
        except (TypeError, ValueError):
            bad.append(column)
    if not bad:
        return None
    first = X[bad[0]]
    example = next((v for v in first if not isinstance(v, numbers.Number) and v is not None), first.iloc[0])
    return (
        f"X has {len(bad)} non-numeric column(s): {_preview(bad)} (e.g. value {example!r} in column "
        f"{str(bad[0])!r}). skssl's embedders take numeric expression values only: drop these columns or encode "
        "them as numbers; sample annotations (tissue, batch, ...) belong in y or a separate table."
    )


def _non_finite_message(X, *, allow_nan=False, dtype=np.float32):
    """The message for NaN or infinite values of in-memory ``X`` (numpy, pandas or sparse), or None."""
    names = getattr(X, "columns", None)
    if np.iscomplexobj(X.data if sp.issparse(X) else X):
        return None  # not a NaN question: check_array's own error names complex data (casting it here would warn)
    try:
        if sp.issparse(X):
            coo = sp.coo_matrix(X)
            values = np.asarray(coo.data, dtype=np.float64)
            rows_of, cols_of = coo.row, coo.col
        else:
            if hasattr(X, "to_numpy"):
                try:
                    values = X.to_numpy(dtype=np.float64, na_value=np.nan)
                except TypeError:
                    values = X.to_numpy(dtype=np.float64)
            else:
                values = np.asarray(X, dtype=np.float64)
            if values.ndim != 2:
                return None
            rows_of = cols_of = None
    except (TypeError, ValueError):
        return None
    return non_finite_message(values, names=names, allow_nan=allow_nan, dtype=dtype, rows=rows_of, cols=cols_of)


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


_INTERNAL_DIRS = tuple(os.path.dirname(os.path.abspath(path)) + os.sep for path in (__file__, sklearn.__file__))


def user_stacklevel():
    """The ``stacklevel`` that makes a warning raised by the calling function point at the first frame outside
    skssl and scikit-learn (the user's ``fit`` call), whatever the depth of the internal calls."""
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL_DIRS):
        frame, level = frame.f_back, level + 1
    return level


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


def column_statistics(X, *, chunk_rows=CHUNK_ROWS, allow_nan=False):
    """Per-feature mean and standard deviation, min value and per-row totals, in one streaming pass.

    Accumulates in float64 so that millions of rows do not lose precision. Raises ``ValueError`` on non-finite
    values (out-of-core input has not been checked before). With ``allow_nan=True`` NaN entries are skipped (still
    rejecting infinities): the mean and standard deviation of a feature are over its present values (0 and 0 for a
    feature with none), ``min`` is over present values and ``row_sums`` sum each row's present values; the result
    then also holds ``count``, the number of present values of each feature.

    Returns
    -------
    dict with ``mean``, ``std`` (float64 arrays of n_features), ``min`` (float) and ``row_sums`` (float64 array of
    n_samples); and ``count`` (int64 array of n_features) when ``allow_nan``.
    """
    if allow_nan:
        return _nan_column_statistics(X, chunk_rows)
    n_samples, n_features = X.shape
    total = np.zeros(n_features)
    total_sq = np.zeros(n_features)
    row_sums = np.empty(n_samples)
    minimum = np.inf
    # Shift by the first row for a numerically stable variance (avoids E[x^2] - E[x]^2 cancellation).
    shift = read_rows(X, slice(0, 1)).astype(np.float64)[0]
    for rows, block in iter_batches(X, chunk_rows):  # iter_batches keeps a memmap's resident pages bounded
        check_finite_block(block, X, row_offset=rows.start)
        row_sums[rows] = block.sum(axis=1, dtype=np.float64)
        minimum = min(minimum, float(block.min()))
        centred = block - shift
        total += centred.sum(axis=0, dtype=np.float64)
        total_sq += np.square(centred, dtype=np.float64).sum(axis=0)
    mean_shifted = total / n_samples
    var = np.maximum(total_sq / n_samples - mean_shifted**2, 0.0)
    return {"mean": mean_shifted + shift, "std": np.sqrt(var), "min": minimum, "row_sums": row_sums}


def _nan_column_statistics(X, chunk_rows):
    """:func:`column_statistics` over the present (non-NaN) values only."""
    n_samples, n_features = X.shape
    total = np.zeros(n_features)
    total_sq = np.zeros(n_features)
    count = np.zeros(n_features, dtype=np.int64)
    row_sums = np.empty(n_samples)
    minimum = np.inf
    shift = None
    for rows, block in iter_batches(X, chunk_rows):
        check_finite_block(block, X, allow_nan=True, row_offset=rows.start)
        present = ~np.isnan(block)
        if shift is None:
            # Shift by the first chunk's mean of each feature (0 where it has no value) for a stable variance.
            with np.errstate(invalid="ignore", divide="ignore"):
                shift = np.where(present, block, 0.0).sum(axis=0, dtype=np.float64) / present.sum(axis=0)
            shift = np.nan_to_num(shift, nan=0.0)
        centred = np.where(present, block - shift, 0.0)
        row_sums[rows] = np.where(present, block, 0.0).sum(axis=1, dtype=np.float64)
        if present.any():
            minimum = min(minimum, float(block[present].min()))
        count += present.sum(axis=0)
        total += centred.sum(axis=0, dtype=np.float64)
        total_sq += np.square(centred, dtype=np.float64).sum(axis=0)
    seen = np.maximum(count, 1)
    mean_shifted = total / seen
    var = np.maximum(total_sq / seen - mean_shifted**2, 0.0)
    mean = np.where(count > 0, mean_shifted + shift, 0.0)
    std = np.where(count > 0, np.sqrt(var), 0.0)
    return {"mean": mean, "std": std, "min": minimum, "row_sums": row_sums, "count": count}


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


def is_integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def streaming_mean_covariance(blocks):
    """Mean and (population) covariance of the rows of ``blocks`` (2-D arrays of equal width), in float64.

    Merges per-block means and co-moment matrices (Chan et al.), so only one block and a (width, width) matrix
    are held at a time.
    """
    count, mean, comoment = 0, None, None
    for z in blocks:
        z = np.asarray(z, dtype=np.float64)
        if mean is None:
            mean, comoment = np.zeros(z.shape[1]), np.zeros((z.shape[1], z.shape[1]))
        n, batch_mean = len(z), z.mean(axis=0)
        delta, total = batch_mean - mean, count + n
        centred = z - batch_mean
        mean += delta * (n / total)
        comoment += centred.T @ centred + np.outer(delta, delta) * (count * n / total)
        count = total
    return mean, comoment / count


def leading_variance_scaling(covariance):
    """``c * I`` with ``c = lambda_1 ** -0.25``, ``lambda_1`` the largest eigenvalue of ``covariance`` (``c = 1``
    when ``lambda_1 <= 1``).

    Applied to standardised components (``z @ W``), one factor shrinks them all alike, so that the leading principal
    variance becomes ``sqrt(lambda_1)``: a logistic regression with its default L2 penalty and iteration budget then
    converges on strongly correlated components, while the geometry of the embedding (which directions dominate,
    which a classifier trained on a few labels relies on) is kept. A per-direction whitening would equalise the
    directions instead and lose most of that (docs/benchmarks.md, "The embedders' output scale").

    >>> import numpy as np
    >>> leading_variance_scaling(np.array([[1.0, 0.8], [0.8, 1.0]]))  # lambda_1 = 1.8
    array([[0.86334002, 0.        ],
           [0.        , 0.86334002]])
    >>> leading_variance_scaling(np.diag([1.0, 0.5, 0.0]))
    array([[1., 0., 0.],
           [0., 1., 0.],
           [0., 0., 1.]])
    """
    covariance = np.asarray(covariance, dtype=np.float64)
    largest = np.linalg.eigvalsh((covariance + covariance.T) / 2)[-1] if covariance.size else 0.0
    return np.eye(len(covariance)) * max(largest, 1.0) ** -0.25


def check_finite_output(values, rows):
    """Refuse the overflow of input far outside the fit data's scale instead of returning inf/NaN silently."""
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        first = np.arange(rows.start, rows.stop)[bad][0] if isinstance(rows, slice) else np.asarray(rows)[bad][0]
        raise ValueError(
            f"The network's output overflowed (inf/NaN) for {int(bad.sum())} row(s), the first being row {first}: "
            "their values are far outside the range of the data the model was fitted on. Give the input the same "
            "scale and preprocessing as at fit (e.g. log-expression, not raw counts)."
        )
