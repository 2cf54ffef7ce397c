"""What an skssl model file may name: the allow-lists of classes and attributes, and the checks against them.

Nothing in a file is imported by name: every class a file mentions must be one of the entries here, and the
loader refuses the file before building anything otherwise.
"""

from __future__ import annotations

from sklearn.decomposition import PCA
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression, Ridge

from .. import _ensemble
from ..contrastive import ContrastiveEmbedder
from ..masked import MaskedAutoencoder
from ..semi_supervised import SemiSupervisedEnsembleClassifier, SemiSupervisedEnsembleRegressor
from ..supervised import SSLClassifier, SSLRegressor
from ..vae import VAEEmbedder

# The only classes a file may name. Exact classes, not subclasses: a subclass may change behaviour (e.g. swap the
# corruption) that the file cannot record, so it would load as something else.
_ESTIMATORS = {
    cls.__name__: cls
    for cls in (
        ContrastiveEmbedder,
        MaskedAutoencoder,
        VAEEmbedder,
        SSLClassifier,
        SSLRegressor,
        SemiSupervisedEnsembleClassifier,
        SemiSupervisedEnsembleRegressor,
    )
}
# The ensemble estimator that SSLClassifier / SSLRegressor(strategy="ensemble") hold as ``ensemble_`` (format 3 on;
# files of formats 1 and 2 held the internal WeightedMembers there, wrapped at load, _decode.py).
_ENSEMBLE_OF = {SSLClassifier: SemiSupervisedEnsembleClassifier, SSLRegressor: SemiSupervisedEnsembleRegressor}
# Fitted attributes of SSLClassifier / SSLRegressor that are the same objects as their ensemble_'s after a fit
# (format 3 on): written once, within ensemble_, and set from it at load when the file does not hold them.
_ENSEMBLE_ALIASES = ("embedder_", "members_", "weights_")
# Estimators that may appear as a (parameters-only) wrapper of a nested ``embedder`` parameter.
_WRAPPERS = {"FrozenEstimator": FrozenEstimator}
# scikit-learn objects inside the ensemble of SSLClassifier / SSLRegressor(strategy="ensemble"); their fitted
# state is read and set through skssl._compat (sklearn_fitted_state), the one module that knows their internals.
_SKLEARN = {"PCA": PCA, "LogisticRegression": LogisticRegression, "Ridge": Ridge}
# The ensemble's own objects, each with the constructor arguments and fitted attributes it declares
# (``_init_args``, ``_fitted_attributes``), exhaustively: saving refuses an object with an attribute not declared,
# rather than silently dropping something its predictions might need.
_OBJECTS = {
    cls.__name__: (cls, cls._init_args, cls._fitted_attributes)
    for cls in (_ensemble.WeightedMembers, _ensemble.GeneViews, _ensemble.LinearMember, _ensemble.GraphMember)
}
# Files of formats 1 and 2 named WeightedMembers (the ensemble's fitted members and weights) SemiSupervisedEnsemble:
# renamed before the class names are checked (_renamed_objects).
_FORMAT_2_OBJECT_RENAMES = {"SemiSupervisedEnsemble": "WeightedMembers"}
# Files of format 1 kept SSLRegressor's target scaling in private attributes: renamed at load.
_FORMAT_1_RENAMES = {"SSLRegressor": {"_y_mean": "y_mean_", "_y_scale": "y_scale_"}}
# ... and the embedder's widths on the supervised estimators, which no prediction reads and 0.2 no longer sets:
# dropped at load (not among the classes' declared fitted attributes).
_FORMAT_1_DROPPED = {"SSLClassifier": ("hidden_dims_",), "SSLRegressor": ("hidden_dims_",)}
# The declared fitted attribute written as the network's state dict, not as a value. Private attributes
# (training-only state such as a partial_fit's optimiser) are never written: only declared fitted attributes are.
_SKIPPED = {"module_"}
_NUMERIC_KINDS = "biufc"

# The values of fitted attributes that predictions subtract, divide by or multiply with, by attribute name (whatever
# the class: LinearMember.mean_ and PCA.mean_ alike): "finite" (no NaN or infinity) or "positive" (finite and > 0).
# A damaged file is then refused at load with a message that blames it, instead of loading and turning every
# prediction into NaN. A new fitted attribute loads without an entry here; give it one when its values are bounded.
_VALUE_RULES = {
    "embedding_mean_": "finite",
    "embedding_scale_": "positive",
    "embedding_whitening_": "finite",
    "library_size_": "finite",
    "log_library_mean_": "finite",
    "log_library_std_": "finite",
    "mean_": "finite",
    "scale_": "positive",
    "pc_scale_": "positive",
    "components_": "finite",
    "coef_": "finite",
    "intercept_": "finite",
    "points_": "finite",
    "scores_": "finite",
    "y_mean_": "finite",
    "y_scale_": "positive",
}
# Constructor parameters of the embedders that their fitted network was built from, and the fitted attribute each
# must agree with: a file whose parameters say otherwise was modified (get_params would describe another network,
# and a refit would build it). hidden_dims is compared after resolving "auto" for n_features_in_.
_PARAMETERS_OF_FITTED = {"n_components": "n_components_", "hidden_dims": "hidden_dims_"}
# Parameters that name files on the machine that fitted the model: never written to a file, never taken from one
# (a loaded estimator has them None).
_LOCAL_PATH_PARAMETERS = ("checkpoint",)
# Deepest nesting of a valid meta.json is about 15 (a classifier's ensemble); anything far deeper is refused before
# any recursive code walks it.
_MAX_DEPTH = 64


def _check_class_names(node, where):
    """Refuse any class name outside the allow-lists, wherever it appears, before anything is built."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            _check_class_names(item, f"{where}[{i}]")
        return
    if not isinstance(node, dict):
        return
    kind = node.get("__kind__")
    if kind in ("estimator", "sklearn", "object"):
        allowed = {
            "estimator": {**_ESTIMATORS, **_WRAPPERS},
            "sklearn": _SKLEARN,
            "object": _OBJECTS,
        }[kind]
        name = node.get("class")
        if not isinstance(name, str) or name not in allowed:
            raise ValueError(
                f"{where}: class {name!r} is not allowed in an skssl model file (allowed: {sorted(allowed)}). "
                "The file was not written by skssl.save_model, or was modified; it is not loaded."
            )
    for key, value in node.items():
        _check_class_names(value, f"{where}.{key}")


def _renamed_objects(spec, format_version):
    """``spec`` with the objects that files of format ``format_version`` name otherwise under their present names
    (in place; no recursion: the description may be nested deeply before its depth is checked)."""
    if not isinstance(format_version, int) or format_version > 2:
        return spec
    stack = [spec]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            name = node.get("class")
            if node.get("__kind__") == "object" and isinstance(name, str) and name in _FORMAT_2_OBJECT_RENAMES:
                node["class"] = _FORMAT_2_OBJECT_RENAMES[name]
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return spec


def _expect(condition, where, message):
    if not condition:
        raise ValueError(f"{where}: {message}; the file is corrupt or was modified.")
