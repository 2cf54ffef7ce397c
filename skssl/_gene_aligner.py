"""GeneAligner: map expression tables measured on different gene panels onto one fixed gene list.

Public as :class:`skssl.GeneAligner` and ``skssl.preprocessing.GeneAligner``.
"""

# License: BSD-3-Clause

import re
import warnings
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import FLOAT_DTYPES, check_array, check_is_fitted, validate_data

from ._compat import DocLinkMixin, Interval, StrOptions, check_feature_names_in, fit_context, get_feature_names

__all__ = ["GeneAligner"]

# An Ensembl stable gene id (human ENSG, mouse ENSMUSG, any ENS<species>G) with the version suffix that GENCODE and
# most quantification pipelines append (``ENSG00000141510.17``), and GENCODE's ``_PAR_Y`` tag on the chrY copies of
# pseudo-autosomal genes. ARCHS4 and most count tables from other pipelines use the bare id.
_ENSEMBL_VERSIONED = re.compile(r"^(ENS[A-Z]*G\d{6,})(?:\.\d+)?(?:_PAR_Y)?$", re.IGNORECASE)


def _display_id(name):
    """The name a gene is reported under once ids are normalised: Ensembl ids lose their version suffix (and are
    upper-cased), symbols keep their spelling; surrounding whitespace goes."""
    name = str(name).strip()
    match = _ENSEMBL_VERSIONED.match(name)
    return match.group(1).upper() if match else name


def _gene_key(name):
    """The key normalised ids are compared by: the display id, case-folded. Gene symbols are unique regardless of
    case within a species (HGNC, MGI), while tables disagree on case (``C1orf112`` / ``C1ORF112``)."""
    return _display_id(name).upper()


def _collapse_columns(X, keys, how):
    """``(X_collapsed, unique_keys, first_column)``: the columns of `X` that share a key combined into one, by
    ``how`` ("sum" or "mean"), in order of first occurrence. NaN propagates, as in the uncollapsed data."""
    unique_keys, first_column, group = np.unique(np.asarray(keys, dtype=object), return_index=True, return_inverse=True)
    order = np.argsort(first_column, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    group = rank[group.ravel()]
    out = np.zeros((X.shape[0], order.size), dtype=X.dtype)
    np.add.at(out.T, group, X.T)
    if how == "mean":
        out /= np.bincount(group, minlength=order.size).astype(X.dtype)
    return out, unique_keys[order], first_column[order]


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

    match_ids : {"exact", "normalized"}, default="exact"
        How gene names are compared. ``"exact"``: as given. ``"normalized"``:
        surrounding whitespace is ignored, Ensembl gene ids lose their
        version suffix (``ENSG00000141510.17`` and ``ENSG00000141510`` are
        one gene; GENCODE's ``_PAR_Y`` tag goes too) and comparison ignores
        case (``C1orf112`` matches ``C1ORF112``). Symbols are not mapped to
        Ensembl ids or back: convert one table first if the two name genes
        differently (:meth:`transform` raises when nothing matches).

    duplicates : {"raise", "sum", "mean"}, default="raise"
        What to do with columns of `X` that name the same gene (after
        normalisation with ``match_ids="normalized"``: e.g. two versions of
        one Ensembl id, or a symbol two Ensembl genes share). ``"raise"``: a
        ValueError. ``"sum"``: add them up, the right choice for counts
        (put the aligner before :class:`~skssl.LogCPM`). ``"mean"``: average
        them, for values already on a log scale. Both emit a
        :class:`UserWarning` naming how many genes were combined.

    Attributes
    ----------
    genes_ : ndarray of shape (n_genes_,), dtype=object
        Target gene order; the output columns of :meth:`transform`. With
        ``match_ids="normalized"``, Ensembl ids are stored without their
        version suffix.

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

    Counts with versioned Ensembl ids (two versions of one gene: summed,
    with a warning) onto bare ids:

    >>> import warnings
    >>> counts = pd.DataFrame(
    ...     [[1.0, 2.0, 5.0]], columns=["ENSG00000000001.3", "ENSG00000000002.1", "ENSG00000000002.2"]
    ... )
    >>> ids = GeneAligner(genes=["ENSG00000000002", "ENSG00000000001"], match_ids="normalized", duplicates="sum")
    >>> with warnings.catch_warnings(record=True):
    ...     ids.fit_transform(counts)
    array([[7., 1.]])
    """

    _parameter_constraints: dict = {
        "genes": ["array-like", None],
        "fill_value": [Real, StrOptions({"mean"})],
        "warn_threshold": [Interval(Real, 0, 1, closed="both")],
        "match_ids": [StrOptions({"exact", "normalized"})],
        "duplicates": [StrOptions({"raise", "sum", "mean"})],
    }

    def __init__(self, genes=None, fill_value=0.0, warn_threshold=0.1, match_ids="exact", duplicates="raise"):
        self.genes = genes
        self.fill_value = fill_value
        self.warn_threshold = warn_threshold
        self.match_ids = match_ids
        self.duplicates = duplicates

    def _key(self, name):
        return _gene_key(name) if self.match_ids == "normalized" else name

    def _as_gene_array(self, genes, what, *, allow_duplicates=False):
        """`genes` as an object array of str, checked for duplicates (of the comparison key) unless allowed."""
        genes = np.asarray(genes, dtype=object).ravel()
        if genes.size == 0:
            raise ValueError(f"{what} is empty.")
        if not all(isinstance(g, str) for g in genes):
            raise TypeError(f"{what} must contain only strings.")
        if not allow_duplicates:
            keys = np.array([self._key(g) for g in genes], dtype=object).astype(str)
            unique, counts = np.unique(keys, return_counts=True)
            if (counts > 1).any():
                dup = [str(g) for g in genes[np.isin(keys, unique[counts > 1])][:5]]
                normalized = " once normalised (match_ids='normalized')" if self.match_ids == "normalized" else ""
                fix = (
                    "Each target gene must be named once."
                    if what == "genes"
                    else "Pass duplicates='sum' (counts) or duplicates='mean' (log values) to combine them."
                )
                raise ValueError(f"{what} contains duplicated genes{normalized}, e.g. {dup}. {fix}")
        return genes

    def _collapse(self, X, names, warn):
        """Combine the columns of `X` that name one gene (per `duplicates`); return ``(X, keys)``."""
        keys = np.array([self._key(name) for name in names], dtype=object)
        if len(set(keys.tolist())) == len(keys):
            return X, keys
        collapsed, unique_keys, _ = _collapse_columns(X, keys, self.duplicates)
        if warn:
            counts = {}
            for key in keys.tolist():
                counts[key] = counts.get(key, 0) + 1
            n_genes = sum(c > 1 for c in counts.values())
            examples = [str(name) for name, key in zip(names, keys) if counts[key] > 1][:4]
            action = "summed" if self.duplicates == "sum" else "averaged"
            warnings.warn(
                f"X names {n_genes} gene(s) on several columns ({len(keys) - len(unique_keys)} extra column(s), "
                f"e.g. {examples}): the columns of each are {action} (duplicates={self.duplicates!r}).",
                UserWarning,
                stacklevel=4,
            )
        return collapsed, unique_keys

    def _align(self, X, names, *, warn=True):
        """Map the columns of `X` (named `names`) onto ``genes_``."""
        X, keys = self._collapse(X, names, warn)
        position = {key: j for j, key in enumerate(keys)}
        src = np.array([position.get(self._key(g), -1) for g in self.genes_], dtype=np.intp)
        present = src >= 0
        n_missing = int((~present).sum())
        if n_missing == len(self.genes_):
            raise ValueError(
                f"None of the {len(self.genes_)} target genes of "
                f"{self.__class__.__name__} is among the {len(names)} columns "
                f"of X (first target genes: {list(self.genes_[:3])}, first "
                f"columns of X: {list(names[:3])}). {self._no_match_hint(names)}"
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

    def _no_match_hint(self, names):
        """Why nothing may have matched: one side Ensembl ids and the other symbols, or versioned ids."""
        ensembl_target = np.mean([bool(_ENSEMBL_VERSIONED.match(str(g).strip())) for g in self.genes_]) > 0.5
        ensembl_x = np.mean([bool(_ENSEMBL_VERSIONED.match(str(g).strip())) for g in names]) > 0.5
        if ensembl_target != ensembl_x:
            return (
                "One side names genes by Ensembl id and the other by symbol: map one to the other first "
                "(e.g. with the compendium's meta/genes table; read_archs4(..., gene_id='ensembl'))."
            )
        if self.match_ids == "exact":
            return "If the names differ by Ensembl version suffix or case, pass match_ids='normalized'."
        return ""

    def _frame_names(self, X):
        try:
            names = get_feature_names(X)
        except ValueError:
            # scikit-learn (through narwhals) refuses repeated column names, which duplicates="sum" / "mean" exists
            # to combine: take them from the frame itself.
            columns = list(getattr(X, "columns", ()))
            if not columns or not all(isinstance(c, str) for c in columns):
                raise
            names = np.asarray(columns, dtype=object)
        if names is not None:
            self._as_gene_array(names, "The columns of X", allow_duplicates=self.duplicates != "raise")
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
        repeated = names is not None and len(set(names.tolist())) < len(names)
        # scikit-learn refuses a DataFrame whose column names repeat: validate its values, keep its names.
        X = validate_data(
            self, np.asarray(X) if repeated else X, dtype=FLOAT_DTYPES, ensure_all_finite="allow-nan", reset=True
        )
        if repeated:
            self.feature_names_in_ = np.asarray(names, dtype=object)
        if self.genes is None:
            self.genes_ = self._target_from_columns(check_feature_names_in(self))
        else:
            self.genes_ = self._as_gene_array(self.genes, "genes")
            if self.match_ids == "normalized":
                self.genes_ = np.array([_display_id(g) for g in self.genes_], dtype=object)
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
            name_keys = {self._key(name) for name in names}
            present = np.array([self._key(g) in name_keys for g in self.genes_], dtype=bool)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN genes
                means = np.nanmean(aligned[:, present], axis=0)
            self.fill_values_[present] = np.nan_to_num(means, nan=0.0)
        else:
            self.fill_values_ = np.full(len(self.genes_), float(self.fill_value))
            self._align(X, names, warn=True)  # validates the overlap
        return self

    def _target_from_columns(self, names):
        """The target genes when none are given: the columns of the reference, each gene once."""
        if self.match_ids == "exact" and self.duplicates == "raise":
            return names
        display = [_display_id(n) if self.match_ids == "normalized" else n for n in names]
        seen, target = set(), []
        for name in display:
            key = self._key(name)
            if key not in seen:
                seen.add(key)
                target.append(name)
        return np.array(target, dtype=object)

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
            np.asarray(X) if names is not None and len(set(names.tolist())) < len(names) else X,
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
