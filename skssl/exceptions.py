"""Warnings and errors that skssl raises and that a caller may want to filter or catch by class."""

# License: BSD-3-Clause

__all__ = ["FitInterruptedWarning"]


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
