"""Statistics of a matrix and of an embedding, each in one streaming pass.

Per-feature statistics of the fit data (:func:`column_statistics`: mean, scale, minimum, library sizes; over the
present values when NaN marks a missing view), the mean and covariance of an embedding accumulated block by block
(:func:`streaming_mean_covariance`) and the scaling derived from it (:func:`leading_variance_scaling`). Rows are read
through :mod:`skssl._reading`, called as ``_reading.read_rows`` / ``_reading.iter_batches`` so that a replacement of
those functions (tests count the rows read) reaches these passes too.
"""

from __future__ import annotations

import numpy as np

from . import _reading


def column_statistics(X, *, chunk_rows=_reading.CHUNK_ROWS, allow_nan=False):
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
    shift = _reading.read_rows(X, slice(0, 1)).astype(np.float64)[0]
    for rows, block in _reading.iter_batches(X, chunk_rows):  # iter_batches keeps a memmap's resident pages bounded
        _reading.check_finite_block(block, X, row_offset=rows.start)
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
    for rows, block in _reading.iter_batches(X, chunk_rows):
        _reading.check_finite_block(block, X, allow_nan=True, row_offset=rows.start)
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
