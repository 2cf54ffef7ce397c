"""The base classes of skssl's estimators.

``BaseTorchEstimator`` (every estimator with a network): the shared training parameters, validation split, device,
batched inference, pickling, and the glue that runs :func:`skssl._training.fit_loop` (THE training loop) and sets
the fitted attributes from its result. ``BaseSSLEstimator`` (the embedders): the network parameters and the hooks
a method fills in, ``fit`` / ``partial_fit`` / ``transform``. A method (contrastive, masked, VAE) only says which
torch module it trains (``_build_module``), what its loss on a batch is (``_batch_loss``) and, optionally, what
happens after each optimiser step (``_after_step``).
"""

from __future__ import annotations

import copy
import hashlib
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from . import _input_checks, _reading, _statistics, _validation
from ._batches import BatchConditioning
from ._compat import DocLinkMixin, Interval, StrOptions, fit_context
from ._distributed import agreed_random_state, data_parallel
from ._embedding_scale import StandardizedEmbedding
from ._fit_state import TrainingRun, previous_state_on_error, training_attributes
from ._progress import EpochProgress
from ._training import (
    AUTO_PATIENCE_STEPS,
    Checkpoint,
    cuda_indices,
    fit_loop,
    limited_torch_threads,
    make_adamw,
    resolve_schedule,
    run_fingerprint,
    train_epoch,
    validation_size,
    warn_interrupted,
)


def auto_hidden_dims(n_features):
    """Two hidden layers, wider for wider inputs (256 under 1 000 genes, else 512)."""
    width = 256 if n_features < 1000 else 512
    return (width, width)


class BaseTorchEstimator(DocLinkMixin, BaseEstimator):
    """Training parameters, validation split, device handling and batched inference of every skssl estimator with a
    network; not for direct use. Subclasses train with :meth:`_train`, which runs :func:`skssl._training.fit_loop`.
    """

    _parameter_constraints: dict = {
        "dropout": [Interval(Real, 0.0, 1.0, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 2, None, closed="left")],
        "max_epochs": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0.0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0.0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0.0, 1.0, closed="neither")],
        "n_iter_no_change": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0.0, None, closed="left")],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }
    _interrupt_hint = "Fit again to train anew."  # the end of the FitInterruptedWarning: how to go on
    # The optimisation steps that n_iter_no_change="auto" waits for an improvement (resolve_schedule); a method may
    # ask for fewer where they were measured to keep its scores (MaskedAutoencoder)
    _patience_steps = AUTO_PATIENCE_STEPS

    # ------------------------------------------------------------------ fitting
    def _make_optimizer(self, module):
        return make_adamw(module.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)

    def _split(self, n_samples, rng):
        """Indices of the training and validation rows (validation is empty when it would hold < 2 rows)."""
        order = rng.permutation(n_samples)
        n_val = validation_size(n_samples, self.validation_fraction, self.early_stopping)
        return np.sort(order[n_val:]), np.sort(order[:n_val])

    def _schedule(self, n_train):
        """Batch size, epochs and early-stopping patience for ``n_train`` training rows (resolving "auto")."""
        return resolve_schedule(
            n_train,
            batch_size=self.batch_size,
            max_epochs=self.max_epochs,
            n_iter_no_change=self.n_iter_no_change,
            patience_steps=self._patience_steps,
        )

    def _progress(self, phase=None):
        """The progress display of a training run at this estimator's ``verbose`` (None when silent)."""
        if not self.verbose:
            return None
        return EpochProgress(type(self).__name__, phase=phase, max_epochs_param=self.max_epochs, verbose=self.verbose)

    def _train(
        self,
        X,
        module,
        loss_fn,
        *,
        device,
        rng,
        seed,
        train_rows,
        validation_rows,
        targets=None,
        after_step=None,
        optimizer=None,
        precision="float32",
        phase=None,
        checkpoint=None,
        resume=None,
        distributed=None,
    ):
        """Train ``module`` on rows of ``X`` with :func:`~skssl._training.fit_loop` (data-parallel over ``distributed``)
        and return a :class:`TrainingRun`; nothing is set on the estimator (:meth:`_training_attributes` gives the
        fitted attributes of the run). ``rng`` (a RandomState) draws the batch order; ``seed`` seeds torch's RNG
        for the run and the validation corruptions; ``targets`` has one row per row of ``X`` (``loss_fn`` gets each
        batch's rows of it); ``optimizer``: None for :meth:`_make_optimizer` (AdamW over every parameter);
        ``phase`` names the run in the progress display (e.g. "fine-tuning"). A ``KeyboardInterrupt`` in the epochs
        ends the run with the best weights so far (``stop_reason`` "interrupted": call :meth:`_warn_if_interrupted`
        once the fitted state is assigned).
        """
        schedule = self._schedule(len(train_rows))
        reader = _reading.BatchReader(X, device)
        targets = None if targets is None else torch.as_tensor(targets).to(device)
        with limited_torch_threads(), torch.random.fork_rng(devices=cuda_indices(device)):
            torch.manual_seed(seed)
            result = fit_loop(
                module,
                loss_fn,
                reader=reader,
                train_rows=train_rows,
                validation_rows=validation_rows,
                schedule=schedule,
                device=device,
                generator=rng,
                seed=seed,
                optimizer=self._make_optimizer(module) if optimizer is None else optimizer,
                targets=targets,
                after_step=after_step,
                early_stopping=self.early_stopping,
                tol=self.tol,
                precision=precision,
                name=type(self).__name__,
                progress=self._progress(phase),
                checkpoint=checkpoint,
                resume=resume,
                distributed=distributed,
            )
        return TrainingRun(module, result, schedule, device)

    @staticmethod
    def _training_attributes(run):
        """The fitted ``module_``, ``history_``, ``n_iter_``, ``best_epoch_``, ``batch_size_`` and ``device_`` of a
        :class:`TrainingRun`."""
        result = run.result
        return training_attributes(
            run.module, result.history, result.n_epochs, result.best_epoch, run.schedule.batch_size, run.device
        )

    def _warn_if_interrupted(self, run):
        """The :class:`~skssl._training.FitInterruptedWarning` of a run that Ctrl-C stopped (after the fit assigned
        its state, so that a warning turned into an error leaves the estimator fitted)."""
        if run.result.stop_reason == "interrupted":
            warn_interrupted(type(self).__name__, run.result, run.schedule.max_epochs, self._interrupt_hint)

    # ------------------------------------------------------------------ persistence
    def __getstate__(self):
        # A copy: BaseEstimator.__getstate__ may hand back the live __dict__ itself.
        state = dict(super().__getstate__())
        module = state.get("module_")
        if module is not None and any(p.device.type != "cpu" for p in module.parameters()):
            # Pickles must load on CPU-only machines: store a CPU copy, leave the live module where it is.
            state["module_"] = copy.deepcopy(module).to("cpu")
            state["device_"] = torch.device("cpu")
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class BaseSSLEstimator(
    ClassNamePrefixFeaturesOutMixin, TransformerMixin, BatchConditioning, StandardizedEmbedding, BaseTorchEstimator
):
    """Shared machinery of the self-supervised embedders (transformers); not for direct use.

    A method provides ``_build_module`` (whose module has ``embed(x)`` and ``encoder_path()``) and ``_batch_loss``,
    optionally ``_after_step``, ``_fit_statistics`` and ``_check_fit_values``. ``skssl.supervised`` fine-tunes an
    embedder through ``module_.encoder_path()`` and starts its from-scratch baseline from ``_initial_module(X)``.
    """

    # Every fitted attribute an embedder may have, as its docstring's Attributes section lists them: what save_model
    # writes and load_model accepts (tests/test_persistence.py checks both lists against fitted estimators).
    _fitted_attributes = (
        "module_",
        "history_",
        "n_iter_",
        "best_epoch_",
        "batch_size_",
        "device_",
        "hidden_dims_",
        "n_components_",
        "embedding_mean_",
        "embedding_scale_",
        "embedding_whitening_",
        "batch_categories_",
        "n_features_in_",
        "feature_names_in_",
    )

    _parameter_constraints: dict = {
        **BaseTorchEstimator._parameter_constraints,
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "hidden_dims": [StrOptions({"auto"}), tuple, list],
        "standardize": ["boolean"],
        "precision": [StrOptions({"float32", "bf16"})],
        "warm_start": ["boolean"],
        "checkpoint": [None, str],  # not path-like: save_model stores only plain data
    }
    _interrupt_hint = "Continue training with set_params(warm_start=True).fit(X), or with partial_fit(X)."

    # ------------------------------------------------------------------ hooks for the methods
    def _build_module(self, n_features, hidden_dims, statistics):
        """Return the torch module to train. It must have ``embed(x) -> Tensor`` (raw features to embedding) and
        ``encoder_path() -> nn.Module``: the part of the module that ``embed`` uses (sharing its layers), whose
        ``forward(x)`` and ``embed(x)`` equal the module's ``embed(x)``."""
        raise NotImplementedError

    def _batch_loss(self, module, x, targets=None, generator=None, shard=None):
        """Scalar loss of one batch ``x`` (raw features, float32, on the module's device); ``generator`` draws the
        corruptions (None: torch's global RNG). ``targets``: the batch (study) code of each row when fitted with
        ``batch=``, else None. ``shard``: None in one process; in a data-parallel fit, this rank's part of the batch
        (a :class:`skssl._distributed.BatchShard`), through which the loss gathers, slices and weighs rows."""
        raise NotImplementedError

    def _after_step(self, module):
        """Called after every optimiser step (BYOL updates its target network here)."""

    def _check_fit_values(self, statistics):
        """Method-specific checks of the fit data (e.g. non-negative counts)."""

    def _fit_statistics(self, X):
        """The statistics handed to ``_build_module`` (default: :func:`_statistics.column_statistics` of ``X``)."""
        return _statistics.column_statistics(X)

    # ------------------------------------------------------------------ the network
    def _resolved_hidden_dims(self, n_features):
        if isinstance(self.hidden_dims, str):
            return auto_hidden_dims(n_features)
        dims = tuple(self.hidden_dims)
        if not all(_validation.is_integer(d) and d >= 1 for d in dims):
            raise ValueError(
                f"hidden_dims must be 'auto' or a sequence of positive integers, got {self.hidden_dims!r}."
            )
        return dims

    def _new_module(self, n_features, statistics, device, seed):
        """Build the method's module with seeded initial weights, without disturbing torch's global RNG."""
        self._check_fit_values(statistics)
        hidden_dims = self._resolved_hidden_dims(n_features)
        with torch.random.fork_rng(devices=cuda_indices(device)):
            torch.manual_seed(seed)
            module = self._build_module(n_features, hidden_dims, statistics).to(device)
        return module, hidden_dims

    def _initial_module(self, X):
        """The module ``fit`` would start from on ``X`` (same architecture, statistics and seeded initial weights):
        the supervised estimators' from-scratch baseline (``pretrain=False``) starts from it."""
        device = _reading.resolve_device(self.device)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        return self._new_module(X.shape[1], self._fit_statistics(X), device, seed)[0]

    # ------------------------------------------------------------------ fitting
    def _module_attributes(self, module):
        """Method-specific fitted attributes read from a trained ``module`` (e.g. the VAE's views)."""
        return {}

    def _fit_network(self, X, warm, batch_codes, batch_categories):
        """Build the network (``warm``: a copy of the fitted one) and train it on the validated ``X``; return the
        :class:`TrainingRun` and the network's hidden widths (nothing is assigned: see :meth:`_training_state`).

        A fit from scratch with a ``checkpoint`` path resumes from the file when there is one (same seed, split,
        weights, optimiser and RNG states) and removes it once training has run to its end. ``batch_codes`` (one
        int per row, or None) reach the loss as the training targets.
        """
        device = _reading.resolve_device(self.device)
        rng = agreed_random_state(self.random_state, device)  # rank 0's state on every rank of a data-parallel fit
        seed = int(rng.randint(np.iinfo(np.int32).max))
        train_rows, validation_rows = self._split(X.shape[0], rng)
        checkpoint = resume = None
        if self.checkpoint is not None and not warm:
            fingerprint = run_fingerprint(type(self).__name__, self.get_params(deep=False), X.shape)
            if batch_codes is not None:  # only then: checkpoints of fits without batch keep their fingerprint
                labels = repr(batch_categories.tolist()).encode()
                fingerprint["batch"] = hashlib.sha256(labels + batch_codes.tobytes()).hexdigest()
            checkpoint = Checkpoint(self.checkpoint, fingerprint)
            resume = checkpoint.load()
            seed, train_rows, validation_rows = checkpoint.run(resume, seed, train_rows, validation_rows)
        if warm:
            # A copy: the fitted network stays as it is until the new state is complete.
            module, hidden_dims = copy.deepcopy(self.module_).to(device), self.hidden_dims_
        else:
            statistics = self._fit_statistics(X)
            statistics["n_batches"] = 0 if batch_categories is None else len(batch_categories)
            module, hidden_dims = self._new_module(X.shape[1], statistics, device, seed)
        run = self._train(
            X,
            module,
            self._batch_loss,
            device=device,
            rng=rng,
            seed=seed,
            train_rows=train_rows,
            validation_rows=validation_rows,
            targets=batch_codes,
            after_step=self._after_step,
            precision=self.precision,
            checkpoint=checkpoint,
            resume=resume,
            distributed=data_parallel(device),  # None unless a torch.distributed process group is initialised
        )
        if checkpoint is not None and run.result.stop_reason != "interrupted":
            checkpoint.remove()
        return run, hidden_dims

    def _training_state(self, run, warm, hidden_dims, batch_categories):
        """The fitted attributes of a fit's training run (not assigned): a warm start's history continues the
        fitted one."""
        state = self._training_attributes(run)
        if warm:  # one history across the fits, epochs counted from the first
            n_iter = self.n_iter_
            state["history_"] = {key: list(self.history_[key]) + state["history_"][key] for key in state["history_"]}
            state["n_iter_"] += n_iter
            state["best_epoch_"] += n_iter if state["best_epoch_"] else 0
        state["hidden_dims_"] = hidden_dims
        if batch_categories is not None:
            state["batch_categories_"] = batch_categories
        return state

    def _validate_input(self, X, *, reset):
        """Validate the ``X`` of fit (``reset=True``), partial_fit and transform; subclasses may accept more."""
        return _validation.validate_X(self, X, reset=reset)

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, batch=None):
        """Learn the representation from ``X`` without labels.

        After training, one more pass over ``X`` takes the mean and covariance of the embedding, from which
        ``transform`` standardises and scales its output (``embedding_mean_``, ``embedding_scale_``,
        ``embedding_whitening_``).
        Ctrl-C during the epochs stops training with the best weights so far and a ``FitInterruptedWarning``;
        Ctrl-C at any other point of ``fit`` leaves the estimator as it was before (fitted or not).

        Parameters
        ----------
        X : {array-like, sparse matrix, np.memmap} of shape (n_samples, n_features)
            Expression matrix, samples in rows. Sparse and memory-mapped input is read one batch at a time.
        y : None
            Ignored; present for API consistency.
        batch : array-like of shape (n_samples,) or None, default=None
            The batch (study, cohort, platform) of each sample, as strings or integers: pre-training then learns
            an embedding in which study identity is not worth encoding (see the estimator's description). Only
            ``fit`` takes it: ``transform`` of any sample, from a fitted study or a new one, needs no batch.
            Through scikit-learn's metadata routing (``set_fit_request(batch=True)``) a ``Pipeline``,
            ``cross_val_score(..., params={"batch": batch})`` or ``GridSearchCV`` pass it on. None: no batch.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        _input_checks.check_fit_target(self, X, y)  # before training: the Pipeline's next step reads this y
        warm = self.warm_start and hasattr(self, "module_")
        shape = getattr(X, "shape", None)
        if warm and shape is not None and len(shape) == 2 and shape[1] != self.n_features_in_:
            raise ValueError(
                f"warm_start=True continues training the fitted network, which takes {self.n_features_in_} "
                f"features, but X has {shape[1]}. Fit with warm_start=False to train a new network on these features."
            )
        with previous_state_on_error(self):
            X = self._validate_input(X, reset=not warm)
            if X.shape[0] < 2:
                raise ValueError(
                    f"Found array with {X.shape[0]} sample(s) (shape={X.shape}) while a minimum of 2 is required."
                )
            batch_codes, batch_categories = self._validate_batch(batch, X.shape[0], continuing=warm)
            run, hidden_dims = self._fit_network(X, warm, batch_codes, batch_categories)
            embedding_statistics = self._embedding_statistics_of(run.module, X, run.schedule.batch_size)
            # The whole new state, built here and assigned at once below.
            state = self._training_state(run, warm, hidden_dims, batch_categories)
            state["n_components_"] = self.n_components
            state.update(self._module_attributes(run.module))
            state.update(embedding_statistics)
            # A later partial_fit starts a fresh optimiser (keeping Adam's moments would double memory and pickle
            # size): the one of an earlier partial_fit goes.
            self.__dict__.pop("_optimizer", None)
            self._commit_fitted_state(state)
        self._warn_if_interrupted(run)
        return self

    @fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None, batch=None):
        """One pass over a chunk of samples, continuing training from the current state.

        For cohorts too large to pass to ``fit`` at once (or arriving in pieces): each call runs one epoch of
        optimisation steps over ``X`` with the optimiser state kept between calls. The first call builds the
        network and takes the standardisation statistics from its chunk, so make the first chunk representative
        (a random sample of the cohort). No validation split and no early stopping: the caller decides how many
        passes to make. Since the network changes with every call, each call recomputes ``embedding_mean_``,
        ``embedding_scale_`` and ``embedding_whitening_`` (which standardise and scale the output of
        ``transform``) from its own chunk ``X``. A call that does not finish (Ctrl-C included) leaves the
        estimator as it was before it.

        Parameters
        ----------
        X : {array-like, sparse matrix, np.memmap} of shape (n_samples, n_features)
            A chunk of samples (at least 2).
        y : None
            Ignored; present for API consistency.
        batch : array-like of shape (n_samples,) or None, default=None
            The batch (study) of each sample of the chunk, as in ``fit``. The first call fixes the batches
            (``batch_categories_``, so its chunk must hold every batch); later calls take labels among them, and
            pass batch if and only if the first call did.

        Returns
        -------
        self : object
            The updated estimator.
        """
        _input_checks.check_fit_target(self, X, y)
        first_call = not hasattr(self, "module_")
        with previous_state_on_error(self):
            X = self._validate_input(X, reset=first_call)
            if X.shape[0] < 2:
                raise ValueError(
                    f"Found array with {X.shape[0]} sample(s) (shape={X.shape}) while a minimum of 2 is required."
                )
            batch_codes, batch_categories = self._validate_batch(batch, X.shape[0], continuing=not first_call)
            if first_call:
                device = _reading.resolve_device(self.device)
                rng = check_random_state(self.random_state)
                seed = int(rng.randint(np.iinfo(np.int32).max))
                statistics = self._fit_statistics(X)
                statistics["n_batches"] = 0 if batch_categories is None else len(batch_categories)
                module, hidden_dims = self._new_module(X.shape[1], statistics, device, seed)
                optimizer = self._make_optimizer(module)
                state = {"hidden_dims_": hidden_dims, "device_": device, "n_components_": self.n_components}
                state["batch_size_"] = self._schedule(X.shape[0])[0]
                if batch_categories is not None:
                    state["batch_categories_"] = batch_categories
                history, n_iter = {"train_loss": [], "validation_loss": []}, 0
            else:
                # Copies: the fitted network and optimiser stay as they are until the new state is complete.
                module, optimizer = copy.deepcopy((self.module_, getattr(self, "_optimizer", None)))
                rng = getattr(self, "_partial_rng", None)
                if optimizer is None:  # continuing after ``fit``: its optimiser state was not kept
                    optimizer, rng = self._make_optimizer(module), check_random_state(self.random_state)
                state, history, n_iter = {}, self.history_, self.n_iter_
                device = next(module.parameters()).device
            batch_size = state.get("batch_size_", getattr(self, "batch_size_", None))
            targets = None if batch_codes is None else torch.as_tensor(batch_codes).to(device)
            with limited_torch_threads(), torch.random.fork_rng(devices=cuda_indices(device)):
                torch.manual_seed(int(rng.randint(np.iinfo(np.int32).max)))
                loss = train_epoch(
                    module,
                    self._batch_loss,
                    optimizer,
                    _reading.BatchReader(X, device),
                    rng.permutation(X.shape[0]),
                    min(batch_size, X.shape[0]),
                    device,
                    targets=targets,
                    after_step=self._after_step,
                    precision=self.precision,
                    name=type(self).__name__,
                )
            module.eval()
            state.update(module_=module, _optimizer=optimizer, _partial_rng=rng, n_iter_=n_iter + 1)
            state["best_epoch_"] = n_iter + 1
            state["history_"] = {
                "train_loss": list(history["train_loss"]) + [loss],
                "validation_loss": list(history["validation_loss"]),
            }
            if first_call:
                state.update(self._module_attributes(module))
            state.update(self._embedding_statistics_of(module, X, batch_size))
            self._commit_fitted_state({**self._kept_optional_attributes(first_call), **state})
        return self

    def transform(self, X):
        """Embed ``X`` with the trained encoder.

        The encoder never sees the batch (study) given to ``fit``: samples of a study the model never saw embed
        the same way as those of fitted studies, with no batch to pass.

        Parameters
        ----------
        X : {array-like, sparse matrix, np.memmap} of shape (n_samples, n_features)
            Same features, in the same order, as the data given to ``fit``.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components), dtype float32
            The embedding, standardised with statistics of the ``fit`` data: each component centred and scaled
            with its mean and standard deviation there (``embedding_mean_``, ``embedding_scale_``), then all of
            them multiplied by one factor, ``lambda_1 ** -0.25`` for the largest principal variance ``lambda_1``
            of the standardised components (``embedding_whitening_``, a multiple of the identity). On the ``fit``
            data the output has mean 0 and a leading principal variance of ``sqrt(lambda_1)``: ``LogisticRegression()``
            with its defaults converges on it without a ``StandardScaler``, and the dominant directions, which a
            classifier fitted on a few labels relies on, stay dominant.
        """
        check_is_fitted(self)
        X = self._validate_input(X, reset=False)
        return self._standardized_embedding(X)

    @property
    def _n_features_out(self):
        return self.n_components_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags
