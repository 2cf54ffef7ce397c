"""Input validation the scikit-learn way, and the messages that say what is wrong with ``X`` and how to fix it.

:func:`validate_X` is what every estimator calls on ``X``: shape, dtype, finiteness, feature names and their order
(:func:`check_column_order`), for in-memory input (numpy, pandas, sparse) and out-of-core input (memmap, HDF5,
checked chunk by chunk later, as it is read). scikit-learn's generic errors for non-numeric columns and for NaN or
infinite values are replaced by ones that name the offending column and value. At a fit it also runs the checks of
:mod:`skssl._input_checks`. Also here: the check of a network's output for overflow (:func:`check_finite_output`)
and :func:`is_integer` for integer parameters.
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import validate_data

from ._compat import check_feature_names, check_n_features
from ._input_checks import _checks_owner, _preview, check_fit_values, check_orientation_by_names, check_unique_names
from ._reading import is_out_of_core, non_finite_message


def validate_X(estimator, X, *, reset, dense_dtype=np.float32, allow_nan=False):
    """Validate ``X`` the scikit-learn way and return an array-like the batch readers understand.

    Sets ``n_features_in_`` / ``feature_names_in_`` when ``reset``; checks them otherwise. Finiteness of
    out-of-core input is checked later, chunk by chunk, by :func:`~skssl._statistics.column_statistics` or
    :func:`~skssl._reading.iter_batches`. ``allow_nan=True`` lets NaN through (infinities are still rejected):
    multi-view estimators read a block of NaN as a missing view.

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


def is_integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
