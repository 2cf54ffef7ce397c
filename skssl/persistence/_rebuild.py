"""Rebuilding a loaded estimator's network and checking what the network does not: the helpers that follow the
estimators' construction code (``_build_module``, the fine-tuning network), kept together so that a change there
is mirrored here in one place.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.utils.validation import check_is_fitted

from .._base import BaseSSLEstimator
from .._nn import Standardize, make_mlp
from ..supervised import _embedding_path, _FineTuneModule
from ..vae import VAEEmbedder
from ._schema import _expect


def _placeholder_statistics(embedder, n_features):
    """Statistics with the right shapes for ``_build_module``: the values they set are buffers of the module,
    overwritten by the stored state dict."""
    statistics = {"mean": np.zeros(n_features), "std": np.ones(n_features)}
    views = getattr(embedder, "views_", None)
    if isinstance(embedder, VAEEmbedder) and views is not None:
        statistics["views"] = {"present": np.ones((1, len(views)), dtype=bool), "row_sums": np.ones((1, len(views)))}
    return statistics


def _build_embedder_module(embedder, n_features, hidden_dims):
    # Initial weights are overwritten: a fixed seed in a fork of the RNG only keeps the caller's RNG untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return embedder._build_module(n_features, tuple(hidden_dims), _placeholder_statistics(embedder, n_features))


def _rebuild_module(estimator, where):
    """The untrained network of ``estimator`` (on the CPU), built by the estimators' own construction code."""
    n_features = estimator.n_features_in_
    _expect(type(n_features) is int and n_features >= 1, where, "invalid n_features_in_")
    if isinstance(estimator, BaseSSLEstimator):
        hidden_dims = estimator.hidden_dims_
        _expect(isinstance(hidden_dims, tuple), where, "invalid hidden_dims_")
        return _build_embedder_module(estimator, n_features, hidden_dims)
    _expect(estimator.strategy == "finetune", where, "only strategy='finetune' has a network")
    if estimator.embedder_ is not None:
        source = estimator.embedder_.module_
    else:  # pretrain=False: the network the embedder would start from
        embedder = estimator._configured_embedder(0)
        source = _build_embedder_module(embedder, n_features, embedder._resolved_hidden_dims(n_features))
    # The same reduction of the embedder's network to its embedding path that fit applies.
    body, n_components = _embedding_path(source, n_features)
    frozen = estimator.finetune == "head"
    if frozen:
        body.requires_grad_(False)
    scale = Standardize(torch.zeros(n_components), torch.ones(n_components))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        head = make_mlp(n_components, tuple(estimator.head_hidden_dims), estimator._n_outputs(),
                        dropout=estimator.dropout)
    return _FineTuneModule(body, scale, head, frozen)


def _check_consistency(estimator, where):
    """Shapes of the fitted attributes that the network does not check."""
    try:
        check_is_fitted(estimator)
    except Exception as exc:  # noqa: BLE001 - NotFittedError and friends
        raise ValueError(f"{where}: the fitted attributes are missing ({exc}).") from exc
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        _expect(isinstance(names, np.ndarray) and names.shape == (estimator.n_features_in_,), where,
                "feature_names_in_ disagrees with n_features_in_")
    if isinstance(estimator, BaseSSLEstimator):
        k = estimator.n_components_
        for key, shape in (("embedding_mean_", (k,)), ("embedding_scale_", (k,)), ("embedding_whitening_", (k, k))):
            value = getattr(estimator, key, None)
            if value is not None:
                _expect(isinstance(value, np.ndarray) and value.shape == shape, where,
                        f"{key} has the wrong shape for n_components_={k}")


def _restore_prefit_embedder(estimator):
    """With ``prefit=True`` (or a FrozenEstimator), ``embedder_`` is a copy of the fitted ``embedder`` parameter:
    restore that parameter as a fitted copy too, so the loaded model can be refitted or cloned like the saved one.
    """
    if not estimator._uses_prefit() or getattr(estimator, "embedder_", None) is None:
        return
    frozen = isinstance(estimator.embedder, FrozenEstimator)
    declared = estimator.embedder.estimator if frozen else estimator.embedder
    if declared is None or type(declared) is not type(estimator.embedder_):
        return
    if repr(declared.get_params(deep=False)) != repr(estimator.embedder_.get_params(deep=False)):
        return  # the parameter was changed after fitting: keep it as stored
    fitted = copy.deepcopy(estimator.embedder_)
    estimator.embedder = FrozenEstimator(fitted) if frozen else fitted
