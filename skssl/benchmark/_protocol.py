"""The label-efficiency protocol: splits, one run per (seed, method, labeled fraction), metrics.

The methods themselves are objects of :data:`skssl.benchmark._methods.METHODS`, found by name.

Leakage rule, enforced by construction: for each seed the test indices are computed first, then the train and test
blocks are copied out of ``X`` (``X_train = X[train]``, ``X_test = X[test]``). Every ``fit`` here and in the methods
(:mod:`._methods`, which get a :class:`~._methods.Run`) receives ``X_train`` or a row subset of it; ``X_test`` only
ever reaches ``transform`` / ``predict`` / ``predict_proba``.
"""

from __future__ import annotations

import math
import sys
import time
from numbers import Integral, Real

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import train_test_split

from ..preprocessing import HighlyVariableGenes
from ._methods import DEFAULT_METHODS, METHODS, Run, pretrain

#: Parameters of every self-supervised embedder (and of the from-scratch MLP's encoder) unless overridden by
#: ``embedder_params``: none, so the benchmark measures the estimators exactly as users get them by default.
DEFAULT_EMBEDDER_PARAMS = {}

#: Parameters of every fine-tuning ``SSLClassifier`` (``mlp_scratch`` and the ``*_finetune`` methods, which run
#: ``strategy="finetune"``) unless overridden by ``classifier_params``. ``ssl_ensemble`` always runs
#: ``SSLClassifier()``'s defaults.
DEFAULT_CLASSIFIER_PARAMS = {}

#: The metrics of every run (ROC-AUC is NaN where it is undefined).
METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc")

#: Columns of the results table, in order.
RESULT_COLUMNS = (
    "dataset",
    "method",
    "seed",
    "fraction",
    "n_labeled",
    "n_train",
    "n_test",
    "n_features",
    *METRICS,
    "fit_seconds",
    "pretrain_seconds",
)


# ---------------------------------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------------------------------


def resolve_method_names(methods, available, default, noun="method"):
    """Resolve ``methods`` ("default", "all", a comma-separated str or a list of names, which may include "default"
    and "all") to a tuple of distinct names of ``available`` (a dict by name), in the order given."""
    if methods is None or (isinstance(methods, str) and methods == "default"):
        return tuple(default)
    if isinstance(methods, str):
        methods = ["all"] if methods == "all" else [m.strip() for m in methods.split(",") if m.strip()]
    resolved = []
    for name in methods:
        expanded = available if name == "all" else default if name == "default" else (name,)
        for method in expanded:
            if method not in available:
                raise ValueError(
                    f"Unknown {noun} {method!r}. Available {noun}s: {', '.join(available)} (or 'default', 'all')."
                )
            if method not in resolved:
                resolved.append(method)
    if not resolved:
        raise ValueError(f"No {noun} given. Available {noun}s: {', '.join(available)}.")
    return tuple(resolved)


def check_methods(methods):
    """Resolve ``methods`` ("default", "all", a name or a list of names) to a tuple of known method names."""
    return resolve_method_names(methods, METHODS, DEFAULT_METHODS)


def check_fractions(fractions):
    """Sorted, de-duplicated labeled fractions, each in (0, 1]."""
    if isinstance(fractions, Real):
        fractions = [fractions]
    out = []
    for f in fractions:
        if isinstance(f, bool) or not isinstance(f, Real) or not math.isfinite(f) or not 0 < f <= 1:
            raise ValueError(f"Labeled fractions must be numbers in (0, 1]; got {f!r}.")
        out.append(float(f))
    if not out:
        raise ValueError("At least one labeled fraction is needed.")
    return tuple(sorted(set(out)))


def check_seeds(seeds):
    """An int ``n`` means seeds ``0 .. n-1``; otherwise a sequence of distinct non-negative ints."""
    if isinstance(seeds, Integral) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"seeds={seeds} must be a positive number of seeds or a list of seeds.")
        return tuple(range(int(seeds)))
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, Integral) or s < 0:
            raise ValueError(f"Seeds must be non-negative integers; got {s!r}.")
        if int(s) not in out:
            out.append(int(s))
    if not out:
        raise ValueError("At least one seed is needed.")
    return tuple(out)


def _check_params(params, name):
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise TypeError(f"{name} must be a dict of estimator parameters or None; got {type(params).__name__}.")
    return dict(params)


def encode_labels(y):
    """Class names (sorted) and integer codes of ``y``; raises on missing labels or a single class."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D; got shape {y.shape}.")
    if y.dtype.kind == "f" and np.isnan(y).any():
        raise ValueError("y contains missing labels (NaN); drop those samples first.")
    if y.dtype.kind == "O" and any(v is None or (isinstance(v, float) and math.isnan(v)) for v in y):
        raise ValueError("y contains missing labels (None/NaN); drop those samples first.")
    classes, codes = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"The labels have {len(classes)} class(es); at least 2 are needed.")
    return classes, codes.astype(np.int64)


# ---------------------------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------------------------


def _check_stratifiable(classes, codes, test_size):
    if isinstance(test_size, bool) or not isinstance(test_size, Real) or not 0 < test_size < 1:
        raise ValueError(f"test_size must be a fraction in (0, 1); got {test_size!r}.")
    counts = np.bincount(codes, minlength=len(classes))
    too_few = [f"{_plain(c)!r} ({n} sample)" for c, n in zip(classes, counts) if n < 2]
    if too_few:
        raise ValueError(
            "Too few samples per class for a stratified train/test split: every class needs at least 2 samples "
            f"(one for train, one for test); these classes have fewer: {', '.join(too_few)}. Drop or merge them."
        )
    n = len(codes)
    n_test = math.ceil(test_size * n)
    if n_test < len(classes) or n - n_test < len(classes):
        raise ValueError(
            f"Too few samples for a stratified split with test_size={test_size}: {n} samples, {len(classes)} "
            "classes; the train and test splits each need at least one sample per class."
        )
    return n_test


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def train_test_indices(y, *, test_size=0.25, random_state=0):
    """Stratified train / test split of the sample indices: the first thing the protocol computes for a seed.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class labels.
    test_size : float in (0, 1), default=0.25
        Fraction of the samples in the test split (rounded up).
    random_state : int, default=0
        The seed.

    Returns
    -------
    train, test : ndarray of int
        Sorted indices of the train and test samples; every class is in both.

    Examples
    --------
    >>> from skssl.benchmark import train_test_indices
    >>> train, test = train_test_indices([0, 0, 0, 0, 1, 1, 1, 1], test_size=0.25, random_state=0)
    >>> len(train), len(test)
    (6, 2)
    """
    classes, codes = encode_labels(y)
    n_test = _check_stratifiable(classes, codes, test_size)
    train, test = train_test_split(np.arange(len(codes)), test_size=n_test, stratify=codes, random_state=random_state)
    return np.sort(train), np.sort(test)


def labeled_subsets(y_train, fractions, *, random_state=0):
    """Nested, stratified labeled subsets of the train split, one per fraction, each with >= 1 sample per class.

    Class ``c`` contributes ``max(1, round(fraction * n_c))`` samples, the first of one random permutation per
    class, so the subset of a smaller fraction is contained in that of a larger one.

    Parameters
    ----------
    y_train : array-like of shape (n_train,)
        Class labels of the train split.
    fractions : sequence of float in (0, 1]
        Labeled fractions.
    random_state : int, default=0
        The seed.

    Returns
    -------
    subsets : dict of float to ndarray of int
        Fraction -> sorted positions (in the train split) of its labeled samples.

    Examples
    --------
    >>> from skssl.benchmark import labeled_subsets
    >>> y_train = [0] * 10 + [1] * 10
    >>> subsets = labeled_subsets(y_train, [0.1, 0.5], random_state=0)
    >>> [len(subsets[f]) for f in (0.1, 0.5)]
    [2, 10]
    >>> set(subsets[0.1]) <= set(subsets[0.5])
    True
    """
    rng = np.random.RandomState(random_state)
    y_train = np.asarray(y_train)
    orders = {c: rng.permutation(np.flatnonzero(y_train == c)) for c in np.unique(y_train)}
    subsets = {}
    for fraction in fractions:
        picked = [order[: max(1, round(fraction * len(order)))] for order in orders.values()]
        subsets[fraction] = np.sort(np.concatenate(picked))
    return subsets


# ---------------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------------


def score(y_true, y_pred, proba, n_classes):
    """Accuracy, balanced accuracy, macro-F1 and ROC-AUC (one-vs-rest macro average; NaN where undefined)."""
    labels = np.arange(n_classes)
    out = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "f1_macro": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "roc_auc": math.nan,
    }
    if proba is not None and len(np.unique(y_true)) == n_classes:
        try:
            if n_classes == 2:
                out["roc_auc"] = float(roc_auc_score(y_true, proba[:, 1]))
            else:
                out["roc_auc"] = float(roc_auc_score(y_true, proba, multi_class="ovr", labels=labels))
        except ValueError:
            pass
    return out


# ---------------------------------------------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------------------------------------------


class _Progress:
    """One carriage-returned stderr line: ``[12/60] scarf_probe frac=0.10 seed=1``."""

    def __init__(self, total, enabled, stream=None):
        self.total, self.enabled, self.done, self.width = total, enabled, 0, 0
        self.stream = stream if stream is not None else sys.stderr

    def show(self, text):
        if not self.enabled:
            return
        line = f"[{self.done}/{self.total}] {text}"
        self.stream.write("\r" + line.ljust(self.width))
        self.stream.flush()
        self.width = max(self.width, len(line))

    def step(self):
        self.done += 1

    def close(self):
        if self.enabled:
            self.show("done")
            self.stream.write("\n")
            self.stream.flush()


# ---------------------------------------------------------------------------------------------------------------
# The protocol
# ---------------------------------------------------------------------------------------------------------------


def _as_dense_float32(X):
    if hasattr(X, "toarray"):
        X = X.toarray()
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (samples x genes); got shape {X.shape}.")
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or infinite values; impute or drop them before benchmarking.")
    return X


def run_protocol(
    X,
    y,
    *,
    methods,
    fractions,
    seeds,
    test_size,
    top_genes,
    embedder_params,
    classifier_params,
    device,
    dataset,
    progress,
    callback,
    skip=frozenset(),
):
    """The loops behind :func:`label_efficiency`; returns a list of result dicts (see ``RESULT_COLUMNS``).

    ``skip``: keys ``(seed, method, fraction)`` of runs already finished (``skssl-benchmark --resume``), left out
    of the result. Every run draws its randomness from its seed alone, so skipping some changes no other.
    """
    X = _as_dense_float32(X)
    classes, codes = encode_labels(y)
    if X.shape[0] != len(codes):
        raise ValueError(f"X has {X.shape[0]} samples but y has {len(codes)} labels.")
    n_classes = len(classes)
    _check_stratifiable(classes, codes, test_size)  # fail early, naming the classes as the user knows them
    emb_params = {**DEFAULT_EMBEDDER_PARAMS, **embedder_params}
    clf_params = {**DEFAULT_CLASSIFIER_PARAMS, **classifier_params}
    bar = _Progress(len(seeds) * len(methods) * len(fractions), progress)
    keys = [(seed, name, fraction) for seed in seeds for name in methods for fraction in fractions]
    bar.done = sum(key in skip for key in keys)
    records = []
    try:
        for seed in seeds:
            if all((seed, name, fraction) in skip for name in methods for fraction in fractions):
                continue
            # 1. The test split, first; from here on only X_train reaches any fit.
            train, test = train_test_indices(codes, test_size=test_size, random_state=seed)
            X_train, X_test = X[train].copy(), X[test].copy()
            y_train, y_test = codes[train], codes[test]
            hvg = None
            if top_genes is not None and top_genes < X.shape[1]:
                hvg = HighlyVariableGenes(n_top_genes=top_genes).fit(X_train)
                X_train, X_test = hvg.transform(X_train), hvg.transform(X_test)
            subsets = labeled_subsets(y_train, fractions, random_state=seed)
            pretrained = {}  # shared unsupervised parts of this seed: fitted once on X_train, reused per fraction
            for name in methods:
                method = METHODS[name]
                for fraction in fractions:
                    if (seed, name, fraction) in skip:
                        continue
                    bar.show(f"{name} frac={fraction:.2f} seed={seed}")
                    lab = subsets[fraction]
                    pre, pre_model, pre_seconds = None, None, math.nan
                    key = method.pretrained
                    if key is not None:
                        if key not in pretrained:
                            bar.show(f"{name} frac={fraction:.2f} seed={seed} (pre-training {key})")
                            start = time.perf_counter()
                            fitted = pretrain(key, X_train, seed=seed, device=device, embedder_params=emb_params)
                            pretrained[key] = (fitted, time.perf_counter() - start)
                        pre, pre_seconds = pretrained[key]
                        pre_model = pre[0]
                    run = Run(X_train, y_train, lab, X_test, seed, device, emb_params, clf_params)
                    start = time.perf_counter()
                    model, pred, proba = method.fit_predict(run, pre)
                    fit_seconds = time.perf_counter() - start
                    record = {
                        "dataset": dataset,
                        "method": name,
                        "seed": seed,
                        "fraction": fraction,
                        "n_labeled": len(lab),
                        "n_train": len(train),
                        "n_test": len(test),
                        "n_features": X_train.shape[1],
                        **score(y_test, pred, proba, n_classes),
                        "fit_seconds": fit_seconds,
                        "pretrain_seconds": pre_seconds,
                    }
                    records.append(record)
                    if callback is not None:
                        callback(
                            {
                                "record": dict(record),
                                "estimator": model,
                                "pretrained": pre_model,
                                "gene_filter": hvg,
                                "X_train": X_train,
                                "train_index": train,
                                "test_index": test,
                                "labeled_index": train[lab],
                                "classes": classes,
                            }
                        )
                    bar.step()
    finally:
        bar.close()
    return records
