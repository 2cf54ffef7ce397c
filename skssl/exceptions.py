"""Warnings and errors that skssl raises and that a caller may want to filter or catch by class."""

# License: BSD-3-Clause

__all__ = ["DataOrientationWarning", "DataScaleWarning", "FitInterruptedWarning"]


class FitInterruptedWarning(UserWarning):
    """A ``KeyboardInterrupt`` (Ctrl-C) stopped training early; the estimator is fitted nonetheless.

    ``fit`` stops as early stopping would: the estimator keeps the weights of its best epoch so far (its last
    weights without a validation split), its ``history_`` and ``n_iter_`` cover the epochs completed, and the
    message says how to train further (an embedder's ``warm_start=True`` or ``partial_fit``).

    Examples
    --------
    >>> import warnings
    >>> from skssl.exceptions import FitInterruptedWarning
    >>> warnings.simplefilter("error", FitInterruptedWarning)  # make an interrupted fit raise instead
    >>> warnings.resetwarnings()
    """


class DataScaleWarning(UserWarning):
    """The values of ``X`` do not look like the scale the estimator expects.

    Raised at ``fit``, before any training, when an estimator that models log-expression (the embedders with a
    Gaussian likelihood, ``SSLClassifier``, ``SSLRegressor``) gets values that look like raw counts, CPM, TPM or
    FPKM (non-negative, and whole numbers or a heavy right tail above 100): transform them first with
    :class:`skssl.LogCPM` (counts) or ``np.log1p`` (FPKM, TPM, normalised counts). And when :class:`skssl.LogCPM`
    gets values that look already log-scaled (fractional, all below 30). The check reads a sample of rows; a
    caller who knows the scale is right can filter the warning by this class.

    Examples
    --------
    >>> import warnings
    >>> from skssl.exceptions import DataScaleWarning
    >>> warnings.filterwarnings("ignore", category=DataScaleWarning)  # the scale is intended
    >>> warnings.resetwarnings()
    """


class DataOrientationWarning(UserWarning):
    """``X`` looks transposed (genes in rows, samples in columns), judged from its values alone.

    The columns of a genes x samples matrix are expression profiles, which correlate strongly with one another
    (Pearson r about 0.8-0.95 for bulk data), while genes of a samples x genes matrix mostly do not (a median r
    below 0.35 on every shared data set, counts included). ``fit`` warns, before any training, when the median
    correlation between columns is that of profiles; pass ``X.T`` if so. Column names that look like sample ids
    (GSM..., TCGA-..., ....CEL) give a ``ValueError`` instead.

    Examples
    --------
    >>> import warnings
    >>> from skssl.exceptions import DataOrientationWarning
    >>> warnings.filterwarnings("ignore", category=DataOrientationWarning)  # strongly correlated genes, intended
    >>> warnings.resetwarnings()
    """
