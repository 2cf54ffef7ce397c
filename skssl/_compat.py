"""The one module through which skssl relies on private scikit-learn names and protocols.

Everything here may change between scikit-learn releases; keeping it in one place makes an upgrade a one-file
review.
"""

from __future__ import annotations

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
