"""Checks of a fit's input for what a wrong file or a wrong preprocessing step looks like (issue 26).

Each one runs before any training and reads at most a sample of rows, so valid input costs little and its results
are unchanged: a transposed matrix (:func:`check_orientation_by_names`, and by the correlation of its columns),
gene names that repeat (:func:`check_unique_names`), constant data, values on another scale than the estimator models
(:func:`check_fit_values`, :func:`warn_if_log_scaled`, :func:`expected_scale`), and a ``y`` that does not fit ``X``
(:func:`check_fit_target`). :func:`input_checks_by` makes a fit nested in another estimator's skip them.
:func:`skssl._validation.validate_X` runs them; the helpers that word their messages (:func:`_preview`, and
:func:`user_stacklevel`, which points a warning at the user's call) live here, below ``_validation``, which uses
them too. Rows are read through :mod:`skssl._reading` (called as ``_reading.read_rows``, so that a replacement of it
reaches the row sample too).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
import sys
import warnings

import joblib
import numpy as np
import scipy.sparse as sp
import sklearn

from . import _reading
from .exceptions import DataOrientationWarning, DataScaleWarning


def _preview(names, limit=3):
    shown = ", ".join(repr(str(n)) for n in names[:limit])
    return shown + (", ..." if len(names) > limit else "")


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
    if _reading.is_out_of_core(X) and not isinstance(X, np.memmap):
        k = min(k, _SAMPLE_ROWS_HDF5)
    if k == n_rows and isinstance(X, np.ndarray) and not _reading.is_out_of_core(X):
        return X
    rows = np.unique(np.linspace(0, n_rows - 1, k).round().astype(np.int64))
    return _reading.read_rows(X, rows)


def _varying_columns(block):
    """Mask of the columns of ``block`` that take more than one value (however close: data scaled by 1e-30 vary)."""
    return block.max(axis=0) > block.min(axis=0)


def _all_rows_varying(X):
    """:func:`_varying_columns` over every row of ``X`` (one streaming pass; run only to confirm a failure)."""
    low = high = None
    for _, block in _reading.iter_batches(X, _reading.CHUNK_ROWS):
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
