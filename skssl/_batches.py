"""Study-aware pre-training: the ``batch`` (study) labels of an embedder's ``fit``, checked and coded.

The codes reach the method's loss as the training targets of :func:`skssl._training.fit_loop` (one int per row):
the VAE's and the masked autoencoder's decoders read them as a one-hot input (:func:`skssl._nn.with_batch_code`),
the contrastive corruption and NT-Xent keep to rows of the same batch (:mod:`skssl._corruption`,
:mod:`skssl._losses`). The encoder never sees them.
"""

from __future__ import annotations

import numpy as np


def check_batch_labels(batch, n_samples):
    """``batch`` (one batch or study label per sample) as a 1-d numpy array, checked; ValueError naming the fix."""
    labels = np.asarray(batch)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels.ravel()
    if labels.ndim != 1:
        raise ValueError(
            f"batch must be a 1-d array-like with one batch (study) label per sample, got shape {labels.shape}."
        )
    if len(labels) != n_samples:
        raise ValueError(
            f"batch has {len(labels)} label(s) but X has {n_samples} sample(s): give one batch (study) label per "
            "row of X, in the same order."
        )
    if labels.dtype.kind == "f":
        missing = np.isnan(labels)
    elif labels.dtype.kind == "O":
        missing = np.array([v is None or (isinstance(v, float) and v != v) for v in labels.tolist()], dtype=bool)
    elif labels.dtype.kind in "biuUS":
        missing = np.zeros(len(labels), dtype=bool)
    else:
        raise ValueError(f"batch labels must be strings or integers, got dtype {labels.dtype}.")
    if missing.any():
        raise ValueError(
            f"batch has {int(missing.sum())} missing label(s) (NaN or None), the first in row "
            f"{int(np.flatnonzero(missing)[0])}: every sample needs a batch (study) label. Give samples of unknown "
            "origin a label of their own (e.g. 'unknown')."
        )
    try:
        np.unique(labels)
    except TypeError as exc:
        raise ValueError(
            "batch mixes labels of different types (e.g. strings and numbers); use one type, e.g. all strings."
        ) from exc
    return labels


class BatchConditioning:
    """The ``batch`` handling of :class:`skssl._base.BaseSSLEstimator` (a mixin; not for direct use)."""

    # Fitted attributes that only some fits set: removed before a fit assigns its state (a refit without batch
    # leaves no batch_categories_ of an earlier fit behind).
    _optional_fitted_attributes = ("batch_categories_",)

    def _n_batches(self, statistics):
        """Number of batches the network's decoder is conditioned on: ``statistics["n_batches"]`` at fit, else
        (a network rebuilt for a loaded model, or the from-scratch baseline) the fitted ``batch_categories_``."""
        n_batches = statistics.get("n_batches")
        if n_batches is None:
            categories = getattr(self, "batch_categories_", None)
            n_batches = 0 if categories is None else len(categories)
        return int(n_batches)

    def _check_batch_counts(self, counts, categories):
        """Method-specific checks of the number of samples of each batch (``counts[k]``: of ``categories[k]``)."""

    def _validate_batch(self, batch, n_samples, *, continuing):
        """``(codes, categories)`` of the ``batch`` labels of a fit: int64 code per sample into the sorted
        ``categories``; ``(None, None)`` without batch. ``continuing`` (warm start, later partial_fit) keeps the
        fitted ``batch_categories_``, whose network the labels must suit."""
        fitted = getattr(self, "batch_categories_", None) if continuing else None
        name = type(self).__name__
        if batch is None:
            if fitted is not None:
                raise ValueError(
                    f"{name} was fitted with batch=...: its decoder reads the batch of every sample. Pass batch "
                    "(labels among batch_categories_) to continue training it, or fit anew with warm_start=False."
                )
            return None, None
        labels = check_batch_labels(batch, n_samples)
        if continuing:
            if fitted is None:
                raise ValueError(
                    f"{name} was fitted without batch, so its network has no input for the batch. Continue "
                    "training without batch, or fit anew with batch (warm_start=False, or a new estimator)."
                )
            unknown = ~np.isin(labels, fitted)
            if unknown.any():
                shown = ", ".join(map(repr, np.unique(labels[unknown])[:5].tolist()))
                raise ValueError(
                    f"batch holds label(s) that {name} was not fitted with ({shown}); "
                    f"continuing training takes the fitted batch_categories_ {fitted.tolist()!r}. Fit anew "
                    "(warm_start=False) to add batches."
                )
            categories = fitted
        else:
            categories = np.unique(labels)
        codes = np.searchsorted(categories, labels).astype(np.int64)
        self._check_batch_counts(np.bincount(codes, minlength=len(categories)), categories)
        return codes, categories

    def _commit_fitted_state(self, state):
        """Assign a fit's whole new fitted state at once, removing the optional attributes it does not set."""
        for key in self._optional_fitted_attributes:
            self.__dict__.pop(key, None)
        self.__dict__.update(state)

    def _kept_optional_attributes(self, first_call):
        """The optional fitted attributes that a later partial_fit keeps (it sets only what changes)."""
        if first_call:
            return {}
        return {key: self.__dict__[key] for key in self._optional_fitted_attributes if key in self.__dict__}
