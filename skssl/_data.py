"""Input validation, streaming statistics and batch feeding for the estimators.

Three kinds of input reach the training loop, and none of them is ever densified whole:

* in-memory dense arrays (numpy, pandas),
* scipy.sparse matrices (converted to CSR, densified one batch at a time),
* out-of-core arrays: ``np.memmap`` and HDF5 datasets (read one batch or one chunk at a time).
"""

from __future__ import annotations

import contextlib
import contextvars
import mmap
import numbers
import os
import re
import sys
import warnings

import joblib
import numpy as np
import scipy.sparse as sp
import sklearn
import torch
from sklearn.utils.validation import validate_data

from ._compat import check_feature_names, check_n_features
from .exceptions import DataOrientationWarning, DataScaleWarning

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

    When ``reset`` (a fit), ``X`` is also checked for what a wrong input file looks like, before any training:
    a transposed matrix, constant data, and values on another scale than the estimator models (see
    :func:`check_fit_values`). A fit nested in another estimator's (inside :func:`input_checks_by`) skips them.
    Duplicated column names are refused at every call.
    """
    check_unique_names(X)
    checking = reset and _checks_owner.get() in (None, estimator)
    if checking:
        check_orientation_by_names(X)
    X = _validated(estimator, X, reset=reset, dense_dtype=dense_dtype, allow_nan=allow_nan)
    if checking and not allow_nan:  # NaN blocks are missing views, whose likelihoods check their own values
        check_fit_values(estimator, X)
    return X


def _validated(estimator, X, *, reset, dense_dtype, allow_nan):
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


# joblib: a Pipeline calls its steps' fit_transform through joblib.Memory.
_INTERNAL_DIRS = tuple(
    os.path.dirname(os.path.abspath(path)) + os.sep for path in (__file__, sklearn.__file__, joblib.__file__)
)


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


# ---------------------------------------------------------------------------------------------------------------
# Checks of a fit's input for what a wrong file or a wrong preprocessing step looks like (issue 26). Each one runs
# before any training and reads at most a sample of rows, so valid input costs little and its results are unchanged.
# ---------------------------------------------------------------------------------------------------------------

# The estimator whose fit checks its X: an outer fit (SSLClassifier) checks once, the fit nested in it (its
# embedder's pre-training on the same rows) does not repeat the same warnings.
_checks_owner = contextvars.ContextVar("skssl_input_checks_owner", default=None)


@contextlib.contextmanager
def input_checks_by(estimator):
    """Within this block only ``estimator``'s own ``validate_X(reset=True)`` runs the fit-input checks."""
    token = _checks_owner.set(estimator)
    try:
        yield
    finally:
        _checks_owner.reset(token)


# Sample ids (GEO GSM, SRA/ENA/DDBJ runs, samples and experiments, BioSample, TCGA barcodes, Affymetrix CEL files):
# none of them is ever the name of a gene.
_SAMPLE_ID = re.compile(
    r"^(GSM\d+|[SED]RR\d+|[SED]RS\d+|[SED]RX\d+|SAM[NED][A-Z]?\d+|TCGA-[A-Z0-9]{2}-[A-Z0-9]{4}.*)$|\.CEL(\.GZ)?$",
    re.IGNORECASE,
)
# Gene and probe ids that no sample id looks like: Ensembl genes and transcripts, RefSeq transcripts, Affymetrix
# and Illumina probes. (Gene symbols are not recognisable as such.)
_GENE_ID = re.compile(
    r"^(ENS[A-Z]*[GT]\d{6,}(\.\d+)?|[NX][MR]_\d+(\.\d+)?|\d+(_[a-z]+)*_at|AFFX-\S+|ILMN_\d+)$", re.IGNORECASE
)
_NAMES_READ = 500  # names looked at (evenly spaced) to tell what an index holds


def _is_pandas_frame(X):
    return hasattr(X, "columns") and hasattr(X, "index") and (type(X).__module__ or "").startswith("pandas")


def _names_matching(names, pattern):
    """The names (of an evenly spaced sample) that match ``pattern`` when at least half of them and 2 do; else []."""
    names = [str(name) for name in names]
    if len(names) > _NAMES_READ:
        names = [names[i] for i in np.linspace(0, len(names) - 1, _NAMES_READ).astype(np.int64)]
    hits = [name for name in names if pattern.search(name)]
    return hits if len(hits) >= 2 and 2 * len(hits) >= len(names) else []


def check_unique_names(X):
    """Refuse a DataFrame whose column (gene) names repeat, saying how to combine or rename them."""
    if not _is_pandas_frame(X) or not X.columns.has_duplicates:
        return
    counts = X.columns.value_counts()
    repeated = counts[counts > 1]
    examples = ", ".join(f"{str(name)!r} {int(n)} times" for name, n in repeated.head(3).items())
    raise ValueError(
        f"X has {len(repeated)} gene name(s) that name more than one column (e.g. {examples}; {X.shape[1]} columns "
        "in all): skssl's estimators need one column per gene. If these are probes or transcripts of one gene, "
        "collapse them: put skssl.GeneAligner(duplicates='sum') first for counts (before LogCPM), or "
        "duplicates='mean' for log-expression (pandas: X.T.groupby(level=0).mean().T). If they are distinct "
        "features, make the names unique (e.g. append the probe id)."
    )


def check_orientation_by_names(X):
    """Refuse a DataFrame whose column names look like sample ids (or whose row names look like gene ids):
    a genes x samples table read as samples x genes."""
    if not _is_pandas_frame(X) or len(getattr(X, "shape", ())) != 2:
        return
    n_rows, n_cols = X.shape
    sample_columns = _names_matching(X.columns, _SAMPLE_ID)
    if sample_columns and not _names_matching(X.index, _SAMPLE_ID):  # rows and columns both samples: a kernel
        evidence = f"its column names look like sample ids ({_preview(sample_columns)})"
    else:
        gene_rows = _names_matching(X.index, _GENE_ID)
        if not gene_rows or _names_matching(X.columns, _GENE_ID):
            return
        evidence = f"its row names look like gene or probe ids ({_preview(gene_rows)})"
    raise ValueError(
        f"X looks transposed (genes in rows, samples in columns): it has {n_rows} rows and {n_cols} columns, and "
        f"{evidence}. skssl's estimators take samples in rows and genes in columns: pass X.T (a genes x samples "
        "file read with pd.read_csv(path, index_col=0) needs .T)."
    )


# The sample of rows the value checks read: at most this many values (and 1 000 rows, 64 from an HDF5 dataset,
# whose scattered rows each cost a chunk), at least 8 rows.
_SAMPLE_VALUES = 2**22
_SAMPLE_ROWS = 1000
_SAMPLE_ROWS_HDF5 = 64


def _row_sample(X, max_rows=_SAMPLE_ROWS):
    """Evenly spaced rows of the validated ``X`` as a dense float32 block (``X`` itself when it is small and dense)."""
    n_rows, n_cols = X.shape
    k = min(n_rows, max_rows, max(8, _SAMPLE_VALUES // max(n_cols, 1)))
    if is_out_of_core(X) and not isinstance(X, np.memmap):
        k = min(k, _SAMPLE_ROWS_HDF5)
    if k == n_rows and isinstance(X, np.ndarray) and not is_out_of_core(X):
        return X
    rows = np.unique(np.linspace(0, n_rows - 1, k).round().astype(np.int64))
    return read_rows(X, rows)


def _varying_columns(block):
    """Mask of the columns of ``block`` that take more than one value (however close: data scaled by 1e-30 vary)."""
    return block.max(axis=0) > block.min(axis=0)


def _all_rows_varying(X):
    """:func:`_varying_columns` over every row of ``X`` (one streaming pass; run only to confirm a failure)."""
    low = high = None
    for _, block in iter_batches(X, CHUNK_ROWS):
        block_low, block_high = block.min(axis=0), block.max(axis=0)
        low = block_low if low is None else np.minimum(low, block_low)
        high = block_high if high is None else np.maximum(high, block_high)
    return _varying_columns(np.vstack([low, high]))


# "All but a few" genes constant: at most this many vary, and under 5 % of the genes.
_FEW_VARYING = 5


def _check_not_constant(estimator, X, block):
    n_rows, n_cols = X.shape
    varying = _varying_columns(block)
    n_varying = int(varying.sum())
    if n_varying > _FEW_VARYING or (n_varying and (n_cols < 20 or n_varying >= 0.05 * n_cols)):
        return
    if len(block) < n_rows:  # a sample of the rows: confirm on all of them before refusing
        varying = _all_rows_varying(X)
        n_varying = int(varying.sum())
        if n_varying > _FEW_VARYING or (n_varying and (n_cols < 20 or n_varying >= 0.05 * n_cols)):
            return
    if n_varying == 0:
        raise ValueError(
            f"X is constant: each of its {n_cols} gene(s) has a single value across all {n_rows} samples (e.g. "
            f"{float(block[0, 0]):g}), so there is nothing to learn (the embedding would be all zeros and a "
            "classifier would predict one class). Check that X is the expression matrix you meant: not a table of "
            "zeros or placeholders, the wrong columns of a file, or the output of a normalisation that failed."
        )
    names = getattr(estimator, "feature_names_in_", None)
    which = np.flatnonzero(varying)
    shown = _preview([names[i] for i in which] if names is not None else [f"column {i}" for i in which])
    raise ValueError(
        f"Only {n_varying} of the {n_cols} genes of X vary across its {n_rows} samples ({shown}); every other gene "
        f"is constant, so the model would rest on those {n_varying} alone. Check that X is the expression matrix "
        "you meant (a normalisation or filter that failed?); if those genes are all you want, pass them alone: "
        "X[:, X.std(axis=0) > 0]."
    )


# The median Pearson correlation between columns above which they look like expression profiles (samples) rather
# than genes: 0.50-0.95 between the samples of every shared data set, at most 0.33 between their genes (counts).
_PROFILE_CORRELATION = 0.7
_CORRELATION_COLUMNS = 64


def _check_orientation_by_values(estimator, X, block):
    n_rows, n_cols = X.shape
    columns = np.flatnonzero(_varying_columns(block))
    if len(block) < 20 or len(columns) < 10:
        return  # too few rows or columns for a correlation to say anything
    columns = columns[np.linspace(0, len(columns) - 1, min(len(columns), _CORRELATION_COLUMNS)).astype(np.int64)]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        values = block[:, columns].astype(np.float64)
        values /= np.abs(values).max(axis=0)  # correlation is scale-free; this keeps the products finite
        correlation = np.corrcoef(values, rowvar=False)
    median = float(np.nanmedian(correlation[np.triu_indices(len(columns), 1)]))
    if median >= _PROFILE_CORRELATION:
        warnings.warn(
            f"X may be transposed (genes in rows, samples in columns): its columns correlate as expression profiles "
            f"do (median Pearson r {median:.2f} between {len(columns)} of its {n_cols} columns; between genes it is "
            f"rarely above 0.35). {type(estimator).__name__} takes samples in rows and genes in columns: if its "
            f"{n_rows} rows are genes, pass X.T. If the columns truly are genes this correlated, filter "
            "skssl.exceptions.DataOrientationWarning.",
            DataOrientationWarning,
            stacklevel=user_stacklevel(),
        )


def expected_scale(estimator):
    """``"log"`` when ``estimator`` models log-expression, None when it models something else (counts, 0/1 calls,
    a mix of views) and its values are its own business."""
    if getattr(estimator, "views", None) is not None or getattr(estimator, "likelihood", "gaussian") != "gaussian":
        return None
    resolve = getattr(estimator, "_resolved_embedder", None)  # SSLClassifier, SSLRegressor
    if resolve is not None:
        try:
            return expected_scale(resolve())
        except (AttributeError, TypeError, ValueError):
            return "log"
    return "log"


_SCALE_VALUES = 2**18  # values (evenly strided) whose quantiles describe the scale


def _scale_values(block):
    values = np.ravel(block)
    if values.size > _SCALE_VALUES:
        values = values[:: values.size // _SCALE_VALUES]
    return values.astype(np.float64)


def _whole_numbers(values, maximum):
    # Beyond 2**24 every float32 is a whole number: there it says nothing about counts.
    return maximum <= 2**24 and bool(np.array_equal(values, np.rint(values)))


def counts_like(values):
    """Why the non-negative ``values`` look like counts or unlogged expression (a phrase), or None."""
    values = _scale_values(values)
    if values.size == 0 or not np.isfinite(values).all() or values.min() < 0:
        return None  # negative values: log-ratios or z-scores, never counts
    maximum = float(values.max())
    if maximum >= 20 and _whole_numbers(values, maximum):
        return f"whole numbers up to {maximum:,.0f}"
    positive = values[values > 0]
    if maximum > 100 and positive.size:
        median, high = np.quantile(positive, [0.5, 0.99])
        if high > 10 * median:  # log-expression: the 99th percentile is 1.5-2.5 times the median
            return (
                f"a heavy right tail (maximum {maximum:,.0f}; 99th percentile {high:,.0f}, {high / median:.0f} times "
                f"the median of the positive values, {median:.3g})"
            )
    return None


def check_fit_values(estimator, X):
    """The checks of a fit's validated ``X`` that read its values (a sample of rows): refuse constant data, warn
    when the columns look like samples (:class:`~skssl.exceptions.DataOrientationWarning`) and, for an estimator
    that models log-expression, when the values look like counts or unlogged expression
    (:class:`~skssl.exceptions.DataScaleWarning`)."""
    n_rows, n_cols = X.shape
    if n_rows < 2 or n_cols < 1:
        return  # the fit's own check names too few samples
    block = _row_sample(X)
    if not np.isfinite(block).all():
        return  # out-of-core input: the training pass names the first non-finite value
    _check_not_constant(estimator, X, block)
    _check_orientation_by_values(estimator, X, block)
    if expected_scale(estimator) != "log":
        return
    reason = counts_like(block)
    if reason is not None:
        name = type(estimator).__name__
        warnings.warn(
            f"X looks like raw counts or unlogged expression (counts, CPM, TPM, FPKM): its values are non-negative "
            f"with {reason}, but {name} models log-expression, where a few huge values would dominate. Transform "
            f"X first: skssl.LogCPM() for counts (e.g. make_pipeline(LogCPM(), {name}(), ...)), np.log1p(X) for "
            "FPKM, TPM or normalised counts; VAEEmbedder(likelihood='nb') models raw counts as they are. Filter "
            "skssl.exceptions.DataScaleWarning if the scale is intended.",
            DataScaleWarning,
            stacklevel=user_stacklevel(),
        )


def warn_if_log_scaled(estimator, X):
    """Warn (:class:`~skssl.exceptions.DataScaleWarning`) when the counts given to ``estimator`` (LogCPM) look
    already log-scaled: fractional values, all below 30 (counts are whole numbers; CPM, TPM, FPKM reach the
    thousands). Values all at most 1 are proportions, which a library-size normalisation takes as they are."""
    values = _scale_values(X.data if sp.issparse(X) else _row_sample(X))
    if values.size == 0 or not np.isfinite(values).all():
        return
    maximum = float(values.max())
    if 1 < maximum < 30 and not _whole_numbers(values, maximum):
        warnings.warn(
            f"{type(estimator).__name__} expects counts, but X looks already log-scaled: its values are fractional "
            f"and all below {maximum:.3g} (counts are whole numbers; CPM, TPM and FPKM reach the thousands). A second "
            "log compresses the signal: leave LogCPM out for data already on a log scale (RMA or other log2 "
            "microarray values, log-CPM, log1p(TPM)), or give it the raw counts. Filter "
            "skssl.exceptions.DataScaleWarning if these are counts.",
            DataScaleWarning,
            stacklevel=user_stacklevel(),
        )


def _missing_labels(y):
    """Number of NaN / None / pd.NA entries of a 1-D ``y`` (0 for other shapes)."""
    if hasattr(y, "isna") and getattr(y, "ndim", 1) == 1:
        return int(y.isna().sum())
    values = np.asarray(y) if not isinstance(y, (list, tuple)) else np.asarray(y, dtype=object)
    if values.ndim != 1:
        return 0
    if values.dtype.kind == "f":
        return int(np.isnan(values).sum())
    if values.dtype.kind != "O":
        return 0
    return sum(
        v is None or type(v).__name__ == "NAType" or (isinstance(v, (float, np.floating)) and np.isnan(v))
        for v in values.tolist()
    )


def check_fit_target(estimator, X, y):
    """Check the ``y`` that a Pipeline hands to an embedder's ``fit`` (which ignores it) before any training: a
    length that is not the number of rows of ``X`` is a ValueError, missing labels a warning, since the
    classifier after the embedder will fail on them only once the embedder has trained."""
    if y is None:
        return
    shape = getattr(X, "shape", None)
    try:
        n_samples = shape[0] if shape is not None and len(shape) >= 1 else len(X)
        n_labels = y.shape[0] if getattr(y, "shape", None) else len(y)
    except TypeError:
        return  # scalars: validation of X (or the next step, of y) names them
    name = type(estimator).__name__
    if n_labels != n_samples:
        raise ValueError(
            f"y has {n_labels} labels but X has {n_samples} samples (rows); they must match, one label per sample. "
            f"If X is genes x samples, pass X.T; if y is for a subset of the samples, select the same rows of X. "
            f"({name} ignores y, but the classifier after it in a Pipeline reads it.)"
        )
    missing = _missing_labels(y)
    if missing:
        warnings.warn(
            f"y has {missing} missing label(s) (NaN or None) among its {n_labels}. {name} ignores y, but a "
            "classifier after it in a Pipeline (e.g. LogisticRegression) fails on them ('Input contains NaN'), "
            f"and only once {name} has trained. Drop the unlabeled rows first (keep = pd.notna(y); X[keep], "
            "y[keep]), or use skssl.SSLClassifier, which takes unlabeled rows and pre-trains on them too. If the "
            "next step accepts missing labels, ignore this warning.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
