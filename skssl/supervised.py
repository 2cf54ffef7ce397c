"""Semi-supervised phenotype predictors: every sample shapes the model, the labeled ones train it.

Two strategies. ``"ensemble"`` (the default: an estimator of :mod:`skssl.semi_supervised`, fitted here and kept as
``ensemble_``): linear models on the standardised genes and on the whitened top principal components, label
spreading over a nearest-neighbour graph, and (when an embedder is given) a linear model on a self-supervised
embedding, all fitted on every row and weighted by held-out predictions of the labeled rows. ``"finetune"``: the
protocol of the reference study, an embedder pre-trained on all samples without labels, then its encoder and a
small head trained on the labeled samples only; ``pretrain=False`` gives its honest baseline, the same network
trained from random weights on the labeled samples.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from scipy.special import softmax
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.linear_model import LogisticRegression

from ._compat import fit_context
from ._finetune import cross_entropy_loss, squared_error_loss
from ._supervised_base import (
    _COMMON_ATTRIBUTES,
    _COMMON_PARAMETERS,
    _STRATEGY_PARAMETERS,
    _TRAINING_PARAMETERS,
    _BaseSSLPredictor,
)
from ._targets import ClassificationTargets, RegressionTargets
from .semi_supervised import SemiSupervisedEnsembleClassifier, SemiSupervisedEnsembleRegressor, _fit_reporting

__all__ = ["SSLClassifier", "SSLRegressor"]


class SSLClassifier(ClassifierMixin, ClassificationTargets, _BaseSSLPredictor):
    __doc__ = f"""Semi-supervised phenotype classifier: all samples shape the model, the labeled ones train it.

    ``fit(X, y)`` follows scikit-learn's semi-supervised convention: rows whose label is ``-1`` are unlabeled
    (as in :class:`~sklearn.semi_supervised.SelfTrainingClassifier`).

    With the default ``strategy="ensemble"`` — the recommended start, a :class:`~skssl.SemiSupervisedEnsembleClassifier`
    fitted with this estimator's seed and kept as ``ensemble_`` — several members see every row of ``X``
    and learn from the labeled ones: a logistic regression on the standardised genes (the linear baseline, so
    the ensemble contains what it must beat), a logistic regression on the whitened top principal components of
    all rows (a low-rank view that needs few labels), label spreading over a nearest-neighbour graph of all rows
    (Zhou et al., 2004: labels flow to similar unlabeled samples) and, when ``embedder`` is given, a logistic
    regression on its self-supervised embedding pre-trained on all rows. Their class probabilities are averaged:
    uniformly when fewer than 3 samples per class are labeled, otherwise with weights chosen by greedy ensemble
    selection (Caruana et al., 2004) on held-out predictions of the labeled rows, so that with many labels the
    weight goes to what predicts them best. The unlabeled rows change the model (principal components, scaling,
    graph, embedding); their labels are never read. These defaults were chosen by leave-one-dataset-out over
    four cohorts; their measured scores against logistic regression and PCA + logistic regression are in
    ``docs/benchmarks.md``. With a prefit embedder (pre-trained elsewhere, e.g. on a pool of other studies) the
    default is the linear model on its embedding alone (see ``members``).

    With ``strategy="finetune"``, the reference study's protocol: all rows pre-train the embedder's
    self-supervised objective (a clone of ``embedder``, stored as ``embedder_``); then a head on the embedding is
    trained with (class-weighted) cross-entropy on the labeled rows, together with the encoder
    (``finetune="full"``, at a smaller learning rate) or on a frozen encoder (``finetune="head"``). With a VAE the
    posterior mean feeds the head. A linear head on a pre-trained encoder starts from the logistic-regression probe
    of the labeled rows' standardised embeddings (linear probing, then fine-tuning: "LP-FT", Kumar et al., 2022).
    With ``pretrain=False`` the same encoder and head are trained from random weights on the labeled rows only:
    the supervised baseline that the pre-trained model should beat.

    Unlabeled rows are marked by ``-1``, or by a missing value (``None`` or NaN). String labels cannot hold
    ``-1`` in a string array: pass an object array (``np.array(["tumour", -1, "normal"], dtype=object)``) or a
    pandas Series with missing values (e.g. ``labels.where(is_labeled)``).

    Parameters
    ----------
    embedder : ContrastiveEmbedder, MaskedAutoencoder, VAEEmbedder or FrozenEstimator, default=None
        The self-supervised model: the ``"embedding"`` member of the ensemble, or the encoder that
        ``strategy="finetune"`` fine-tunes (its parameters set the architecture). None: no embedding member in the
        ensemble; ``MaskedAutoencoder()`` with its defaults for fine-tuning. It is cloned (or, if prefit, copied),
        never changed.
    {_STRATEGY_PARAMETERS}
    {_COMMON_PARAMETERS}
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the cross-entropy (fine-tuning) or in the ensemble's logistic regressions and
        graph label mass; "balanced" weighs them inversely to their frequency among the labeled rows. (The graph
        member always gives each class the same label mass before these weights.)
    {_TRAINING_PARAMETERS}

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels (unlabeled markers excluded).
    {_COMMON_ATTRIBUTES}

    See Also
    --------
    SSLRegressor : The same for continuous phenotypes.
    SemiSupervisedEnsembleClassifier : The default strategy alone, without the fine-tuning parameters.
    sklearn.semi_supervised.SelfTrainingClassifier : Pseudo-labelling around any classifier.

    Examples
    --------
    >>> from skssl import MaskedAutoencoder
    >>> from skssl.supervised import SSLClassifier
    >>> from skssl.datasets import make_expression
    >>> X, y = make_expression(n_samples=120, n_genes=50, random_state=0)
    >>> y_semi = y.copy()
    >>> y_semi[20:] = -1  # only the first 20 samples are labeled
    >>> clf = SSLClassifier(random_state=0).fit(X, y_semi)
    >>> clf.classes_
    array([0, 1, 2])
    >>> clf.predict_proba(X[:2]).shape
    (2, 3)
    >>> sorted(clf.weights_)  # 6 or 7 labels per class: weights from held-out predictions
    ['genes', 'graph', 'pcs']

    The reference study's protocol, and its from-scratch baseline (same network, no pre-training):

    >>> embedder = MaskedAutoencoder(n_components=8, hidden_dims=(32,), max_epochs=3)
    >>> finetuned = SSLClassifier(embedder, strategy="finetune", max_epochs=10, random_state=0).fit(X, y_semi)
    >>> baseline = SSLClassifier(
    ...     embedder, strategy="finetune", pretrain=False, max_epochs=10, random_state=0
    ... ).fit(X, y_semi)
    >>> baseline.embedder_ is None
    True
    """

    _fitted_attributes = ("classes_",) + _BaseSSLPredictor._fitted_attributes
    _ensemble_class = SemiSupervisedEnsembleClassifier
    # An invalid class index: if an unlabeled row ever reached the loss, cross-entropy would fail.
    _unlabeled_target = -1

    _parameter_constraints: dict = {
        **_BaseSSLPredictor._parameter_constraints,
        "class_weight": SemiSupervisedEnsembleClassifier._parameter_constraints["class_weight"],
    }

    def __init__(
        self,
        embedder=None,
        *,
        strategy="ensemble",
        members=None,
        pretrain=True,
        prefit=False,
        finetune="full",
        encoder_lr_ratio=0.1,
        head_hidden_dims=(),
        class_weight=None,
        dropout=0.1,
        batch_size="auto",
        max_epochs="auto",
        learning_rate=1e-3,
        weight_decay=1e-5,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change="auto",
        tol=1e-4,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.embedder = embedder
        self.strategy = strategy
        self.members = members
        self.pretrain = pretrain
        self.prefit = prefit
        self.finetune = finetune
        self.encoder_lr_ratio = encoder_lr_ratio
        self.head_hidden_dims = head_hidden_dims
        self.class_weight = class_weight
        self.dropout = dropout
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # The embedder's own parameters are validated by its fit, so nested validation stays on.
    @fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Fit on all rows of ``X``, learning from the labeled ones.

        With ``strategy="ensemble"`` (the default), the members read views of every row (scaling, principal
        components, graph, and the embedding when ``embedder`` is given) and are trained on the labeled rows;
        with ``strategy="finetune"``, the embedder is pre-trained on every row (unless prefit), then its encoder and
        a head are trained on the labeled rows.

        Parameters
        ----------
        X : {array-like, sparse matrix, np.memmap} of shape (n_samples, n_features)
            Expression matrix, samples in rows; labeled and unlabeled samples together (how much memory each
            strategy needs: see ``strategy``).
        y : array-like of shape (n_samples,)
            Class labels; ``-1`` (or None/NaN in an object array) marks an unlabeled sample. At least 2 labeled
            samples of at least 2 classes are needed.

        Returns
        -------
        self : object
            The fitted classifier.
        """
        return _fit_reporting(self, X, y)

    def _n_outputs(self):
        return len(self.classes_)

    def _loss_function(self, class_weight):
        return functools.partial(cross_entropy_loss, weight=class_weight)

    def _init_linear_head(self, layer, embeddings, *, encoded, seed, class_weight):
        # The same probe as Pipeline([embedder, StandardScaler(), LogisticRegression()]).
        class_weight = None if class_weight is None else dict(enumerate(class_weight.tolist()))
        probe = LogisticRegression(class_weight=class_weight, max_iter=1000, random_state=seed)
        probe.fit(embeddings, encoded)
        coef, intercept = probe.coef_, probe.intercept_
        if coef.shape[0] == 1:  # binary: one logit difference, split over the two outputs
            coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
        with torch.no_grad():
            layer.weight.copy_(torch.as_tensor(coef, dtype=layer.weight.dtype))
            layer.bias.copy_(torch.as_tensor(intercept, dtype=layer.bias.dtype))

    def predict_proba(self, X):
        """Class probabilities.

        Parameters
        ----------
        X : {array-like, sparse matrix, np.memmap} of shape (n_samples, n_features)
            Same features, in the same order, as the data given to ``fit``.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probability of each class, in the order of ``classes_``.
        """
        if self.strategy == "ensemble":
            return self._ensemble_outputs(X)
        return softmax(self._outputs(X), axis=1)

    def predict_log_proba(self, X):
        """Logarithm of the class probabilities.

        Parameters
        ----------
        X : {array-like, sparse matrix, np.memmap} of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        if self.strategy == "ensemble":
            with np.errstate(divide="ignore"):
                return np.log(self._ensemble_outputs(X))
        logits = self._outputs(X)
        return logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)

    def predict(self, X):
        """Predicted class of each sample.

        Parameters
        ----------
        X : {array-like, sparse matrix, np.memmap} of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        if self.strategy == "ensemble":
            proba = self._ensemble_outputs(X)
            return self.classes_[np.argmax(proba, axis=1)]
        logits = self._outputs(X)
        return self.classes_[np.argmax(logits, axis=1)]


class SSLRegressor(RegressorMixin, RegressionTargets, _BaseSSLPredictor):
    __doc__ = f"""Semi-supervised phenotype regressor (age, drug response...): all samples shape the model.

    As :class:`SSLClassifier`, for a continuous target. Unlabeled rows are marked by a NaN target. Targets are
    standardised internally; predictions are in the unit of ``y``. With ``strategy="ensemble"`` (default) the
    members are ridge regressions (``alpha=1``) on the standardised genes, on the whitened top principal
    components and on the embedding, and a graph member that spreads the targets over the nearest-neighbour graph
    of all rows (a diffusion-weighted mean of the labeled targets); weights come from held-out squared errors when
    at least 10 rows are labeled, uniform otherwise. The ensemble's regression defaults follow the classifier's;
    they were not benchmarked separately. With ``strategy="finetune"``: all rows pre-train the embedder, the rows
    with a target train the head (and the encoder, with ``finetune="full"``) with the mean squared error.

    Parameters
    ----------
    embedder : ContrastiveEmbedder, MaskedAutoencoder, VAEEmbedder or FrozenEstimator, default=None
        The self-supervised model: the ``"embedding"`` member of the ensemble, or the encoder that
        ``strategy="finetune"`` fine-tunes. None: no embedding member; ``MaskedAutoencoder()`` for fine-tuning. It
        is cloned (or, if prefit, copied), never changed.
    {_STRATEGY_PARAMETERS}
    {_COMMON_PARAMETERS}
    {_TRAINING_PARAMETERS}

    Attributes
    ----------
    y_mean_ : float
        Mean of the labeled targets: the members and the network predict ``(y - y_mean_) / y_scale_``.
    y_scale_ : float
        Standard deviation of the labeled targets (1.0 when they are all equal).
    {_COMMON_ATTRIBUTES}

    See Also
    --------
    SSLClassifier : The same for class labels.
    SemiSupervisedEnsembleRegressor : The default strategy alone, without the fine-tuning parameters.

    Examples
    --------
    >>> import numpy as np
    >>> from skssl import ContrastiveEmbedder
    >>> from skssl.supervised import SSLRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 30)).astype(np.float32)
    >>> age = 50 + 10 * X[:, 0] + rng.normal(size=100)
    >>> age[30:] = np.nan  # 30 samples with a known age
    >>> reg = SSLRegressor(random_state=0).fit(X, age)
    >>> reg.predict(X[:3]).shape
    (3,)
    >>> embedder = ContrastiveEmbedder(n_components=8, hidden_dims=(32,), max_epochs=3)
    >>> finetuned = SSLRegressor(embedder, strategy="finetune", max_epochs=10, random_state=0).fit(X, age)
    """

    _fitted_attributes = ("y_mean_", "y_scale_") + _BaseSSLPredictor._fitted_attributes
    _ensemble_class = SemiSupervisedEnsembleRegressor
    # NaN: if an unlabeled row ever reached the loss, training would fail as diverged.
    _unlabeled_target = np.nan

    def __init__(
        self,
        embedder=None,
        *,
        strategy="ensemble",
        members=None,
        pretrain=True,
        prefit=False,
        finetune="full",
        encoder_lr_ratio=0.1,
        head_hidden_dims=(),
        dropout=0.1,
        batch_size="auto",
        max_epochs="auto",
        learning_rate=1e-3,
        weight_decay=1e-5,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change="auto",
        tol=1e-4,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.embedder = embedder
        self.strategy = strategy
        self.members = members
        self.pretrain = pretrain
        self.prefit = prefit
        self.finetune = finetune
        self.encoder_lr_ratio = encoder_lr_ratio
        self.head_hidden_dims = head_hidden_dims
        self.dropout = dropout
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    @fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Fit on all rows of ``X``, learning from the rows with a target.

        With ``strategy="ensemble"`` (the default), the members read views of every row and are trained on the
        rows with a target; with ``strategy="finetune"``, the embedder is pre-trained on every row (unless prefit),
        then its encoder and a head are trained on the rows with a target.

        Parameters
        ----------
        X : {array-like, sparse matrix, np.memmap} of shape (n_samples, n_features)
            Expression matrix, samples in rows; labeled and unlabeled samples together (how much memory each
            strategy needs: see ``strategy``).
        y : array-like of shape (n_samples,)
            Continuous target; NaN marks an unlabeled sample. At least 2 samples need a target.

        Returns
        -------
        self : object
            The fitted regressor.
        """
        return _fit_reporting(self, X, y)

    def _n_outputs(self):
        return 1

    def _loss_function(self, class_weight):
        return squared_error_loss

    def predict(self, X):
        """Predicted target of each sample.

        Parameters
        ----------
        X : {array-like, sparse matrix, np.memmap} of shape (n_samples, n_features)
            Same features, in the same order, as the data given to ``fit``.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            In the unit of ``y``.
        """
        outputs = self._ensemble_outputs(X) if self.strategy == "ensemble" else self._outputs(X)[:, 0]
        return outputs * self.y_scale_ + self.y_mean_
