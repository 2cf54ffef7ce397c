"""The one module through which skssl relies on private scikit-learn names and protocols.

Everything here may change between scikit-learn releases; keeping it in one place makes an upgrade a one-file
review.
"""

from __future__ import annotations

import inspect
import os
import re

import torch

# torch's CPU allocator puts tensors of 2 MB and more on transparent huge pages when THP_MEM_ALLOC_ENABLE is set
# (a documented torch environment variable). A wide network reallocates its weight gradients (45-100 MB each) at
# every step; on 4 KB pages each reallocation costs one page fault per 4 KB, which was a quarter of a default
# MaskedAutoencoder epoch on bladderbatch (docs/default_schedule.md). torch reads the variable once, at its first
# large CPU allocation, so it is set here, when skssl is imported; it changes where tensors live, never a value. A
# user who sets it (to 0 to opt out) keeps their choice.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

# scikit-learn's parameter validation (``_parameter_constraints`` + ``fit_context``, ``validate_params`` for
# functions) lives in a private module. It has been stable since scikit-learn 1.2 and skssl supports >= 1.6; if it
# moves, only these imports change.
from sklearn.base import _fit_context as fit_context
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions, validate_params
from sklearn.utils.validation import _check_feature_names as check_feature_names
from sklearn.utils.validation import _check_feature_names_in as check_feature_names_in
from sklearn.utils.validation import _check_n_features as check_n_features
from sklearn.utils.validation import _get_feature_names as get_feature_names

__all__ = [
    "DOCS_URL",
    "DOC_LINK_TEMPLATE",
    "FITTED_NAME",
    "SKLEARN_PRIVATE_STATE",
    "DocLinkMixin",
    "Interval",
    "InvalidParameterError",
    "StrOptions",
    "check_feature_names",
    "check_feature_names_in",
    "check_n_features",
    "constructor_parameter_names",
    "default_process_group_store",
    "ema_update_",
    "fit_context",
    "get_feature_names",
    "portable_sklearn_params",
    "set_sklearn_fitted_state",
    "sklearn_fitted_state",
    "sklearn_state_name",
    "standard_gamma",
    "validate_estimator_params",
    "validate_params",
]

# Documentation pages of the built Sphinx docs (docs/api.rst: ``autosummary`` with ``:toctree: generated/``). Each
# public estimator gets the page ``generated/skssl.<Name>.html`` whose class entry has the anchor ``skssl.<Name>``.
DOCS_URL = "https://skssl.readthedocs.io/en/latest/"
DOC_LINK_TEMPLATE = DOCS_URL + "generated/skssl.{estimator_name}.html#skssl.{estimator_name}"


class DocLinkMixin:
    """Give an estimator's HTML repr (Jupyter) a "?" link to its page in the built skssl API docs.

    Uses scikit-learn's private repr protocol (``sklearn.utils._repr_html.base._HTMLDocumentationLinkMixin``):
    ``_get_doc_link`` formats ``_doc_link_template`` with the parameters returned by
    ``_doc_link_url_param_generator`` when the estimator's top-level module is ``_doc_link_module``. The template
    points at the built docs (docs/api.rst), where every estimator is documented under its public name
    ``skssl.<Name>`` whatever private module defines it. Put this mixin before ``BaseEstimator`` in the bases so
    that these class attributes take precedence over scikit-learn's defaults.
    """

    _doc_link_module = "skssl"
    _doc_link_template = DOC_LINK_TEMPLATE

    def _doc_link_url_param_generator(self):
        return {"estimator_name": type(self).__name__}


def standard_gamma(concentration):
    """Draws of Gamma(concentration, 1), element-wise (for negative-binomial sampling as a Gamma-Poisson mixture).

    ``torch.distributions.Gamma(...).sample()`` calls the same private kernel; calling it directly avoids building
    a distribution object per batch.
    """
    return torch._standard_gamma(concentration)


def default_process_group_store():
    """The key-value store of the default ``torch.distributed`` process group.

    torch has no public accessor; skssl's data-parallel fit writes a failed rank's error there so that the other
    ranks can name it (``skssl._distributed``).
    """
    from torch.distributed import distributed_c10d

    return distributed_c10d._get_default_store()


@torch.no_grad()
def ema_update_(target_params, online_params, decay):
    """In place ``target = decay * target + (1 - decay) * online`` over lists of tensors (BYOL's target network).

    Uses torch's fused multi-tensor kernels (one launch for all parameters instead of one per tensor).
    """
    torch._foreach_mul_(target_params, decay)
    torch._foreach_add_(target_params, online_params, alpha=1.0 - decay)


# A model file (skssl.save_model) records the parameters of the scikit-learn estimators inside an SSLClassifier /
# SSLRegressor ensemble as the release that wrote it has them. scikit-learn 1.8 deprecated LogisticRegression's
# ``penalty`` (its default became "deprecated": the penalty follows ``l1_ratio``, whose default became 0.0, i.e. L2)
# and removed ``multi_class``; 1.6 and 1.7 have penalty="l2", l1_ratio=None and multi_class="deprecated". Files move
# between the scikit-learn releases that setup.cfg allows through this translation.
def portable_sklearn_params(cls, params):
    """The stored ``params`` of a scikit-learn estimator ``cls``, restated for the installed scikit-learn release.

    Only LogisticRegression's ``penalty`` / ``l1_ratio`` / ``multi_class`` defaults are restated; everything else
    (and any value that would change the model) is returned as stored, for the loader's own checks.

    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> X, y = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1])
    >>> written_by_1_9 = {"penalty": "deprecated", "l1_ratio": 0.0}
    >>> written_by_1_6 = {"penalty": "l2", "l1_ratio": None, "multi_class": "deprecated"}
    >>> for stored in (written_by_1_9, written_by_1_6):
    ...     params = portable_sklearn_params(LogisticRegression, stored)
    ...     print(LogisticRegression(**params).fit(X, y).score(X, y))
    1.0
    1.0
    """
    from sklearn.linear_model import LogisticRegression

    if cls is not LogisticRegression or not isinstance(params, dict):
        return params
    params = dict(params)
    installed = LogisticRegression().get_params()
    if "multi_class" not in installed and params.get("multi_class") == "deprecated":
        del params["multi_class"]  # written by scikit-learn < 1.8, where "deprecated" meant the default ("auto")
    penalty, ratio = params.get("penalty"), params.get("l1_ratio")
    if installed["penalty"] != "deprecated" and penalty == "deprecated" and ratio in (0.0, 1.0):
        params["penalty"], params["l1_ratio"] = ("l2" if ratio == 0.0 else "l1"), None  # written by >= 1.8
    elif installed["penalty"] == "deprecated" and penalty in ("l2", "l1") and ratio is None:
        params["penalty"], params["l1_ratio"] = "deprecated", (0.0 if penalty == "l2" else 1.0)  # written by < 1.8
    return params


# scikit-learn keeps a fitted estimator's state in its instance attributes: the public ones end in "_", and a few
# private ones are read by predict / transform too (PCA branches on ``_fit_svd_solver``). skssl.save_model stores the
# state of the scikit-learn objects inside an SSLClassifier / SSLRegressor ensemble through these functions, and
# load_model sets it back, so that the model files depend on scikit-learn's internals in this one place.
SKLEARN_PRIVATE_STATE = {"PCA": ("_fit_svd_solver",)}
# scikit-learn's naming of a public fitted attribute (``coef_``); skssl's estimators follow it too.
FITTED_NAME = re.compile(r"^[a-z][a-z0-9_]*_$")


def sklearn_state_name(cls, key, params):
    """Whether attribute ``key`` of a fitted ``cls`` (a scikit-learn estimator with constructor ``params``) is part
    of its fitted state: a public fitted attribute (``name_``) or one of the private ones that prediction reads."""
    if key in params or hasattr(cls, key):
        return False
    return bool(FITTED_NAME.match(key)) or key in SKLEARN_PRIVATE_STATE.get(cls.__name__, ())


def sklearn_fitted_state(obj):
    """The fitted state of a scikit-learn estimator, ``{attribute: value}`` (see :func:`sklearn_state_name`)."""
    params = obj.get_params(deep=False)
    return {key: value for key, value in vars(obj).items() if sklearn_state_name(type(obj), key, params)}


def set_sklearn_fitted_state(obj, state):
    """Give an unfitted scikit-learn estimator ``obj`` the fitted ``state`` of :func:`sklearn_fitted_state`."""
    for key, value in state.items():
        setattr(obj, key, value)
    return obj


def constructor_parameter_names(cls):
    """The names of ``cls``'s constructor parameters, as ``get_params`` lists them (without building an instance).

    >>> from sklearn.decomposition import PCA
    >>> "n_components" in constructor_parameter_names(PCA)
    True
    """
    return sorted(
        name
        for name, parameter in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    )


def validate_estimator_params(estimator):
    """Check ``estimator``'s parameters against its ``_parameter_constraints`` without fitting it.

    For parameters read from a file (``skssl.persistence``); ``fit`` itself validates through ``fit_context``.
    Raises ``InvalidParameterError`` (a ``ValueError`` and ``TypeError``).
    """
    estimator._validate_params()
