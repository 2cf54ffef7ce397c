"""The one module through which skssl relies on private scikit-learn names and protocols.

Everything here may change between scikit-learn releases; keeping it in one place makes an upgrade a one-file
review.
"""

from __future__ import annotations

import torch

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
    "DocLinkMixin",
    "Interval",
    "InvalidParameterError",
    "StrOptions",
    "check_feature_names",
    "check_feature_names_in",
    "check_n_features",
    "ema_update_",
    "fit_context",
    "get_feature_names",
    "standard_gamma",
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


@torch.no_grad()
def ema_update_(target_params, online_params, decay):
    """In place ``target = decay * target + (1 - decay) * online`` over lists of tensors (BYOL's target network).

    Uses torch's fused multi-tensor kernels (one launch for all parameters instead of one per tensor).
    """
    torch._foreach_mul_(target_params, decay)
    torch._foreach_add_(target_params, online_params, alpha=1.0 - decay)
