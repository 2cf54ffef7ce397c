"""GeneAligner: map expression tables measured on different gene panels onto one fixed gene list.

Public as :class:`skssl.GeneAligner` and ``skssl.preprocessing.GeneAligner``.
"""

# License: BSD-3-Clause

import warnings
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import FLOAT_DTYPES, check_array, check_is_fitted, validate_data

from ._compat import DocLinkMixin, Interval, StrOptions, check_feature_names_in, fit_context, get_feature_names

__all__ = ["GeneAligner"]


class GeneAligner(DocLinkMixin, TransformerMixin, BaseEstimator):
    """Reorder, subset and pad columns so that they match a fixed gene list.

    Models fitted on one gene panel can be applied to data measured on
    another: ``GeneAligner`` remembers a target gene order at :meth:`fit`
    and, at :meth:`transform`, maps any DataFrame onto it by column name,
    dropping genes that are not in the target and filling target genes that
    are absent with `fill_value`. Put it first in a pipeline.

    Parameters
    ----------
    genes : array-like of str, default=None
        Target gene order. If None, the column names of the data passed to
        :meth:`fit` are used. If that data has no column names either, the
        transformer works by position: :meth:`transform` then only checks
        the number of columns (and `genes_` is ``x0, x1, ...``).

    fill_value : float or "mean", default=0.0
        Value given to target genes that are absent from the data.
        ``"mean"`` uses the mean of that gene in the data passed to
        :meth:`fit` (0 for genes that were absent there too).

    warn_threshold : float, default=0.1
        Emit a :class:`UserWarning` when more than this fraction of the
        target genes is absent from the data being aligned.

    Attributes
    ----------
    genes_ : ndarray of shape (n_genes_,), dtype=object
        Target gene order; the output columns of :meth:`transform`.

    fill_values_ : ndarray of shape (n_genes_,)
        Value used for each target gene when it is absent.

    n_features_in_ : int
        Number of features seen during :meth:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :meth:`fit`. Defined only when `X`
        has feature names that are all strings.

    Notes
    -----
    DataFrames are aligned by column name, whatever their width or column
    order. Arrays carry no names: they must already be in target order,
    i.e. have ``len(genes_)`` columns, and pass through unchanged.
    NaN values are passed through.

    Examples
    --------
    >>> import pandas as pd
    >>> from skssl.preprocessing import GeneAligner
    >>> train = pd.DataFrame({"A": [1.0, 3.0], "B": [2.0, 4.0], "C": [5.0, 7.0]})
    >>> aligner = GeneAligner(fill_value="mean", warn_threshold=0.5).fit(train)
    >>> new = pd.DataFrame({"C": [0.5], "A": [0.1], "D": [9.0]})
    >>> aligner.transform(new)
    array([[0.1, 3. , 0.5]])
    >>> aligner.get_feature_names_out()
    array(['A', 'B', 'C'], dtype=object)
    """

    _parameter_constraints: dict = {
        "genes": ["array-like", None],
        "fill_value": [Real, StrOptions({"mean"})],
        "warn_threshold": [Interval(Real, 0, 1, closed="both")],
    }

    def __init__(self, genes=None, fill_value=0.0, warn_threshold=0.1):
        self.genes = genes
        self.fill_value = fill_value
        self.warn_threshold = warn_threshold

    @staticmethod
    def _as_gene_array(genes, what):
        genes = np.asarray(genes, dtype=object).ravel()
        if genes.size == 0:
            raise ValueError(f"{what} is empty.")
        if not all(isinstance(g, str) for g in genes):
            raise TypeError(f"{what} must contain only strings.")
        unique, counts = np.unique(genes.astype(str), return_counts=True)
        if (counts > 1).any():
            dup = unique[counts > 1][:5].tolist()
            raise ValueError(f"{what} contains duplicated genes, e.g. {dup}.")
        return genes

    def _align(self, X, names, *, warn=True):
        """Map the columns of `X` (named `names`) onto ``genes_``."""
        position = {name: j for j, name in enumerate(names)}
        src = np.array([position.get(g, -1) for g in self.genes_], dtype=np.intp)
        present = src >= 0
        n_missing = int((~present).sum())
        if n_missing == len(self.genes_):
            raise ValueError(
                f"None of the {len(self.genes_)} target genes of "
                f"{self.__class__.__name__} is among the {len(names)} columns "
                f"of X (first target genes: {list(self.genes_[:3])}, first "
                f"columns of X: {list(names[:3])})."
            )
        if warn and n_missing > self.warn_threshold * len(self.genes_):
            warnings.warn(
                f"{n_missing} of {len(self.genes_)} target genes "
                f"({n_missing / len(self.genes_):.0%}) are missing from X and "
                f"are filled with {self.fill_value!r}.",
                UserWarning,
                stacklevel=3,
            )
        out = np.empty((X.shape[0], len(self.genes_)), dtype=X.dtype)
        out[:, present] = X[:, src[present]]
        out[:, ~present] = self.fill_values_[~present]
        return out

    def _frame_names(self, X):
        names = get_feature_names(X)
        if names is not None:
            self._as_gene_array(names, "The columns of X")
        return names

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Record the target gene order and the fill values.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features)
            Reference data. Without column names it must have
            ``len(genes)`` columns in the order of `genes`.

        y : None
            Ignored.

        Returns
        -------
        self : object
            Fitted transformer.
        """
        names = self._frame_names(X)
        X = validate_data(self, X, dtype=FLOAT_DTYPES, ensure_all_finite="allow-nan", reset=True)
        if self.genes is None:
            self.genes_ = check_feature_names_in(self)
        else:
            self.genes_ = self._as_gene_array(self.genes, "genes")
        # Without any gene names there is nothing to align by.
        self._by_name = self.genes is not None or names is not None
        if names is None:
            if X.shape[1] != len(self.genes_):
                raise ValueError(
                    f"X has {X.shape[1]} features, but {self.__class__.__name__} "
                    f"is expecting {len(self.genes_)} features as input (X has no "
                    "column names, so its columns are taken to be `genes`)."
                )
            names = self.genes_
        if self.fill_value == "mean":
            # Computed on the aligned reference so each target gene gets its own
            # mean; genes absent from the reference fall back to 0.
            self.fill_values_ = np.zeros(len(self.genes_))
            aligned = self._align(X, names, warn=True)
            present = np.isin(self.genes_, np.asarray(names, dtype=object))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN genes
                means = np.nanmean(aligned[:, present], axis=0)
            self.fill_values_[present] = np.nan_to_num(means, nan=0.0)
        else:
            self.fill_values_ = np.full(len(self.genes_), float(self.fill_value))
            self._align(X, names, warn=True)  # validates the overlap
        return self

    def transform(self, X):
        """Return `X` with columns in ``genes_`` order.

        Parameters
        ----------
        X : {DataFrame, array-like} of shape (n_samples, n_features)
            Data to align. DataFrames are matched by column name; arrays
            must have ``len(genes_)`` columns.

        Returns
        -------
        X_aligned : ndarray of shape (n_samples, len(genes_))
            Aligned data.
        """
        check_is_fitted(self)
        # Feature names are checked here, not by `validate_data(reset=False)`,
        # whose whole point is to reject columns that differ from fit.
        names = self._frame_names(X)
        X = check_array(
            X,
            dtype=FLOAT_DTYPES,
            ensure_all_finite="allow-nan",
            estimator=self,
        )
        if names is not None and self._by_name:
            return self._align(X, names)
        if X.shape[1] != len(self.genes_):
            raise ValueError(
                f"X has {X.shape[1]} features, but {self.__class__.__name__} is "
                f"expecting {len(self.genes_)} features as input. Pass a "
                "DataFrame with gene names as columns to align by name."
            )
        return X

    def get_feature_names_out(self, input_features=None):
        """Get output feature names: the target genes.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Only checked against the names seen in :meth:`fit`.

        Returns
        -------
        feature_names_out : ndarray of str objects
            ``genes_``.
        """
        check_is_fitted(self)
        check_feature_names_in(self, input_features)
        return np.asarray(self.genes_, dtype=object).copy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
