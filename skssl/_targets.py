"""The label conventions of the semi-supervised estimators: which rows are labeled, and how their targets are encoded.

One mixin per task, shared by the estimators that read a partly labeled ``y``: :class:`ClassificationTargets`
(``-1``, ``None`` or NaN marks an unlabeled row) for ``SSLClassifier`` and ``SemiSupervisedEnsembleClassifier``,
:class:`RegressionTargets` (NaN) for ``SSLRegressor`` and ``SemiSupervisedEnsembleRegressor``. The common checks of
``fit(X, y)`` (``y`` given, as many labels as rows, at least 2 labeled rows) are
:meth:`SemiSupervisedTargets._labeled_fit_data`.
"""

from __future__ import annotations

import numbers
import warnings
from typing import NamedTuple

import numpy as np
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_consistent_length, column_or_1d

from . import _input_checks, _validation


class TargetEncoding(NamedTuple):
    """The labeled targets as the members and the network read them, and the fitted attributes that decode them."""

    encoded: np.ndarray  # int64 class indices, or float32 standardised targets (the dtype the loss reads)
    strata: np.ndarray | None  # what a stratified split of the labeled rows stratifies on (None: not stratified)
    class_weight: np.ndarray | None  # float32 weight of each class, or None
    attributes: dict  # classes_, or y_mean_ and y_scale_


class SemiSupervisedTargets:
    """What every estimator that reads a partly labeled ``y`` does with it; a task mixin below fills in
    ``_labeled_mask`` and ``_encode_targets``."""

    def _labeled_mask(self, y):
        """Boolean mask of the labeled rows of a 1-D ``y``."""
        raise NotImplementedError

    def _encode_targets(self, y_labeled):
        """Validate the labeled targets; return their :class:`TargetEncoding` (nothing is set on the estimator)."""
        raise NotImplementedError

    def _labeled_fit_data(self, X, y):
        """``fit``'s checks of ``X`` and ``y``: the validated ``X`` (``n_features_in_`` and ``feature_names_in_``
        set), the indices of the labeled rows and their :class:`TargetEncoding`."""
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None.")
        X = _validation.validate_X(self, X, reset=True)
        y = column_or_1d(y, warn=True)
        check_consistent_length(X, y)
        rows = np.flatnonzero(self._labeled_mask(y))
        if len(rows) < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 labeled samples, got {len(rows)} sample(s) with a label "
                f"among {len(y)}."
            )
        return X, rows, self._encode_targets(y[rows])


def _check_label_spellings(classes, counts):
    """Refuse string classes that differ only in surrounding/inner whitespace or in case ("cancer" and "cancer "):
    a typo in a sample sheet, which would otherwise become a class of its own."""
    groups, count_of = {}, dict(zip(classes.tolist(), counts.tolist()))
    for label in classes.tolist():
        if isinstance(label, str):
            key = " ".join(label.split())
            # Case only for words: genotype calls ("AA", "Aa", "aa") are distinct classes that differ in case alone.
            if len(key) >= 3:
                key = key.casefold()
            groups.setdefault(key, []).append(label)
    clashes = [spellings for spellings in groups.values() if len(spellings) > 1]
    if not clashes:
        return
    shown = "; ".join(
        " and ".join(f"{s!r} ({count_of[s]} sample{'s' if count_of[s] > 1 else ''})" for s in spellings)
        for spellings in clashes[:3]
    )
    raise ValueError(
        f"y has class labels that differ only in whitespace or case: {shown}. Each spelling would be fitted as a "
        "class of its own. Clean the labels first, e.g. y = pd.Series(y).str.strip() (and .str.lower() when case "
        "carries no meaning), or np.char.strip(y.astype(str))."
    )


def _is_missing_label(value):
    if value is None or type(value).__name__ == "NAType":
        return True
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return bool(np.isnan(value)) or value == -1  # NaN, or scikit-learn's -1
    return False


class ClassificationTargets(SemiSupervisedTargets):
    """Class labels: ``-1``, or a missing value (``None``, NaN) in an object or float array, marks an unlabeled row;
    the labeled rows' classes are encoded as indices into ``classes_``, weighted by ``class_weight``."""

    def _labeled_mask(self, y):
        if y.dtype.kind in "iu":
            return y != -1
        if y.dtype.kind == "f":
            return ~(np.isnan(y) | (y == -1))
        if y.dtype.kind in "USO":
            # "-1" as a string is a class name, not the unlabeled marker (the int -1 is): say so, it is an easy slip.
            n_minus_one = sum(isinstance(v, (str, np.str_)) and v == "-1" for v in y.tolist())
            if n_minus_one:
                warnings.warn(
                    f'y contains the string "-1" ({n_minus_one} sample(s)): in a string label array "-1" is a class '
                    'name, not the unlabeled marker, so those samples are fitted as a class "-1". To mark samples as '
                    "unlabeled, use an object array with -1 or None for them (e.g. np.array(['a', -1, 'b'], "
                    "dtype=object)) or a pandas Series with missing values (pd.Series(labels).where(labeled)).",
                    UserWarning,
                    stacklevel=_input_checks.user_stacklevel(),
                )
        if y.dtype.kind == "O":
            return ~np.fromiter((_is_missing_label(v) for v in y), dtype=bool, count=len(y))
        return np.ones(len(y), dtype=bool)  # strings and booleans have no unlabeled marker

    def _encode_targets(self, y_labeled):
        if y_labeled.dtype.kind == "f" and not np.isfinite(y_labeled).all():
            raise ValueError("Input y contains infinity or a value too large for dtype('float64').")
        if y_labeled.dtype.kind == "O" and all(
            isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)) for v in y_labeled.tolist()
        ):
            # Integer classes in an object array (None marking the unlabeled rows): the labeled rows are integers.
            y_labeled = y_labeled.astype(np.int64)
        check_classification_targets(y_labeled)
        classes, encoded = np.unique(y_labeled, return_inverse=True)
        _check_label_spellings(classes, np.bincount(encoded, minlength=len(classes)))
        if len(classes) < 2:
            raise ValueError(
                f"{type(self).__name__} needs labeled samples of at least 2 classes; got 1 class ({classes[0]!r})."
            )
        weights = None
        if self.class_weight is not None:
            # float32, as the loss uses them (the ensemble and the probe read the same rounded values).
            weights = compute_class_weight(self.class_weight, classes=classes, y=y_labeled).astype(np.float32)
        return TargetEncoding(encoded.astype(np.int64), encoded, weights, {"classes_": classes})


class RegressionTargets(SemiSupervisedTargets):
    """A continuous target: NaN marks an unlabeled row; the labeled targets are standardised (``y_mean_``,
    ``y_scale_``)."""

    def _labeled_mask(self, y):
        try:
            y = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{type(self).__name__} needs a numeric target y; got dtype {y.dtype}.") from exc
        return ~np.isnan(y)

    def _encode_targets(self, y_labeled):
        y_labeled = np.asarray(y_labeled, dtype=np.float64)
        if not np.isfinite(y_labeled).all():
            raise ValueError("Input y contains infinity or a value too large for dtype('float64').")
        mean, scale = float(y_labeled.mean()), float(y_labeled.std())
        scale = scale if scale > 0 else 1.0
        encoded = ((y_labeled - mean) / scale).astype(np.float32)
        return TargetEncoding(encoded, None, None, {"y_mean_": mean, "y_scale_": scale})
