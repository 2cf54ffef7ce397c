"""Rebuilding a loaded estimator's network and checking what the network does not: the helpers that follow the
estimators' construction code (``_build_module``, the fine-tuning network), kept together so that a change there
is mirrored here in one place.
"""

from __future__ import annotations

import contextlib
import copy
import re
from numbers import Integral

import numpy as np
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.utils.validation import check_is_fitted
from torch.overrides import TorchFunctionMode

from .._base import BaseSSLEstimator
from .._finetune import _embedding_path, _FineTuneModule
from .._nn import Standardize, make_mlp
from ..vae import VAEEmbedder
from ..vae._module import ProductOfExperts, VAEModule
from ._schema import _PARAMETERS_OF_FITTED, _expect


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


def _rebuild_network(estimator, state, where, *, upgrade=False):
    """The network of ``estimator`` holding the stored tensors ``state``, in eval mode.

    The file declares the network's sizes (``n_features_in_``, ``hidden_dims_``, ``n_components``, ...), and a few
    bytes can declare a network of gigabytes: they are checked against the stored tensors, which the file's size
    bounds, before any of it is allocated. First each declared width and the number of layers, then the shapes of
    a skeleton built on torch's ``meta`` device (shapes without storage) by the same construction code; only then
    is the network built.
    """
    _check_declared_sizes(estimator, state, where)
    try:
        skeleton = _rebuild_module(estimator, where, skeleton=True)
        stored = _upgrade_state_dict(estimator, skeleton, state, where) if upgrade else state
        _check_shapes(skeleton.state_dict(), stored, where)
        del skeleton
        module = _rebuild_module(estimator, where)
    except (AttributeError, KeyError, TypeError, IndexError, RuntimeError, OverflowError) as exc:
        raise ValueError(
            f"{where}: the network cannot be rebuilt from the stored parameters and attributes ({exc}); the file "
            "is corrupt or was modified."
        ) from exc
    # Files of format 1 (skssl 0.1.0) may name the VAE's tensors otherwise (see below): renamed before the strict
    # check. A file of format 2 has one layout, and a tensor named the old way is a corrupt file.
    if upgrade:
        state = _upgrade_state_dict(estimator, module, state, where)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(
            f"{where}: the stored network weights do not match the network that the parameters describe "
            f"({' '.join(str(exc).split())}); the file is corrupt or was modified."
        ) from exc
    for name, part in module.named_modules():
        if isinstance(part, Standardize):
            _expect(bool((part.scale > 0).all()), f"{where}.module_.{name}", "holds zero or negative scales")
    return module.eval()


class _WeightsOnMeta(TorchFunctionMode):
    """``torch.empty`` without a device, which the layers' constructors call for their weights (``nn.Linear``,
    ``nn.LayerNorm``), makes tensors on the ``meta`` device: shapes without storage. Unlike
    ``with torch.device("meta")``, every other tensor (the placeholder statistics, which the declared-size check
    bounds, and what the construction code computes from them) stays on the CPU: arithmetic that mixes devices
    would fail, and arithmetic on meta tensors imports torch._dynamo (seconds per process).
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.empty and kwargs.get("device") is None:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def _declared_widths(estimator):
    """``{name: widths}``: the layer widths that the file declares and the network is built from."""
    if isinstance(estimator, BaseSSLEstimator):
        return {"hidden_dims_": estimator.hidden_dims_, "n_components": (estimator.n_components,)}
    widths = {"head_hidden_dims": tuple(estimator.head_hidden_dims)}
    if estimator.embedder_ is None:  # pretrain=False: the embedder's network is built from its parameters
        embedder = estimator._configured_embedder(0)
        widths["embedder.hidden_dims"] = embedder._resolved_hidden_dims(estimator.n_features_in_)
        widths["embedder.n_components"] = (embedder.n_components,)
    return widths


def _check_declared_sizes(estimator, state, where):
    """Every declared width at most the number of stored values, and no more layers than stored tensors: every
    width is the output of a linear layer whose weights are stored, and every layer stores a tensor."""
    n_values = sum(tensor.numel() for tensor in state.values())
    n_features = getattr(estimator, "n_features_in_", None)
    # Every column feeds stored weights (or, in a multi-view model, may be left out of every view): the bound's
    # floor only spares such a model; a placeholder statistic of 2**20 columns takes 16 MB.
    _expect(
        type(n_features) is int and 1 <= n_features <= max(n_values, 2**20),
        where,
        f"n_features_in_={n_features!r} is invalid or larger than the stored network allows",
    )
    try:
        declared = _declared_widths(estimator)
    except (AttributeError, TypeError) as exc:
        raise ValueError(f"{where}: the network's sizes are missing or invalid ({exc}); the file is corrupt.") from exc
    for name, widths in declared.items():
        _expect(isinstance(widths, tuple), where, f"invalid {name}")
        _expect(
            len(widths) <= len(state)
            and all(isinstance(w, Integral) and not isinstance(w, bool) and 1 <= w <= n_values for w in widths),
            where,
            f"{name} declares {len(widths)} layers (widths up to {max(widths, default=0)}), more than the "
            f"{len(state)} stored tensors of {n_values} values hold",
        )


def _check_shapes(expected, stored, where):
    """The stored tensors against the skeleton's state dict, as ``load_state_dict(strict=True)`` would check them."""
    problems = [f"missing {key}" for key in expected if key not in stored]
    problems += [f"unexpected {key}" for key in stored if key not in expected]
    problems += [
        f"size mismatch for {key}: stored {tuple(stored[key].shape)}, network {tuple(shape.shape)}"
        for key, shape in expected.items()
        if key in stored and stored[key].shape != shape.shape
    ]
    if problems:
        raise ValueError(
            f"{where}: the stored network weights do not match the network that the parameters describe "
            f"({'; '.join(problems[:5])}{'; ...' if len(problems) > 5 else ''}); the file is corrupt or was modified."
        )


def _rebuild_module(estimator, where, *, skeleton=False):
    """The untrained network of ``estimator`` (on the CPU), built by the estimators' own construction code.

    ``skeleton=True``: the parts sized by the file get their weights on the ``meta`` device, allocating nothing.
    """
    declared = _WeightsOnMeta() if skeleton else contextlib.nullcontext()
    n_features = estimator.n_features_in_
    _expect(type(n_features) is int and n_features >= 1, where, "invalid n_features_in_")
    if isinstance(estimator, BaseSSLEstimator):
        hidden_dims = estimator.hidden_dims_
        _expect(isinstance(hidden_dims, tuple), where, "invalid hidden_dims_")
        with declared:
            return _build_embedder_module(estimator, n_features, hidden_dims)
    _expect(estimator.strategy == "finetune", where, "only strategy='finetune' has a network")
    if estimator.embedder_ is not None:
        source = estimator.embedder_.module_  # loaded and checked already
    else:  # pretrain=False: the network the embedder would start from
        embedder = estimator._configured_embedder(0)
        with declared:
            source = _build_embedder_module(embedder, n_features, embedder._resolved_hidden_dims(n_features))
    if skeleton and estimator.embedder_ is None:
        # Weights without values cannot run the probe that measures the embedding's width: its n_components.
        body, n_components = source.encoder_path(), embedder.n_components
    else:  # the same reduction of the embedder's network to its embedding path that fit applies
        body, n_components = _embedding_path(source, n_features)
    frozen = estimator.finetune == "head"
    if frozen:
        body.requires_grad_(False)
    scale = Standardize(torch.zeros(n_components), torch.ones(n_components))  # as wide as the stored embedding
    with declared:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            head = make_mlp(
                n_components, tuple(estimator.head_hidden_dims), estimator._n_outputs(), dropout=estimator.dropout
            )
    return _FineTuneModule(body, scale, head, frozen)


def _check_consistency(estimator, where):
    """Shapes of the fitted attributes that the network does not check."""
    try:
        check_is_fitted(estimator)
    except Exception as exc:  # NotFittedError, and whatever a corrupt attribute raises
        raise ValueError(f"{where}: the fitted attributes are missing ({exc}).") from exc
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        _expect(
            isinstance(names, np.ndarray) and names.shape == (estimator.n_features_in_,),
            where,
            "feature_names_in_ disagrees with n_features_in_",
        )
    if isinstance(estimator, BaseSSLEstimator):
        k = estimator.n_components_
        for key, shape in (("embedding_mean_", (k,)), ("embedding_scale_", (k,)), ("embedding_whitening_", (k, k))):
            value = getattr(estimator, key, None)
            if value is not None:
                _expect(
                    isinstance(value, np.ndarray) and value.shape == shape,
                    where,
                    f"{key} has the wrong shape for n_components_={k}",
                )


def _check_parameters(estimator, where):
    """The parameters that size a network agree with the fitted attributes (before the network is rebuilt)."""
    if isinstance(estimator, BaseSSLEstimator):
        _check_parameters_of_fitted(estimator, estimator, where)
    elif getattr(estimator, "embedder_", None) is not None and not estimator._uses_prefit():
        # fit pre-trained embedder_ as a clone of the embedder parameter: a refit must build the same network.
        _check_parameters_of_fitted(estimator._resolved_embedder(), estimator.embedder_, f"{where}.embedder")


def _check_parameters_of_fitted(declared, fitted, where):
    """The network-sizing parameters of ``declared`` (an embedder) agree with the fitted attributes of ``fitted``."""
    _expect(type(declared) is type(fitted), where, "the embedder parameter is not of the fitted embedder's class")
    for parameter, attribute in _PARAMETERS_OF_FITTED.items():
        _expect(hasattr(fitted, attribute), where, f"the fitted attribute {attribute} is missing")
        value = getattr(declared, parameter)
        if parameter == "hidden_dims":
            try:
                value = declared._resolved_hidden_dims(fitted.n_features_in_)
            except (ValueError, TypeError):
                pass  # reported below: an invalid value disagrees with any fitted one
        _expect(
            value == getattr(fitted, attribute),
            where,
            f"the parameter {parameter}={getattr(declared, parameter)!r} disagrees with the fitted "
            f"{attribute}={getattr(fitted, attribute)!r}",
        )


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


# ---------------------------------------------------------------------------------------------------------------
# Files of skssl 0.1.0: the VAE's state dict before the skssl.vae package
# ---------------------------------------------------------------------------------------------------------------
#
# Files of format 1 hold either layout (skssl 0.1.0's, or the development versions' after it, which still wrote
# format 1 under the version number 0.1.0); the old layout is recognised by the names of its tensors alone and
# upgraded here before load_state_dict(strict=True) checks it against the rebuilt network. Format 2 (skssl 0.2.0)
# has the new layout only, and is never upgraded:
# - a VAEEmbedder's network (VAEModule) always holds the buffer "view_counts" and "encoder.experts.*",
#   "decoders.*" and "likelihoods.*" tensors; the 0.1.0 network held none of these;
# - the embedding path of a model fine-tuned from a VAE (ProductOfExperts) holds only "body.experts.*" tensors;
#   the 0.1.0 path held "body.encoder.*" (one view) or "body.views.*" (several) and never "body.experts.*".
# A later change of these networks bumps FORMAT_VERSION, and upgrades files by their format version.
#
# 0.1.0 layout -> VAEModule, view k (k = 0 without views; "views.{k}." prefixed every key with views):
#   preprocess.*                    -> encoder.experts.{k}.preprocess.* and, Gaussian, likelihoods.{k}.standardize.*
#   index                           -> encoder.experts.{k}.index
#   encoder.*                       -> encoder.experts.{k}.encoder.*
#   decoder.*                       -> decoders.{k}.*
#   log_var, log_theta, library_size, log_library_mean, log_library_std -> likelihoods.{k}.*
# Without views, a negative-binomial model kept its library-size statistics on the estimator (library_size_,
# log_library_mean_, log_library_std_): they become the likelihood's buffers. "view_counts" comes from view_counts_
# (with views), or is the rebuilt network's 0 ("unknown") without views, where nothing reads it.
_OLD_VIEW_PREFIX = re.compile(r"^views\.(\d+)\.(.*)$")
_OLD_LIKELIHOOD_KEYS = ("log_var", "log_theta", "library_size", "log_library_mean", "log_library_std")
_NEW_VAE_PREFIXES = ("encoder.experts.", "decoders.", "likelihoods.")
_OLD_LIBRARY_ATTRIBUTES = {
    "library_size": "library_size_",
    "log_library_mean": "log_library_mean_",
    "log_library_std": "log_library_std_",
}


def _upgrade_state_dict(estimator, module, state, where):
    """``state`` as ``module`` (the rebuilt network of ``estimator``) names it: files of skssl 0.1.0 upgraded,
    others returned unchanged."""
    if isinstance(module, VAEModule) and _is_old_vae_layout(state):
        return _upgrade_vae_state(estimator, module, state, where)
    body = getattr(module, "body", None)
    if isinstance(module, _FineTuneModule) and isinstance(body, ProductOfExperts):
        if not any(key.startswith("body.experts.") for key in state):
            return _upgrade_finetune_state(state, where)
    return state


def _is_old_vae_layout(state):
    # No name of the new layout at all: a new file that lost a tensor is left to the strict check's message.
    return "view_counts" not in state and not any(key.startswith(_NEW_VAE_PREFIXES) for key in state)


def _old_layout_error(where, problem):
    return ValueError(
        f"{where}: the network is stored in the layout of skssl 0.1.0 (before the skssl.vae package), which this "
        f"skssl renames on load, but {problem}; the file is corrupt or was modified. Refit the model with this "
        "skssl and save it again."
    )


def _renamed_vae_keys(state, where):
    """The 0.1.0 VAE tensors under their VAEModule names (without view_counts and the estimator's library sizes)."""
    upgraded = {}
    for key, tensor in state.items():
        match = _OLD_VIEW_PREFIX.match(key)
        view, rest = (int(match.group(1)), match.group(2)) if match else (0, key)
        head, _, tail = rest.partition(".")
        if head == "preprocess":
            upgraded[f"encoder.experts.{view}.preprocess.{tail}"] = tensor
            # Only a Gaussian view has a preprocessing with tensors (Standardize): its likelihood holds a copy.
            upgraded[f"likelihoods.{view}.standardize.{tail}"] = tensor
        elif head == "encoder" or (rest == "index" and match):
            upgraded[f"encoder.experts.{view}.{rest}"] = tensor
        elif head == "decoder" and tail:
            upgraded[f"decoders.{view}.{tail}"] = tensor
        elif rest in _OLD_LIKELIHOOD_KEYS:
            upgraded[f"likelihoods.{view}.{rest}"] = tensor
        else:
            raise _old_layout_error(where, f"its network holds a tensor {key!r} that 0.1.0 never wrote")
    return upgraded


def _upgrade_vae_state(estimator, module, state, where):
    upgraded = _renamed_vae_keys(state, where)
    if module.multiview:
        counts = getattr(estimator, "view_counts_", None)
        names = list(getattr(estimator, "views_", None) or ())
        if not isinstance(counts, dict) or list(counts) != names or not all(type(c) is int for c in counts.values()):
            raise _old_layout_error(where, "view_counts_ does not list the number of fit samples of every view")
        upgraded["view_counts"] = torch.as_tensor([counts[name] for name in names])
    else:
        upgraded["view_counts"] = module.view_counts.clone()
        if module.likelihoods[0].name == "nb":
            for buffer, attribute in _OLD_LIBRARY_ATTRIBUTES.items():
                value = getattr(estimator, attribute, None)
                if not isinstance(value, float):
                    raise _old_layout_error(where, f"the negative-binomial model has no {attribute}")
                # float32, as 0.1.0 computed with it (a Python float meeting float32 tensors).
                upgraded[f"likelihoods.0.{buffer}"] = torch.tensor(value, dtype=torch.float32)
    return upgraded


def _upgrade_finetune_state(state, where):
    """The 0.1.0 embedding path was a whole VAE network less its unused children (its decoder without views, kept
    with views); the new path is the VAEModule's encoder, a ProductOfExperts: its tensors are kept, the rest
    (decoders, noise parameters the embedding never used) dropped."""
    body = {key[len("body.") :]: tensor for key, tensor in state.items() if key.startswith("body.")}
    upgraded = {key: tensor for key, tensor in state.items() if not key.startswith("body.")}
    for key, tensor in _renamed_vae_keys(body, f"{where}.body").items():
        if key.startswith("encoder."):
            upgraded[f"body.{key[len('encoder.') :]}"] = tensor
    return upgraded
