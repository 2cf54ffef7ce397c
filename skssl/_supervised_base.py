"""The shared base of SSLClassifier and SSLRegressor: the two strategies.

``strategy="ensemble"`` fits a :class:`~skssl.SemiSupervisedEnsembleClassifier` / ``...Regressor`` on the rows
validated here (kept as ``ensemble_``); ``strategy="finetune"`` builds the fine-tuning network
(:mod:`skssl._finetune`) and trains it with the shared loop (:meth:`BaseTorchEstimator._train`), the rows,
strata and class weights of the fit passed as arguments. The parameter and attribute descriptions the two
estimators share are at the end.
"""

from __future__ import annotations

import functools
from numbers import Real

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from . import _finetune, _reading, _validation
from ._base import BaseTorchEstimator
from ._compat import Interval, StrOptions
from ._fit_state import previous_state_on_error, training_attributes
from ._pretraining import EmbedderUser
from .semi_supervised import (
    DENSE_MEMORY,
    MEMBERS_PARAMETER,
    PRETRAINING_INTERRUPTED,
    WEIGHTS_DESCRIPTION,
    _BaseSemiSupervisedEnsemble,
)

_SHARED_KEYS = (
    "dropout",
    "batch_size",
    "max_epochs",
    "learning_rate",
    "weight_decay",
    "early_stopping",
    "validation_fraction",
    "n_iter_no_change",
    "tol",
    "device",
    "random_state",
    "verbose",
)


class _BaseSSLPredictor(EmbedderUser, BaseTorchEstimator):
    """What SSLClassifier and SSLRegressor share, both strategies (the semi-supervised ensemble and pre-train +
    fine-tune); not for direct use. The torch training parameters it inherits serve ``strategy="finetune"`` and
    the embedder's pre-training; the default ensemble trains no network."""

    # The ensemble's parameters as the ensemble estimator validates them (it is given them by strategy="ensemble").
    _parameter_constraints: dict = {
        **{key: _BaseSemiSupervisedEnsemble._parameter_constraints[key] for key in ("embedder", "members", "prefit")},
        "strategy": [StrOptions({"ensemble", "finetune"})],
        "pretrain": ["boolean"],
        "finetune": [StrOptions({"full", "head"})],
        "encoder_lr_ratio": [Interval(Real, 0.0, None, closed="neither")],
        "head_hidden_dims": [tuple, list],
        **{key: BaseTorchEstimator._parameter_constraints[key] for key in _SHARED_KEYS},
    }

    # Every fitted attribute of both strategies, as the docstrings' Attributes sections list them (the task's own,
    # classes_ or y_mean_ / y_scale_, added by each class): what save_model writes and load_model accepts.
    _fitted_attributes = (
        "embedder_",
        "members_",
        "weights_",
        "ensemble_",
        "module_",
        "n_components_",
        "history_",
        "n_iter_",
        "best_epoch_",
        "batch_size_",
        "device_",
        "n_features_in_",
        "feature_names_in_",
    )

    # ------------------------------------------------------------------ per task
    # The label convention (``_labeled_mask``, ``_encode_targets``) comes from the task's mixin in skssl._targets,
    # the ensemble of strategy="ensemble" from ``_ensemble_class``.
    _ensemble_class = None

    def _n_outputs(self):
        raise NotImplementedError

    def _full_targets(self, n_samples, rows, encoded):
        """One target per row of X for the fine-tuning loop, which reads targets by row index: ``encoded`` at
        ``rows``, ``_unlabeled_target`` elsewhere (never read: the loop trains on ``rows`` only)."""
        targets = np.full(n_samples, self._unlabeled_target, dtype=encoded.dtype)
        targets[rows] = encoded
        return targets

    def _loss_function(self, class_weight):
        """The loss of a batch, ``loss(module, x, targets, generator=None)``, for these class weights."""
        raise NotImplementedError

    # ------------------------------------------------------------------ fitting
    def _fit(self, X, y):
        # A fit that does not finish (Ctrl-C at any point, or an error) leaves the previous fitted state, or an
        # unfitted estimator; a FitInterruptedWarning is issued once the new state is complete.
        with previous_state_on_error(self):
            warn = self._fit_state(X, y)
        if warn is not None:
            warn()
        return self

    def _fit_state(self, X, y):
        """Fit, and return the call that issues the fit's FitInterruptedWarning (None: not interrupted)."""
        self._check_embedder()
        if self.prefit and not self.pretrain:
            raise ValueError("prefit=True uses an already trained embedder; it cannot be combined with pretrain=False.")
        if not all(_validation.is_integer(width) and width >= 1 for width in self.head_hidden_dims):
            raise ValueError(
                f"head_hidden_dims must be a sequence of positive integers, got {self.head_hidden_dims!r}."
            )
        X, rows, encoding = self._labeled_fit_data(X, y)
        # classes_ (or y_mean_, y_scale_) first: the network's outputs and the ensemble's members are sized by them.
        self.__dict__.update(encoding.attributes)
        if self.strategy == "ensemble":
            return self._fit_ensemble(X, rows, encoding)
        return self._fit_finetune(X, rows, encoding.encoded, encoding.strata, encoding.class_weight)

    def _ensemble(self):
        """The unfitted ensemble of strategy="ensemble", with the parameters of this estimator that it shares (the
        same objects: a RandomState ``random_state`` is drawn from once, as it was by this estimator's own fit)."""
        params = {key: getattr(self, key) for key in self._ensemble_class._parameter_constraints}
        return self._ensemble_class(**params)

    def _fit_ensemble(self, X, rows, encoding):
        ensemble = self._ensemble()
        if not self.pretrain and "embedding" in ensemble._resolved_members():
            raise ValueError(
                "pretrain=False (the from-scratch network) belongs to strategy='finetune'; the 'embedding' member "
                "of strategy='ensemble' needs a pre-trained embedder. Use strategy='finetune', or drop "
                "'embedding' from members."
            )
        # X and y were validated here, once: the ensemble takes them as they are, with this estimator's feature names.
        interruption = ensemble._fit_labeled(X, rows, encoding, caller=self, device=self.device)
        self.ensemble_ = ensemble
        self.embedder_, self.members_, self.weights_ = ensemble.embedder_, ensemble.members_, ensemble.weights_
        if interruption is not None:
            # The members have no training loop (seconds): fitting them makes the estimator usable.
            return functools.partial(self._warn_pretraining_interrupted, interruption, PRETRAINING_INTERRUPTED)
        return None

    def _ensemble_outputs(self, X):
        """The ensemble's weighted member average: class probabilities, or standardised predictions."""
        check_is_fitted(self)
        return self.ensemble_._validated_outputs(_validation.validate_X(self, X, reset=False))

    def _fit_finetune(self, X, rows, encoded, strata, class_weight):
        rng = check_random_state(self.random_state)
        embedder_seed, head_seed = (int(s) for s in rng.randint(np.iinfo(np.int32).max, size=2))
        interruption = None
        if self.pretrain:
            embedder, interruption = self._pretrained_embedder(X, embedder_seed, device=self.device)
            source = embedder.module_
        else:
            # From-scratch baseline: the module the embedder would start from, on the labeled rows only.
            embedder = None
            source = self._configured_embedder(embedder_seed, self.device)._initial_module(X[rows])
        self.embedder_ = embedder
        init_head = None
        if embedder is not None and not self.head_hidden_dims:
            # Linear probe, then fine-tuning (LP-FT, Kumar et al. 2022): the head starts as the probe that fits
            # the labeled rows, so the first gradient steps refine the pre-trained features instead of pushing
            # them around to fit a random head.
            init_head = functools.partial(
                self._init_linear_head, encoded=encoded, seed=head_seed, class_weight=class_weight
            )
        device = _reading.resolve_device(self.device)
        module, self.n_components_ = _finetune.build_network(
            source,
            X,
            rows,
            n_outputs=self._n_outputs(),
            head_hidden_dims=self.head_hidden_dims,
            dropout=self.dropout,
            frozen=self.finetune == "head",
            seed=head_seed,
            device=device,
            init_head=init_head,
        )
        # The loop reads rows of all of X, but only the labeled rows are ever among its training and validation rows.
        # Its RandomState starts again from random_state (its first draw seeds torch), as it always did.
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        train_rows, validation_rows = _finetune.split_labeled(
            rows, strata, self.validation_fraction, self.early_stopping, rng
        )
        if interruption is not None:
            # One Ctrl-C stops the whole fit: no fine-tuning, the network as fine-tuning would have started it.
            no_epochs = {"train_loss": [], "validation_loss": []}
            batch_size = self._schedule(len(train_rows)).batch_size
            self.__dict__.update(training_attributes(module.to(device), no_epochs, 0, 0, batch_size, device))
            then = (
                f"Fine-tuning was skipped: {type(self).__name__} predicts with that encoder and the head that "
                "fine-tuning starts from (a classifier's linear head: the logistic-regression probe of the labeled "
                "rows' embeddings); n_iter_ is 0."
            )
            return functools.partial(self._warn_pretraining_interrupted, interruption, then)
        loss_weight = None if class_weight is None else torch.as_tensor(class_weight, device=device)
        module = module.to(device)
        # A pre-trained encoder moves slowly so the few labels adjust, not overwrite, what it learned.
        ratio = 1.0 if embedder is None else self.encoder_lr_ratio
        optimizer = _finetune.make_optimizer(
            module,
            learning_rate=self.learning_rate,
            encoder_learning_rate=self.learning_rate * ratio,
            weight_decay=self.weight_decay,
        )
        run = self._train(
            X,
            module,
            self._loss_function(loss_weight),
            device=device,
            rng=rng,
            seed=seed,
            train_rows=train_rows,
            validation_rows=validation_rows,
            targets=self._full_targets(X.shape[0], rows, encoded),
            optimizer=optimizer,
            phase="fine-tuning" if embedder is not None else "training from scratch",
        )
        self.__dict__.update(self._training_attributes(run))
        return functools.partial(self._warn_if_interrupted, run)

    def _init_linear_head(self, layer, embeddings, *, encoded, seed, class_weight):
        """Set a linear head from a model fitted on the standardised embeddings of the labeled rows (no-op here)."""

    def _outputs(self, X):
        """Network outputs (logits, or standardised predictions) in float64."""
        check_is_fitted(self)
        X = _validation.validate_X(self, X, reset=False)
        return _finetune.network_outputs(self.module_, X, self._n_outputs(), max(self.batch_size_, 1024))


_STRATEGY_PARAMETERS = (
    """strategy : {"ensemble", "finetune"}, default="ensemble"
        ``"ensemble"``: the recommended start (described above), a :class:`~skssl.SemiSupervisedEnsembleClassifier`
        (or ``...Regressor``) fitted with this estimator's ``embedder``, ``members``, ``prefit``, ``class_weight``,
        ``random_state`` and ``verbose`` and kept as ``ensemble_``. Members read views of all rows of ``X``
        (labeled and unlabeled) and are trained on the labeled rows; their predictions are averaged with weights
        chosen on held-out predictions of the labeled rows. ``"finetune"``: the reference study's protocol,
        pre-training then fine-tuning the encoder with a head (``pretrain``, ``finetune``, ``encoder_lr_ratio``,
        ``head_hidden_dims`` and the training parameters from ``dropout`` to ``tol`` apply to it only;
        ``class_weight``, ``random_state`` and ``verbose`` serve both strategies, and ``device`` is also where the
        ensemble's embedder pre-trains when its own ``device`` is "auto"). Memory: ``"finetune"`` reads sparse and
        memory-mapped input one batch at a time, never whole. """
    + DENSE_MEMORY.replace("\n    ", "\n        ")
    + """
    """
    + MEMBERS_PARAMETER
)

_COMMON_PARAMETERS = """pretrain : bool, default=True
        Pre-train the embedder on all rows of ``X`` (labels hidden) before fine-tuning. ``False`` gives the
        supervised baseline: the same encoder and head, from the random initial weights the embedder would start
        from (standardised with statistics of the labeled rows), trained on the labeled rows only.
    prefit : bool, default=False
        Whether ``embedder`` is already fitted (as in ``SelectFromModel(prefit=True)``): it is then used as is, not
        refitted, so one pre-training can serve many fine-tunings. A copy is stored as ``embedder_``. As
        ``clone`` (cross-validation, grid search) unfits a nested estimator, pass
        ``embedder=FrozenEstimator(fitted_embedder)`` there instead (``sklearn.frozen.FrozenEstimator``): a frozen
        embedder counts as prefit.
    finetune : {"full", "head"}, default="full"
        ``"full"`` trains the encoder and the head; ``"head"`` freezes the encoder (weights unchanged, no
        dropout) and trains the head only.
    encoder_lr_ratio : float > 0, default=0.1
        The pre-trained encoder learns at ``learning_rate * encoder_lr_ratio`` with ``finetune="full"``, so the
        few labels adjust rather than overwrite it. The from-scratch baseline trains its encoder at
        ``learning_rate``.
    head_hidden_dims : tuple of int, default=()
        Hidden layer widths of the head; ``()`` is a linear head on the embedding."""

_TRAINING_PARAMETERS = """dropout : float in [0, 1), default=0.1
        Dropout after each hidden layer of the head (the encoder keeps the embedder's dropout).
    batch_size : "auto" or int, default="auto"
        Labeled rows per optimisation step; "auto" is a quarter of the training rows, clipped to [32, 256].
    max_epochs : "auto" or int, default="auto"
        Passes over the labeled rows; "auto" aims for about 3 000 optimisation steps (between 3 and 500 epochs).
        The embedder's pre-training follows the embedder's own ``max_epochs``.
    learning_rate : float, default=1e-3
        AdamW learning rate of the head (and of the baseline's encoder).
    weight_decay : float, default=1e-5
        AdamW weight decay.
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the labeled rows (stratified by class for classification), stop when
        their loss stops improving and keep the weights of the best epoch. Skipped when fewer than 2 rows would be
        held out, or, for classification, too few to include every class; training then stops when the training
        loss stops improving.
    validation_fraction : float in (0, 1), default=0.1
        Fraction of the labeled rows held out for early stopping.
    n_iter_no_change : "auto" or int, default="auto"
        Epochs without improvement before stopping; "auto" waits for about 200 optimisation steps, at least 10
        epochs.
    tol : float, default=1e-4
        Relative improvement of the validation loss that counts as an improvement.
    device : str, default="auto"
        "auto" (CUDA if available, else CPU), "cpu", "cuda" or "cuda:N". Also used for the embedder's
        pre-training when the embedder's own ``device`` is "auto".
    random_state : int, RandomState instance or None, default=None
        Seeds the head's weights, the split and the batch order; when the embedder's own ``random_state`` is
        None, it also seeds the pre-training, so one seed makes the whole fit reproducible on CPU.
    verbose : int, default=0
        Progress on stdout, each phase named ("pre-training", "fine-tuning") with its own epoch budget (the
        pre-training's is the embedder's ``max_epochs``): 1 shows the epochs (one updating line in a terminal or
        notebook, about ten lines a phase otherwise), each with the best epoch so far, the time elapsed and an
        estimate of the time left by the stopping rule, and a closing line per phase (epochs run, why training
        stopped, best epoch, wall time); 2 prints a line per epoch. Also applies to the pre-training when
        the embedder's ``verbose`` is 0. With ``strategy="ensemble"``, the end of ``fit`` prints two lines on stderr:
        the members, the samples and labels they were fitted on and the wall time, then each member's weight and
        how the weights were chosen."""

_COMMON_ATTRIBUTES = (
    """embedder_ : estimator or None
        The fitted embedder (a fitted clone of ``embedder``, or a copy of it with ``prefit=True``); None for the
        baseline (``pretrain=False``) and for an ensemble without the ``"embedding"`` member. Fine-tuning changes a
        copy of its encoder, not ``embedder_`` itself.
    members_ : tuple of str
        With ``strategy="ensemble"``: the members used.
    weights_ : dict of str to float
        With ``strategy="ensemble"``. """
    + WEIGHTS_DESCRIPTION
    + """
    ensemble_ : SemiSupervisedEnsembleClassifier or SemiSupervisedEnsembleRegressor
        With ``strategy="ensemble"``: the fitted ensemble (of this estimator's task), whose ``embedder_``,
        ``members_`` and ``weights_`` are the ones above (``ensemble_.held_out_loss_``: each member's held-out
        log-loss or squared error, None when the weights are uniform).
    module_ : torch.nn.Module
        With ``strategy="finetune"`` (as the attributes below): the trained network: ``module_.body`` (the
        encoder, raw features to embedding), ``module_.scale`` (a fixed standardisation of the embedding,
        statistics of the labeled rows) and ``module_.head``.
    n_components_ : int
        Dimension of the embedding the head reads.
    history_ : dict
        ``"train_loss"`` and ``"validation_loss"`` of the supervised training, per epoch.
    n_iter_ : int
        Number of epochs of supervised training run (0 when Ctrl-C stopped the fit during pre-training: fine-tuning
        was then skipped, the network is where fine-tuning would have started).
    best_epoch_ : int
        Epoch whose weights were kept (0: none was run).
    batch_size_ : int
        Batch size used for the supervised training.
    device_ : torch.device
        Device the network was trained on and is on (the CPU after ``load_model``).
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during ``fit`` (only when X has string column names)."""
)
