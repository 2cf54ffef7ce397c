"""Input validation, streaming statistics and batch feeding for the estimators.

Three kinds of input reach the training loop, and none of them is ever densified whole:

* in-memory dense arrays (numpy, pandas),
* scipy.sparse matrices (converted to CSR, densified one batch at a time),
* out-of-core arrays: ``np.memmap`` and HDF5 datasets (read one batch or one chunk at a time).
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils.validation import _check_feature_names, _check_n_features, check_array, validate_data

# Rows read at once by the streaming passes (statistics, validation of out-of-core input, transform).
CHUNK_ROWS = 4096


def is_out_of_core(X):
    """Whether ``X`` lives on disk (``np.memmap`` or an HDF5 dataset) and must be read in chunks."""
    if isinstance(X, np.memmap):
        return True
    module = type(X).__module__ or ""
    return module.startswith("h5py") and hasattr(X, "shape") and hasattr(X, "dtype")


def validate_X(estimator, X, *, reset, dense_dtype=np.float32):
    """Validate ``X`` the scikit-learn way and return an array-like the batch readers understand.

    Sets ``n_features_in_`` / ``feature_names_in_`` when ``reset``; checks them otherwise. Finiteness of
    out-of-core input is checked later, chunk by chunk, by :func:`column_statistics` or :func:`iter_batches`.
    """
    if is_out_of_core(X):
        if len(X.shape) != 2:
            raise ValueError(f"Expected a 2D array, got an array of shape {X.shape}.")
        n_samples, n_features = X.shape
        if n_samples < 1 or n_features < 1:
            raise ValueError(
                f"Found array with {n_samples} sample(s) and {n_features} feature(s) while a minimum of 1 is "
                "required."
            )
        if not np.issubdtype(np.dtype(X.dtype), np.number):
            raise ValueError(f"Expected numeric data, got dtype {X.dtype}.")
        _check_feature_names(estimator, X, reset=reset)
        _check_n_features(estimator, X, reset=reset)
        return X
    return validate_data(
        estimator,
        X,
        reset=reset,
        accept_sparse="csr",
        dtype=dense_dtype,
        ensure_all_finite=True,
    )


def n_rows(X):
    return X.shape[0]


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


def check_finite_block(block, X):
    if not np.isfinite(block).all():
        raise ValueError(
            "Input contains NaN or infinity. Remove or impute non-finite values before fitting "
            f"(input of shape {X.shape})."
        )


def column_statistics(X, *, chunk_rows=CHUNK_ROWS):
    """Per-feature mean and standard deviation, min value and per-row totals, in one streaming pass.

    Accumulates in float64 so that millions of rows do not lose precision. Raises ``ValueError`` on non-finite
    values (out-of-core input has not been checked before).

    Returns
    -------
    dict with ``mean``, ``std`` (float64 arrays of n_features), ``min`` (float) and ``row_sums`` (float64 array of
    n_samples).
    """
    n_samples, n_features = X.shape
    total = np.zeros(n_features)
    total_sq = np.zeros(n_features)
    row_sums = np.empty(n_samples)
    minimum = np.inf
    # Shift by the first row for a numerically stable variance (avoids E[x^2] - E[x]^2 cancellation).
    shift = read_rows(X, slice(0, 1)).astype(np.float64)[0]
    for start in range(0, n_samples, chunk_rows):
        block = read_rows(X, slice(start, min(start + chunk_rows, n_samples)))
        check_finite_block(block, X)
        row_sums[start : start + block.shape[0]] = block.sum(axis=1, dtype=np.float64)
        minimum = min(minimum, float(block.min()))
        centred = block - shift
        total += centred.sum(axis=0, dtype=np.float64)
        total_sq += np.square(centred, dtype=np.float64).sum(axis=0)
    mean_shifted = total / n_samples
    var = np.maximum(total_sq / n_samples - mean_shifted**2, 0.0)
    return {"mean": mean_shifted + shift, "std": np.sqrt(var), "min": minimum, "row_sums": row_sums}


def iter_batches(X, batch_size, *, indices=None, check_finite=False):
    """Yield ``(rows, dense float32 block)`` over ``indices`` (default: all rows, in order) in batches."""
    if indices is None:
        for start in range(0, n_rows(X), batch_size):
            stop = min(start + batch_size, n_rows(X))
            block = read_rows(X, slice(start, stop))
            if check_finite:
                check_finite_block(block, X)
            yield slice(start, stop), block
        return
    for start in range(0, len(indices), batch_size):
        rows = np.sort(indices[start : start + batch_size])
        yield rows, read_rows(X, rows)


def to_device(block, device, non_blocking=False):
    if not block.flags.writeable:  # slices of read-only memmaps: torch wants writable memory
        block = block.copy()
    tensor = torch.from_numpy(block)
    if device.type == "cuda":
        tensor = tensor.pin_memory() if non_blocking else tensor
        return tensor.to(device, non_blocking=non_blocking)
    return tensor


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


def resolve_int_or_auto(value, auto_value):
    return auto_value if value == "auto" else int(value)


def is_integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
