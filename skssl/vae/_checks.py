"""Checks of the data a VAE is fitted on or applied to, against its likelihoods (counts, 0/1 calls)."""

from __future__ import annotations

import warnings

import numpy as np

from .. import _input_checks, _reading
from ..multiview import check_view_values

# Rows read to tell counts from non-integer (log-scale, normalised) data: enough to see, cheap even for a memmap.
COUNT_CHECK_ROWS = 256


def warn_if_not_counts(X, views):
    """Warn when the first rows of ``X`` (the columns of each ``"nb"`` view) hold non-integer values.

    Only the first :data:`COUNT_CHECK_ROWS` rows are read, so out-of-core and sparse input are never loaded whole.
    ``views`` maps a view name (None without views) to its column index.
    """
    block = _reading.read_rows(X, slice(0, min(_reading.n_rows(X), COUNT_CHECK_ROWS)))
    for name, index in views.items():
        values = block[:, index]
        with np.errstate(invalid="ignore"):
            fractional = np.isfinite(values) & (values != np.round(values))
        if not fractional.any():
            continue
        row, col = (int(i) for i in np.argwhere(fractional)[0])
        target = "X" if name is None else f"view {name!r}"
        fix = "likelihood='gaussian'" if name is None else f"the likelihood 'gaussian' for view {name!r}"
        warnings.warn(
            f"VAEEmbedder: {target} has non-integer values (e.g. {float(values[row, col]):g} in row {row}; "
            f"{int(fractional.sum())} of {values.size} values in the first {len(values)} rows), but "
            "likelihood='nb' (negative binomial) models raw counts. For log-scale or normalised data (log1p, CPM, "
            f"TPM, z-scores) use {fix}; for counts, pass the raw integer counts.",
            UserWarning,
            stacklevel=_input_checks.user_stacklevel(),
        )


def check_single_view_values(X, likelihood, *, minimum=None, skip_out_of_core=False):
    """Check the values of ``X`` (one view of every column) against ``likelihood`` with
    :func:`skssl.multiview.check_view_values`.

    ``"nb"``: no negative value (``minimum``, when known, saves a pass over ``X``); ``"bernoulli"``: only 0 and 1.
    Dense input is read one chunk at a time; ``skip_out_of_core`` leaves memory-mapped input unchecked (inference,
    where a pass of its own would cost as much as the work).
    """
    if likelihood == "gaussian" or (minimum is None and skip_out_of_core and _reading.is_out_of_core(X)):
        return
    if likelihood == "nb" and minimum is not None:
        check_view_values(None, likelihood, np.asarray([minimum]))
    elif hasattr(X, "indptr"):  # sparse: the stored values, plus the implicit zeros (valid for both)
        check_view_values(None, likelihood, X.data)
    else:
        for _, block in _reading.iter_batches(X, _reading.CHUNK_ROWS):
            check_view_values(None, likelihood, block)
