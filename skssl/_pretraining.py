"""The embedder of a semi-supervised estimator: pre-trained here on every row of ``X``, or prefit and checked.

:class:`EmbedderUser` is shared by ``SSLClassifier`` / ``SSLRegressor`` (both strategies) and
``SemiSupervisedEnsembleClassifier`` / ``SemiSupervisedEnsembleRegressor`` (the ``"embedding"`` member): which
embedder the ``embedder`` and ``prefit`` parameters mean, its pre-training (whose Ctrl-C is held back by
:func:`pretraining` so that the outer fit warns once, naming the estimator the user called), the checks of a
prefit one, and the embedding of validated rows.
"""

from __future__ import annotations

import contextlib
import copy
import warnings

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.utils import get_tags
from sklearn.utils.validation import check_is_fitted

from . import _progress
from ._base import BaseSSLEstimator
from ._compat import InvalidParameterError
from .exceptions import FitInterruptedWarning
from .masked import MaskedAutoencoder


class _Interruption:
    """What :func:`pretraining` saw: the held-back FitInterruptedWarning (a ``warnings.WarningMessage``) or None."""

    warning = None


@contextlib.contextmanager
def pretraining():
    """Hold back the FitInterruptedWarning of a nested pre-training, so that the outer fit can stop and warn once.

    Ctrl-C during the embedder's epochs ends its fit early with that warning (``fit_loop``); the outer fit learns
    of it here, whatever the warning filters say, and warns once for the whole fit. Other warnings of the
    pre-training reach the caller as they would have.
    """
    interruption = _Interruption()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FitInterruptedWarning)
        yield interruption
    for caught_warning in caught:
        if issubclass(caught_warning.category, FitInterruptedWarning):
            interruption.warning = caught_warning
        else:
            warnings.warn_explicit(
                caught_warning.message,
                caught_warning.category,
                caught_warning.filename,
                caught_warning.lineno,
                source=caught_warning.source,
            )


class EmbedderUser:
    """The ``embedder`` and ``prefit`` parameters of a semi-supervised estimator, and ``embedder_``; a mixin (put it
    before ``BaseEstimator`` in the bases)."""

    def _resolved_embedder(self):
        embedder = MaskedAutoencoder() if self.embedder is None else self.embedder
        return embedder.estimator if isinstance(embedder, FrozenEstimator) else embedder

    def _uses_prefit(self):
        # A FrozenEstimator is fitted by definition: clone() keeps it, fit() does not change it.
        return self.prefit or isinstance(self.embedder, FrozenEstimator)

    def _check_embedder(self):
        """Refuse an ``embedder`` that is not an skssl embedder (the parameter constraints let any FrozenEstimator
        through)."""
        if not isinstance(self._resolved_embedder(), BaseSSLEstimator):
            raise InvalidParameterError(
                f"The 'embedder' parameter of {type(self).__name__} must be an skssl embedder (possibly in a "
                f"FrozenEstimator) or None. Got {self.embedder!r} instead."
            )

    def _configured_embedder(self, seed, device="auto"):
        """A clone of the embedder that follows this estimator's seed, verbosity and ``device`` where it has none."""
        embedder = clone(self._resolved_embedder())
        params = embedder.get_params(deep=False)
        overrides = {}
        if "random_state" in params and params["random_state"] is None:
            overrides["random_state"] = seed
        if "device" in params and isinstance(params["device"], str) and params["device"] == "auto":
            overrides["device"] = device
        if "verbose" in params and not params["verbose"] and self.verbose:
            overrides["verbose"] = self.verbose
        return embedder.set_params(**overrides)

    def _check_prefit_embedder(self, embedder, X):
        try:
            check_is_fitted(embedder)
        except NotFittedError as exc:
            raise NotFittedError(
                f"The embedder {type(embedder).__name__} is not fitted, but prefit=True (or a FrozenEstimator "
                "embedder) means it is used as is. Fit it first, or use prefit=False to let fit pre-train a copy "
                "of it on X. Note that clone() (used by cross-validation "
                "and grid searches) returns an unfitted copy of the embedder: wrap the fitted embedder in "
                "sklearn.frozen.FrozenEstimator to keep it fitted."
            ) from exc
        if embedder.n_features_in_ != X.shape[1]:
            raise ValueError(
                f"X has {X.shape[1]} features, but the prefit embedder was fitted on {embedder.n_features_in_}."
            )
        names, fitted_names = getattr(self, "feature_names_in_", None), getattr(embedder, "feature_names_in_", None)
        if names is not None and fitted_names is not None and not np.array_equal(names, fitted_names):
            raise ValueError("The feature names of X differ from those the prefit embedder was fitted on.")

    def _pretrained_embedder(self, X, seed, *, device="auto", caller=None):
        """A copy of the prefit embedder (checked against ``X``), or a clone pre-trained on every row of ``X``; and,
        when Ctrl-C cut that pre-training short, its FitInterruptedWarning (held back: see :func:`pretraining`).
        ``caller``: the name of the estimator whose fit this is, in the progress display."""
        if self._uses_prefit():
            self._check_prefit_embedder(self._resolved_embedder(), X)
            return copy.deepcopy(self._resolved_embedder()), None
        # Every row, labeled or not, trains the self-supervised objective; the labels stay hidden.
        with _progress.phase(caller or type(self).__name__, "pre-training"), pretraining() as interruption:
            embedder = self._configured_embedder(seed, device).fit(X)
        return embedder, interruption.warning

    def _warn_pretraining_interrupted(self, interruption, then):
        """The one FitInterruptedWarning of a fit whose pre-training Ctrl-C interrupted, at the user's ``fit`` line."""
        inner = str(interruption.message)
        hint = getattr(self.embedder_, "_interrupt_hint", "")
        if hint and inner.endswith(hint):  # the embedder's own way to go on; the nested one follows
            inner = inner[: -len(hint)].rstrip()
        inner = inner.replace("the estimator is fitted", "it is fitted")  # the embedder, not this estimator
        name, embedder = type(self).__name__, type(self.embedder_).__name__
        message = (
            f"{name}: fit interrupted (KeyboardInterrupt) during the pre-training of its embedder: {inner} {then} "
            f"To go on, continue the pre-training with embedder_.set_params(warm_start=True).fit(X), then fit "
            f"{name}(embedder=<that {embedder}>, prefit=True, ...) on the same X, y; or fit again to start anew."
        )
        warnings.warn_explicit(message, FitInterruptedWarning, interruption.filename, interruption.lineno)

    def _embed(self, X):
        """``embedder_.transform`` of the validated ``X``. Validation turned a DataFrame into an array; its gene
        names were already checked against ours (and, for a prefit embedder, ours against the embedder's), so the
        embedder's warning about an array without names says nothing here."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="X does not have valid feature names", category=UserWarning)
            return self.embedder_.transform(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = get_tags(self._resolved_embedder()).input_tags.positive_only
        return tags
