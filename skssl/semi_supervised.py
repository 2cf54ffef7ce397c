"""The semi-supervised ensemble as estimators of its own: every sample shapes the members, the labeled ones train them.

:class:`SemiSupervisedEnsembleClassifier` and :class:`SemiSupervisedEnsembleRegressor` are the default strategy of
:class:`~skssl.SSLClassifier` and :class:`~skssl.SSLRegressor` (``strategy="ensemble"``, which fit one of them and
keep it as ``ensemble_``), without the torch training parameters that only ``strategy="finetune"`` reads: members
fitted on views of all rows (:mod:`skssl._ensemble`: linear models on the standardised genes and on the whitened top
principal components, label spreading over a nearest-neighbour graph, and a linear model on a self-supervised
embedding when an embedder is given), averaged with weights chosen on held-out predictions of the labeled rows.
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.frozen import FrozenEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, column_or_1d

from . import _ensemble, _input_checks, _validation
from ._base import BaseSSLEstimator
from ._compat import DocLinkMixin, StrOptions, fit_context
from ._fit_state import previous_state_on_error
from ._pretraining import EmbedderUser
from ._targets import ClassificationTargets, RegressionTargets

__all__ = ["SemiSupervisedEnsembleClassifier", "SemiSupervisedEnsembleRegressor"]

#: How the FitInterruptedWarning of an ensemble fit whose embedder's pre-training Ctrl-C cut short goes on.
PRETRAINING_INTERRUPTED = "The ensemble was fitted on the embedding of the embedder as it stood."

# Descriptions shared with SSLClassifier / SSLRegressor (skssl/_supervised_base.py), which hand these parameters to
# the ensemble they fit.
MEMBERS_PARAMETER = """members : tuple of str or None, default=None
        Members of the ensemble, among ``"genes"`` (linear model on the standardised genes), ``"pcs"`` (linear
        model on the 8 whitened top principal components of all rows), ``"graph"`` (label spreading over the
        10-nearest-neighbour graph of all rows in the space of their 10 top principal components) and
        ``"embedding"`` (linear model on the embedding of ``embedder``, pre-trained on all rows, or prefit). None:
        ``("genes", "pcs", "graph")``, plus ``"embedding"`` when ``embedder`` is given and pre-trained here on
        ``X``; ``("embedding",)`` alone when the embedder is prefit (``prefit=True`` or a ``FrozenEstimator``:
        pre-trained elsewhere, e.g. on a pool of other studies), whose embedding the cohort-only members would
        dilute when labels are few. The linear model standardises the embedding with all rows of ``X``, so a new
        study's offset is removed. Pass the four names to combine a prefit embedding with the others."""

# At the indentation of a class description; a parameter's description indents it further.
DENSE_MEMORY = """The ensemble reads ``X`` (in batches) into one dense float32 array of
    ``4 * n_samples * n_features`` bytes, sparse or not: its members standardise every gene, which turns a sparse
    matrix's zeros into non-zero values, and take principal components of all rows, so a sparse copy would save
    nothing."""

WEIGHTS_DESCRIPTION = """Each member's weight in the average (they sum to 1). Uniform when the labels are too few to
        judge the members (fewer than 3 per class, or 10 labeled rows for regression); otherwise from greedy
        ensemble selection on leave-one-out (up to 40 labeled rows) or 5-fold held-out predictions."""

_ENSEMBLE_PARAMETERS = """\
embedder : ContrastiveEmbedder, MaskedAutoencoder, VAEEmbedder or FrozenEstimator, default=None
        The self-supervised model of the ``"embedding"`` member, trained with its own parameters (its
        ``random_state`` and ``verbose`` follow this estimator's when they are None and 0). None: no embedding
        member (``MaskedAutoencoder()`` if ``members`` names ``"embedding"``). It is cloned (or, if prefit,
        copied), never changed.
    {members}
    prefit : bool, default=False
        Whether ``embedder`` is already fitted (as in ``SelectFromModel(prefit=True)``): it is then used as is, not
        refitted, and a copy is stored as ``embedder_``. As ``clone`` (cross-validation, grid search) unfits a
        nested estimator, pass ``embedder=FrozenEstimator(fitted_embedder)`` there instead
        (``sklearn.frozen.FrozenEstimator``): a frozen embedder counts as prefit."""

_SEED_AND_VERBOSE = """random_state : int, RandomState instance or None, default=None
        Seeds the members (principal components, linear models, the folds of the held-out predictions) and, when
        the embedder's own ``random_state`` is None, its pre-training: one seed makes the whole fit reproducible on
        CPU.
    verbose : int, default=0
        With 1 or more, the end of ``fit`` prints two lines on stderr: the members, the samples and labels they
        were fitted on and the wall time, then each member's weight and how the weights were chosen. Also applies
        to the embedder's pre-training (its epochs on stdout) when the embedder's ``verbose`` is 0."""

_COMMON_ATTRIBUTES = """embedder_ : estimator or None
        The fitted embedder of the ``"embedding"`` member (a fitted clone of ``embedder``, or a copy of it when
        prefit); None without that member.
    members_ : tuple of str
        The members used.
    weights_ : dict of str to float
        {weights}
    held_out_loss_ : dict of str to float or None
        Each member's held-out log-loss (classification) or squared error of the standardised target
        (regression), from which ``weights_`` were chosen; None when the weights are uniform.
    ensemble_ : object
        The fitted members, the gene standardisation and principal components they read, and their weights
        (``ensemble_.members_``: name to fitted member); internal, read by :mod:`skssl.inspection`.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during ``fit`` (only when X has string column names)."""


def _fit_reporting(estimator, X, y):
    """``estimator._fit(X, y)``, checking X once for the whole fit (a nested pre-training does not repeat the
    warnings), then, with ``verbose`` and the ensemble, what was fitted on stderr (the fine-tuning strategy reports
    its epochs itself)."""
    start = time.perf_counter()
    with _input_checks.input_checks_by(estimator):
        estimator._fit(X, y)
    if estimator.verbose and getattr(estimator, "strategy", "ensemble") == "ensemble":
        print(_ensemble_summary(estimator, y, time.perf_counter() - start), file=sys.stderr, flush=True)
    return estimator


def _ensemble_summary(estimator, y, seconds):
    """Two lines: the members and the data they were fitted on, then their weights and how they were chosen."""
    name = type(estimator).__name__
    with warnings.catch_warnings():  # the mask's own warnings were issued by the fit
        warnings.simplefilter("ignore")
        n_labeled = int(np.count_nonzero(estimator._labeled_mask(column_or_1d(y))))
    what = f"{len(estimator.classes_)} classes" if hasattr(estimator, "classes_") else "continuous target"
    members = ", ".join(estimator.members_)
    n_samples = len(column_or_1d(y))
    held_out = getattr(estimator.ensemble_, "held_out_loss_", None)
    if len(estimator.members_) == 1:
        how = "a single member"
    elif held_out is None:
        how = "uniform (too few labels to judge the members on held-out rows)"
    else:
        scheme = "leave-one-out" if n_labeled <= _ensemble.LEAVE_ONE_OUT_MAX else "5-fold"
        how = f"chosen on {scheme} held-out predictions of the labeled samples"
    weights = ", ".join(f"{member} {weight:.2f}" for member, weight in estimator.weights_.items())
    return (
        f"[{name}] ensemble of {members} fitted on {n_samples} samples x {estimator.n_features_in_} genes "
        f"({n_labeled} labeled, {what}) in {seconds:.2f} s\n[{name}] weights {weights}: {how}"
    )


class _BaseSemiSupervisedEnsemble(EmbedderUser, DocLinkMixin, BaseEstimator):
    """What the ensemble classifier and regressor share; not for direct use. A task mixin
    (:mod:`skssl._targets`) gives the label convention, ``_task`` the members' task."""

    _parameter_constraints: dict = {
        "embedder": [BaseSSLEstimator, FrozenEstimator, None],
        "members": [tuple, list, None],
        "prefit": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }
    # Every fitted attribute, as the docstrings' Attributes sections list them (the task's own, classes_ or
    # y_mean_ / y_scale_, added by each class): what save_model writes and load_model accepts.
    _fitted_attributes = (
        "embedder_",
        "members_",
        "weights_",
        "held_out_loss_",
        "ensemble_",
        "n_features_in_",
        "feature_names_in_",
    )
    _task = None

    def _resolved_members(self):
        if self.members is None:
            # Without an embedder, the members the leave-one-dataset-out selection kept (docs/benchmarks.md) need
            # no pre-training at all; an embedder pre-trained here on X joins them. A prefit embedder was trained
            # elsewhere (a pool of other studies): with few labels the uniform average dragged its embedding down
            # to the cohort-only members, below logistic regression on the embedding at 1-20 % of the labels
            # (benchmarks/transfer_prefit_selection.py, on a compendium the shipped transfer run does not use),
            # so it stands alone.
            if self.embedder is None:
                return _ensemble.DEFAULT_MEMBERS
            return _ensemble.PREFIT_MEMBERS if self._uses_prefit() else _ensemble.DEFAULT_MEMBERS + ("embedding",)
        members = tuple(self.members)
        unknown = [m for m in members if m not in _ensemble.MEMBERS]
        if not members or unknown or len(set(members)) != len(members):
            raise ValueError(
                f"members must be a non-empty sequence of distinct names among {_ensemble.MEMBERS} (or None for the "
                f"default); got {self.members!r}."
            )
        return members

    def _fit(self, X, y):
        # A fit that does not finish (Ctrl-C at any point, or an error) leaves the previous fitted state, or an
        # unfitted estimator; a FitInterruptedWarning is issued once the new state is complete.
        with previous_state_on_error(self):
            self._check_embedder()
            X, rows, encoding = self._labeled_fit_data(X, y)
            interruption = self._fit_labeled(X, rows, encoding)
        if interruption is not None:
            # The members have no training loop (seconds): fitting them makes the estimator usable.
            self._warn_pretraining_interrupted(interruption, PRETRAINING_INTERRUPTED)
        return self

    def _fit_labeled(self, X, rows, encoding, *, caller=None, device="auto"):
        """Fit on a validated ``X`` whose labeled rows are ``rows``, with their targets encoded as ``encoding``
        (a :class:`~skssl._targets.TargetEncoding`); return the held-back FitInterruptedWarning of an interrupted
        pre-training (None otherwise), for the caller to issue.

        The entry point of ``SSLClassifier`` / ``SSLRegressor``, which validated ``X`` and ``y`` already (its
        warnings issued once): ``caller`` is that estimator, whose ``n_features_in_`` / ``feature_names_in_`` this
        one takes and whose name labels the pre-training's progress; ``device`` is where an embedder whose own
        ``device`` is "auto" pre-trains.
        """
        if caller is not None:
            self.n_features_in_ = caller.n_features_in_
            if hasattr(caller, "feature_names_in_"):
                self.feature_names_in_ = caller.feature_names_in_
        self.__dict__.update(encoding.attributes)  # classes_ (or y_mean_, y_scale_): the members are sized by them
        members = self._resolved_members()
        rng = check_random_state(self.random_state)
        embedder_seed, seed = (int(s) for s in rng.randint(np.iinfo(np.int32).max, size=2))
        self.embedder_, embedding, interruption = None, None, None
        if "embedding" in members:
            name = None if caller is None else type(caller).__name__
            self.embedder_, interruption = self._pretrained_embedder(X, embedder_seed, device=device, caller=name)
            embedding = self._embed(X)
        n_classes = len(self.classes_) if self._task == "classification" else None
        class_weight = None if encoding.class_weight is None else encoding.class_weight.astype(np.float64)
        self.ensemble_ = _ensemble.WeightedMembers(self._task, members, n_classes, seed, class_weight)
        # The labeled rows and their targets only: the members never see a placeholder for an unlabeled row.
        self.ensemble_.fit(_ensemble.dense_rows(X), rows, encoding.encoded, embedding)
        self.members_ = members
        self.weights_ = dict(self.ensemble_.weights_)
        self.held_out_loss_ = self.ensemble_.held_out_loss_
        return interruption

    def _ensemble_outputs(self, X):
        """Weighted member average of ``X``: class probabilities, or standardised predictions."""
        check_is_fitted(self)
        return self._validated_outputs(_validation.validate_X(self, X, reset=False))

    def _validated_outputs(self, X):
        """:meth:`_ensemble_outputs` of an ``X`` already validated (by this estimator, or by the SSLClassifier or
        SSLRegressor that fitted it)."""
        embedding = self._embed(X) if "embedding" in self.members_ else None
        return self.ensemble_.predict(_ensemble.dense_rows(X), embedding)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # accepted, and densified (see the class docstring)
        return tags


class SemiSupervisedEnsembleClassifier(ClassifierMixin, ClassificationTargets, _BaseSemiSupervisedEnsemble):
    __doc__ = f"""Semi-supervised ensemble classifier: every sample shapes the members, the labeled ones train them.

    The default strategy of :class:`~skssl.SSLClassifier`, as an estimator of its own, without the torch
    training parameters of fine-tuning. Members read views of all rows of ``X`` (labeled and unlabeled) and are
    trained on the labeled rows: a logistic regression on the standardised genes (the linear baseline, so the
    ensemble contains what it must beat), a logistic regression on the whitened top principal components of all
    rows (a low-rank view that needs few labels), label spreading over a nearest-neighbour graph of all rows (Zhou
    et al., 2004: labels flow to similar unlabeled samples) and, when ``embedder`` is given, a logistic regression
    on its self-supervised embedding pre-trained on all rows. Their class probabilities are averaged: uniformly
    when fewer than 3 samples per class are labeled, otherwise with weights chosen by greedy ensemble selection
    (Caruana et al., 2004) on held-out predictions of the labeled rows. The unlabeled rows change the model
    (principal components, scaling, graph, embedding); their labels are never read. These defaults were chosen by
    leave-one-dataset-out over four cohorts; their measured scores are in ``docs/benchmarks.md``.

    ``fit(X, y)`` follows scikit-learn's semi-supervised convention: rows whose label is ``-1`` are unlabeled (as in
    :class:`~sklearn.semi_supervised.SelfTrainingClassifier`), as are missing values (``None`` or NaN). String
    labels cannot hold ``-1`` in a string array: pass an object array (``np.array(["tumour", -1, "normal"],
    dtype=object)``) or a pandas Series with missing values (e.g. ``labels.where(is_labeled)``).

    Sparse input is accepted, not kept sparse. {DENSE_MEMORY}

    ``SSLClassifier(random_state=s)`` fits this estimator with the same seed and predicts exactly as
    ``SemiSupervisedEnsembleClassifier(random_state=s)`` does.

    Parameters
    ----------
    {_ENSEMBLE_PARAMETERS.format(members=MEMBERS_PARAMETER)}
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the logistic regressions and in the graph's label mass; "balanced" weighs them
        inversely to their frequency among the labeled rows. (The graph member always gives each class the same
        label mass before these weights.)
    {_SEED_AND_VERBOSE}

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels (unlabeled markers excluded).
    {_COMMON_ATTRIBUTES.format(weights=WEIGHTS_DESCRIPTION)}

    See Also
    --------
    SemiSupervisedEnsembleRegressor : The same for continuous phenotypes.
    SSLClassifier : This ensemble by default, or the reference study's pre-training and fine-tuning.

    Examples
    --------
    >>> from skssl import MaskedAutoencoder, SemiSupervisedEnsembleClassifier, make_expression
    >>> X, y = make_expression(n_samples=120, n_genes=50, random_state=0)
    >>> y_semi = y.copy()
    >>> y_semi[20:] = -1  # only the first 20 samples are labeled
    >>> clf = SemiSupervisedEnsembleClassifier(random_state=0).fit(X, y_semi)
    >>> clf.classes_
    array([0, 1, 2])
    >>> clf.predict_proba(X[:2]).shape
    (2, 3)
    >>> sorted(clf.weights_)  # 6 or 7 labels per class: weights from held-out predictions
    ['genes', 'graph', 'pcs']

    An embedder joins the members, pre-trained on every row with its own parameters:

    >>> embedder = MaskedAutoencoder(n_components=4, hidden_dims=(16,), max_epochs=2)
    >>> SemiSupervisedEnsembleClassifier(embedder, random_state=0).fit(X, y_semi).members_
    ('genes', 'pcs', 'graph', 'embedding')
    """

    _fitted_attributes = ("classes_",) + _BaseSemiSupervisedEnsemble._fitted_attributes
    _task = "classification"

    _parameter_constraints: dict = {
        **_BaseSemiSupervisedEnsemble._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(self, embedder=None, *, members=None, prefit=False, class_weight=None, random_state=None, verbose=0):
        self.embedder = embedder
        self.members = members
        self.prefit = prefit
        self.class_weight = class_weight
        self.random_state = random_state
        self.verbose = verbose

    # The embedder's own parameters are validated by its fit, so nested validation stays on.
    @fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Fit the members on views of all rows of ``X``, trained on the labeled ones; weigh them.

        Parameters
        ----------
        X : {array-like, sparse matrix, np.memmap} of shape (n_samples, n_features)
            Expression matrix, samples in rows; labeled and unlabeled samples together (densified: see the class
            description).
        y : array-like of shape (n_samples,)
            Class labels; ``-1`` (or None/NaN in an object array) marks an unlabeled sample. At least 2 labeled
            samples of at least 2 classes are needed.

        Returns
        -------
        self : object
            The fitted classifier.
        """
        return _fit_reporting(self, X, y)

    def predict_proba(self, X):
        """Class probabilities: the weighted average of the members'.

        Parameters
        ----------
        X : {array-like, sparse matrix, np.memmap} of shape (n_samples, n_features)
            Same features, in the same order, as the data given to ``fit``.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probability of each class, in the order of ``classes_``.
        """
        return self._ensemble_outputs(X)

    def predict_log_proba(self, X):
        """Logarithm of the class probabilities.

        Parameters
        ----------
        X : {array-like, sparse matrix, np.memmap} of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            ``-inf`` where a probability is 0.
        """
        with np.errstate(divide="ignore"):
            return np.log(self._ensemble_outputs(X))

    def predict(self, X):
        """Predicted class of each sample: the most probable one.

        Parameters
        ----------
        X : {array-like, sparse matrix, np.memmap} of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        proba = self._ensemble_outputs(X)  # first: it checks that the estimator is fitted
        return self.classes_[np.argmax(proba, axis=1)]


class SemiSupervisedEnsembleRegressor(RegressorMixin, RegressionTargets, _BaseSemiSupervisedEnsemble):
    __doc__ = f"""Semi-supervised ensemble regressor (age, drug response...): every sample shapes the members.

    The default strategy of :class:`~skssl.SSLRegressor`, as an estimator of its own: as
    :class:`SemiSupervisedEnsembleClassifier`, for a continuous target. Unlabeled rows are marked by a NaN target.
    Targets are standardised internally; predictions are in the unit of ``y``. The members are ridge regressions
    (``alpha=1``) on the standardised genes, on the whitened top principal components and on the embedding, and a
    graph member that spreads the targets over the nearest-neighbour graph of all rows (a diffusion-weighted mean
    of the labeled targets); weights come from held-out squared errors when at least 10 rows are labeled, uniform
    otherwise. The regression defaults follow the classifier's; they were not benchmarked separately.

    Sparse input is accepted, not kept sparse. {DENSE_MEMORY}

    Parameters
    ----------
    {_ENSEMBLE_PARAMETERS.format(members=MEMBERS_PARAMETER)}
    {_SEED_AND_VERBOSE}

    Attributes
    ----------
    y_mean_ : float
        Mean of the labeled targets: the members predict ``(y - y_mean_) / y_scale_``.
    y_scale_ : float
        Standard deviation of the labeled targets (1.0 when they are all equal).
    {_COMMON_ATTRIBUTES.format(weights=WEIGHTS_DESCRIPTION)}

    See Also
    --------
    SemiSupervisedEnsembleClassifier : The same for class labels.
    SSLRegressor : This ensemble by default, or the reference study's pre-training and fine-tuning.

    Examples
    --------
    >>> import numpy as np
    >>> from skssl import SemiSupervisedEnsembleRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 30)).astype(np.float32)
    >>> age = 50 + 10 * X[:, 0] + rng.normal(size=100)
    >>> age[30:] = np.nan  # 30 samples with a known age
    >>> reg = SemiSupervisedEnsembleRegressor(random_state=0).fit(X, age)
    >>> reg.predict(X[:3]).shape
    (3,)
    >>> reg.held_out_loss_ is not None  # 30 targets: weights from held-out predictions
    True
    """

    _fitted_attributes = ("y_mean_", "y_scale_") + _BaseSemiSupervisedEnsemble._fitted_attributes
    _task = "regression"

    def __init__(self, embedder=None, *, members=None, prefit=False, random_state=None, verbose=0):
        self.embedder = embedder
        self.members = members
        self.prefit = prefit
        self.random_state = random_state
        self.verbose = verbose

    @fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Fit the members on views of all rows of ``X``, trained on the rows with a target; weigh them.

        Parameters
        ----------
        X : {array-like, sparse matrix, np.memmap} of shape (n_samples, n_features)
            Expression matrix, samples in rows; labeled and unlabeled samples together (densified: see the class
            description).
        y : array-like of shape (n_samples,)
            Continuous target; NaN marks an unlabeled sample. At least 2 samples need a target.

        Returns
        -------
        self : object
            The fitted regressor.
        """
        return _fit_reporting(self, X, y)

    def predict(self, X):
        """Predicted target of each sample: the weighted average of the members'.

        Parameters
        ----------
        X : {array-like, sparse matrix, np.memmap} of shape (n_samples, n_features)
            Same features, in the same order, as the data given to ``fit``.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            In the unit of ``y``.
        """
        outputs = self._ensemble_outputs(X)  # first: it checks that the estimator is fitted
        return outputs * self.y_scale_ + self.y_mean_
