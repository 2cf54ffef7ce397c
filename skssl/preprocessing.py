"""Preprocessing transformers for gene-expression matrices.

All transformers follow the scikit-learn API and expect data laid out as
``(n_samples, n_genes)``. :class:`GeneAligner` is defined in
``skssl/_gene_aligner.py`` and importable from here.
"""

# License: BSD-3-Clause

from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.feature_selection import SelectorMixin
from sklearn.utils.sparsefuncs import mean_variance_axis
from sklearn.utils.validation import (
    FLOAT_DTYPES,
    check_is_fitted,
    check_non_negative,
    validate_data,
)

from ._compat import DocLinkMixin, Interval, StrOptions, fit_context
from ._gene_aligner import GeneAligner
from ._input_checks import warn_if_log_scaled
from ._validation import _non_finite_message

__all__ = ["GeneAligner", "HighlyVariableGenes", "LogCPM"]


def _validate_finite(estimator, X, **kwargs):
    """``validate_data``, with skssl's message for NaN or infinite values: scikit-learn's names no cell and
    suggests estimators that accept NaN (HistGradientBoosting...), which is no help before an embedder."""
    try:
        return validate_data(estimator, X, **kwargs)
    except ValueError as exc:
        # Only scikit-learn's finiteness errors ("Input X contains NaN/infinity"); feature-name errors stay as they are.
        is_non_finite = "NaN" in str(exc) or "infinity" in str(exc)
        message = _non_finite_message(X, dtype=np.float64) if is_non_finite else None
        if message is None:
            raise
        raise ValueError(f"{type(estimator).__name__}: {message}") from exc


def _log_cpm(X, *, pseudocount=1.0, base=2.0, scale=1e6, dtype=None):
    """``log_base(X / rowsum(X) * scale + pseudocount)`` for a dense array.

    Shared by :class:`LogCPM` and :func:`skssl.datasets.make_expression` so
    that both give bit-identical results. Row sums are accumulated in
    float64 (float32 sums of ~1e7 counts lose precision); the element-wise
    work is done in `dtype` (default: ``X.dtype`` if floating, else float64).
    """
    if dtype is None:
        dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
    dtype = np.dtype(dtype)
    totals = np.asarray(X).sum(axis=1, dtype=np.float64)
    # Empty libraries give an all-zero CPM row instead of 0/0 = NaN.
    factor = np.divide(scale, totals, out=np.zeros_like(totals), where=totals > 0)
    out = np.multiply(X, factor.astype(dtype)[:, None], dtype=dtype)
    out += dtype.type(pseudocount)
    if base == 2:
        np.log2(out, out=out)  # exact for powers of two, unlike log(x) / log(2)
    else:
        np.log(out, out=out)
        out /= dtype.type(np.log(base))
    return out


class LogCPM(DocLinkMixin, OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Library-size normalisation followed by a log transform.

    Each sample (row) of a count matrix is divided by its total count
    (library size), multiplied by ``scale`` (counts per million by default)
    and transformed as ``log_base(cpm + pseudocount)``. This is the usual
    "log2(CPM + 1)" representation of bulk RNA-seq counts.

    The transformer is stateless: :meth:`fit` only validates the input and
    records its number of features.

    Parameters
    ----------
    pseudocount : float, default=1.0
        Added before taking the logarithm; must be positive. With
        ``pseudocount=1`` zero counts map to zero, so sparse input stays
        sparse.

    base : float, default=2.0
        Base of the logarithm (use ``numpy.e`` for natural log).

    scale : float, default=1e6
        Target library size (``1e6`` gives counts per million).

    Attributes
    ----------
    n_features_in_ : int
        Number of features seen during :meth:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :meth:`fit`. Defined only when `X`
        has feature names that are all strings.

    See Also
    --------
    HighlyVariableGenes : Select the most variable genes after normalisation.

    Notes
    -----
    Samples whose total count is zero get a row of ``log_base(pseudocount)``
    (zeros with the default pseudocount) without any division warning.
    Sparse input is returned as CSR when ``pseudocount == 1`` and densified
    otherwise, because ``log(0 + pseudocount)`` is then non-zero.
    Float32 input gives float32 output; everything else gives float64.
    :meth:`fit` warns (:class:`~skssl.exceptions.DataScaleWarning`) when the
    values look already log-scaled (fractional, all between 1 and 30):
    a second log would compress the signal.

    Examples
    --------
    >>> import numpy as np
    >>> from skssl.preprocessing import LogCPM
    >>> counts = np.array([[0, 1, 3], [10, 0, 10], [0, 0, 0]])
    >>> LogCPM(scale=4).fit_transform(counts)
    array([[0.       , 1.       , 2.       ],
           [1.5849625, 0.       , 1.5849625],
           [0.       , 0.       , 0.       ]])
    """

    _parameter_constraints: dict = {
        "pseudocount": [Interval(Real, 0, None, closed="neither")],
        "base": [Interval(Real, 1, None, closed="neither")],
        "scale": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(self, pseudocount=1.0, base=2.0, scale=1e6):
        self.pseudocount = pseudocount
        self.base = base
        self.scale = scale

    def _validate(self, X, reset):
        X = _validate_finite(
            self,
            X,
            accept_sparse=("csr", "csc", "coo"),
            dtype=FLOAT_DTYPES,
            reset=reset,
        )
        check_non_negative(X, f"{self.__class__.__name__} (counts)")
        return X

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Validate `X` and record the number of features.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Non-negative counts.

        y : None
            Ignored.

        Returns
        -------
        self : object
            Fitted transformer.
        """
        X = self._validate(X, reset=True)
        warn_if_log_scaled(self, X)  # a second log would compress the signal without a word
        return self

    def transform(self, X):
        """Normalise each sample to `scale` and take the logarithm.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Non-negative counts.

        Returns
        -------
        X_new : {ndarray, sparse matrix} of shape (n_samples, n_features)
            Log-normalised values; CSR if `X` is sparse and
            ``pseudocount == 1``.
        """
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        if not sp.issparse(X):
            return _log_cpm(X, pseudocount=self.pseudocount, base=self.base, scale=self.scale)
        if self.pseudocount != 1:
            return _log_cpm(
                X.toarray(),
                pseudocount=self.pseudocount,
                base=self.base,
                scale=self.scale,
            )
        X = X.tocsr(copy=True)
        X.sum_duplicates()
        totals = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
        factor = np.divide(self.scale, totals, out=np.zeros_like(totals), where=totals > 0)
        # Scale the stored values row by row: indptr gives each row's slice.
        row_factor = np.repeat(factor, np.diff(X.indptr))
        data = np.log1p(X.data.astype(np.float64) * row_factor) / np.log(self.base)
        X.data = data.astype(X.dtype, copy=False)
        return X

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.positive_only = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class HighlyVariableGenes(DocLinkMixin, SelectorMixin, BaseEstimator):
    """Keep the genes with the largest variance (or dispersion).

    A simple unsupervised filter applied after log-normalisation to drop
    genes that carry little variation across samples.

    Parameters
    ----------
    n_top_genes : int, default=2000
        Number of genes to keep. If it is at least the number of features,
        all genes are kept.

    flavor : {"variance", "dispersion"}, default="variance"
        Score used to rank the genes:

        - ``"variance"``: the variance of each gene.
        - ``"dispersion"``: variance divided by mean (index of dispersion),
          computed on the input scale; requires non-negative input. Genes
          with zero mean get a score of 0.

        Ties are broken in favour of the gene that comes first.

    Attributes
    ----------
    means_ : ndarray of shape (n_features_in_,)
        Mean of each gene.

    variances_ : ndarray of shape (n_features_in_,)
        Variance of each gene.

    scores_ : ndarray of shape (n_features_in_,)
        Ranking score of each gene (equal to `variances_` for
        ``flavor="variance"``).

    support_ : ndarray of shape (n_features_in_,), dtype=bool
        Mask of the selected genes.

    n_features_in_ : int
        Number of features seen during :meth:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :meth:`fit`. Defined only when `X`
        has feature names that are all strings.

    See Also
    --------
    sklearn.feature_selection.VarianceThreshold : Drop features below a
        variance threshold.

    Examples
    --------
    >>> import numpy as np
    >>> from skssl.preprocessing import HighlyVariableGenes
    >>> X = np.array([[0.0, 1.0, 5.0], [0.0, 3.0, 5.0], [0.1, 5.0, 5.0]])
    >>> hvg = HighlyVariableGenes(n_top_genes=2).fit(X)
    >>> hvg.get_support()
    array([ True,  True, False])
    >>> hvg.transform(X).shape
    (3, 2)
    """

    _parameter_constraints: dict = {
        "n_top_genes": [Interval(Integral, 1, None, closed="left")],
        "flavor": [StrOptions({"variance", "dispersion"})],
    }

    def __init__(self, n_top_genes=2000, flavor="variance"):
        self.n_top_genes = n_top_genes
        self.flavor = flavor

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Score the genes and select the `n_top_genes` highest.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Expression matrix.

        y : None
            Ignored.

        Returns
        -------
        self : object
            Fitted selector.
        """
        X = _validate_finite(self, X, accept_sparse=("csr", "csc"), dtype=FLOAT_DTYPES, reset=True)
        if sp.issparse(X):
            means, variances = mean_variance_axis(X, axis=0)
        else:
            means, variances = X.mean(axis=0), X.var(axis=0)
        self.means_ = np.asarray(means, dtype=np.float64)
        self.variances_ = np.asarray(variances, dtype=np.float64)
        if self.flavor == "variance":
            self.scores_ = self.variances_.copy()
        else:
            check_non_negative(X, f"{self.__class__.__name__}(flavor='dispersion')")
            self.scores_ = np.divide(
                self.variances_,
                self.means_,
                out=np.zeros_like(self.variances_),
                where=self.means_ > 0,
            )
        n_keep = min(self.n_top_genes, self.n_features_in_)
        # Stable sort on the negated score keeps the earlier gene on ties.
        order = np.argsort(-self.scores_, kind="stable")
        self.support_ = np.zeros(self.n_features_in_, dtype=bool)
        self.support_[order[:n_keep]] = True
        return self

    def _get_support_mask(self):
        check_is_fitted(self)
        return self.support_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.positive_only = self.flavor == "dispersion"
        return tags
