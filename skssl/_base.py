"""The base class of every skssl estimator: parameters, validation, device handling and THE training loop.

A method (contrastive, masked, VAE) only says which torch module it trains (``_build_module``), what its loss on a
batch is (``_batch_loss``) and, optionally, what happens after each optimiser step (``_after_step``).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import re
import sys
import time
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from . import _data
from ._compat import DocLinkMixin, Interval, StrOptions, fit_context
from ._training import auto_batch_size, resolve_schedule  # noqa: F401 (auto_batch_size: re-exported)

# Gradients are clipped to this norm: expression data has heavy-tailed genes that can produce rare huge steps.
MAX_GRAD_NORM = 10.0


# Parameter and attribute descriptions shared by every embedder's docstring (filled in by ``fill_doc``).
TRAINING_PARAMETERS_DOC = """\
    hidden_dims : "auto" or tuple of int, default="auto"
        Widths of the encoder's hidden layers; "auto" uses two layers of 256 (under 1 000 features) or 512.
    dropout : float in [0, 1), default=0.1
        Dropout after each hidden layer.
    batch_size : "auto" or int, default="auto"
        Rows per optimisation step; "auto" is a quarter of the training rows, clipped to [32, 256].
    max_epochs : "auto" or int, default="auto"
        Passes over the data; "auto" aims for about 3 000 optimisation steps (between 3 and 500 epochs).
    learning_rate : float, default=1e-3
        AdamW learning rate. Lower it if training diverges.
    weight_decay : float, default=1e-5
        AdamW weight decay.
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the rows, stop when their loss stops improving and keep the weights of
        the best epoch. Ignored when the held-out part would have fewer than 2 rows.
    validation_fraction : float in (0, 1), default=0.1
        Fraction of rows held out for early stopping.
    n_iter_no_change : "auto" or int, default="auto"
        Epochs without improvement before stopping; "auto" waits for about 200 optimisation steps, at least 10
        epochs.
    tol : float, default=1e-4
        Relative improvement of the validation loss that counts as an improvement.
    standardize : bool, default=True
        Centre and scale each feature with statistics of the ``fit`` data (recommended for log-expression).
    device : str, default="auto"
        "auto" (CUDA if available, else CPU), "cpu", "cuda" or "cuda:N".
    precision : {"float32", "bf16"}, default="float32"
        "bf16" runs the forward and backward passes under bfloat16 autocast (fast on recent GPUs; losses and
        optimiser state stay in float32).
    random_state : int, RandomState instance or None, default=None
        Seeds the split, batch order, initial weights and random draws: same seed, same embedding on CPU.
    verbose : int, default=0
        Print the losses of every epoch to stderr.
"""

FITTED_ATTRIBUTES_DOC = """\
    history_ : dict
        ``"train_loss"`` and ``"validation_loss"`` per epoch.
    n_iter_ : int
        Number of epochs run.
    best_epoch_ : int
        Epoch whose weights were kept.
    batch_size_ : int
        Batch size used.
    hidden_dims_ : tuple of int
        Hidden layer widths used.
    n_components_ : int
        Dimension of the embedding.
    embedding_mean_ : ndarray of shape (n_components_,), dtype float32
        Mean of each component of the encoder output on the ``fit`` data (on the last chunk after
        ``partial_fit``); ``transform`` subtracts it.
    embedding_scale_ : ndarray of shape (n_components_,), dtype float32
        Standard deviation of each component of the encoder output on the same data (1 for a component with no
        spread); ``transform`` divides by it.
    embedding_whitening_ : ndarray of shape (n_components_, n_components_), dtype float32
        Symmetric matrix that ``transform`` applies to the standardised components: it scales every principal
        direction of their covariance on the same data whose variance exceeds 1 down to variance 1 and leaves
        the other directions unchanged (the identity when the components are uncorrelated).
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during ``fit`` (only when X has string column names).
"""


def _doc_entries(section):
    """Split a numpydoc section into ``{name: entry text}`` (an entry: its ``name : type`` line and description)."""
    entries = {}
    for entry in re.split(r"(?m)^(?=    \S)", section):
        if entry.strip():
            entries[entry.split(" : ")[0].strip()] = entry
    return entries


def fill_doc(cls=None, **overrides):
    """Class decorator: substitute the shared sections into ``%(training_parameters)s`` / ``%(fitted_attributes)s``.

    ``overrides`` replace the shared description of the named parameters, e.g.
    ``@fill_doc(dropout="    dropout : float, default=0.1\n        Dropout of the encoder.\n")``.
    """
    if cls is None:
        return lambda cls: fill_doc(cls, **overrides)
    entries = _doc_entries(TRAINING_PARAMETERS_DOC)
    unknown = set(overrides) - set(entries)
    if unknown:
        raise ValueError(f"fill_doc overrides unknown parameters: {sorted(unknown)}")
    training = "".join({**entries, **overrides}.values())
    cls.__doc__ = cls.__doc__.replace("    %(training_parameters)s\n", training).replace(
        "    %(fitted_attributes)s\n", FITTED_ATTRIBUTES_DOC
    )
    return cls


def auto_hidden_dims(n_features):
    """Two hidden layers, wider for wider inputs (256 under 1 000 genes, else 512)."""
    width = 256 if n_features < 1000 else 512
    return (width, width)


@contextlib.contextmanager
def limited_torch_threads():
    """Cap torch's intra-op threads at the OMP_NUM_THREADS that joblib/loky sets in its workers.

    Without this, ``GridSearchCV(n_jobs=k)`` starts k processes that each use every core.
    """
    previous = torch.get_num_threads()
    limit = os.environ.get("OMP_NUM_THREADS")
    if limit and limit.isdigit() and 0 < int(limit) < previous:
        torch.set_num_threads(int(limit))
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def make_adamw(params, *, lr, weight_decay):
    """AdamW with the fused (single-kernel) update where torch has one for the parameters' device.

    On a CPU the fused step of a ~3 M-parameter MLP is ~10x faster than the default per-tensor loop, which would
    otherwise cost a sizeable share of a training step.
    """
    params = list(params)
    groups = params if params and isinstance(params[0], dict) else [{"params": params}]
    devices = {p.device.type for group in groups for p in group["params"]}
    fused = bool(devices) and devices <= {"cpu", "cuda"}
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused, foreach=None if fused else True)


class BaseTorchEstimator(DocLinkMixin, BaseEstimator):
    """Parameters, validation, device handling and THE training loop of every skssl estimator; not for direct use.

    Subclasses provide ``_build_module`` and ``_batch_loss``; supervised subclasses pass ``targets`` to
    ``_fit_module`` and receive each batch's rows of it in ``_batch_loss``.
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "hidden_dims": [StrOptions({"auto"}), tuple, list],
        "dropout": [Interval(Real, 0.0, 1.0, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 2, None, closed="left")],
        "max_epochs": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0.0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0.0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0.0, 1.0, closed="neither")],
        "n_iter_no_change": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0.0, None, closed="left")],
        "standardize": ["boolean"],
        "device": [str, torch.device],
        "precision": [StrOptions({"float32", "bf16"})],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    # ------------------------------------------------------------------ hooks for the methods
    def _build_module(self, n_features, hidden_dims, statistics):
        """Return the torch module to train; it must have ``embed(x) -> Tensor``."""
        raise NotImplementedError

    def _batch_loss(self, module, x, targets=None, generator=None):
        """Scalar loss of one batch ``x`` (raw features, float32, on the module's device).

        ``targets`` holds the batch's rows of the ``targets`` given to ``_fit_module`` (None when none were).
        """
        raise NotImplementedError

    def _make_optimizer(self, module):
        return make_adamw(module.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)

    def _after_step(self, module):
        """Called after every optimiser step (BYOL updates its target network here)."""

    def _check_fit_values(self, statistics):
        """Method-specific checks of the fit data (e.g. non-negative counts)."""

    def _fit_statistics(self, X):
        """The statistics handed to ``_build_module`` (default: :func:`_data.column_statistics` of ``X``)."""
        return _data.column_statistics(X)

    # ------------------------------------------------------------------ fitting
    def _resolved_hidden_dims(self, n_features):
        if isinstance(self.hidden_dims, str):
            return auto_hidden_dims(n_features)
        dims = tuple(self.hidden_dims)
        if not all(_data.is_integer(d) and d >= 1 for d in dims):
            raise ValueError(f"hidden_dims must be 'auto' or a sequence of positive integers, got {self.hidden_dims!r}.")
        return dims

    def _split(self, n_samples, rng):
        """Indices of the training and validation rows (validation is empty when it would hold < 2 rows)."""
        order = rng.permutation(n_samples)
        n_val = int(round(self.validation_fraction * n_samples)) if self.early_stopping else 0
        if n_val < 2 or n_samples - n_val < 2:
            n_val = 0
        return np.sort(order[n_val:]), np.sort(order[:n_val])

    def _new_module(self, n_features, statistics, device, seed):
        """Build the method's module with seeded initial weights, without disturbing torch's global RNG."""
        self._check_fit_values(statistics)
        hidden_dims = self._resolved_hidden_dims(n_features)
        with torch.random.fork_rng(devices=_cuda_indices(device)):
            torch.manual_seed(seed)
            module = self._build_module(n_features, hidden_dims, statistics).to(device)
        return module, hidden_dims

    def _untrained_module(self, X):
        """The module ``fit`` would start from on ``X`` (same architecture, statistics and seeded weights).

        Used by the supervised estimators for their from-scratch baseline.
        """
        device = _data.resolve_device(self.device)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        return self._new_module(X.shape[1], self._fit_statistics(X), device, seed)[0]

    def _schedule(self, n_train):
        """Batch size, epochs and early-stopping patience for ``n_train`` training rows (resolving "auto")."""
        return resolve_schedule(
            n_train, batch_size=self.batch_size, max_epochs=self.max_epochs, n_iter_no_change=self.n_iter_no_change
        )

    def _fit_module(self, X, targets=None, statistics=None, module=None):
        """Train on ``X`` (and ``targets``, one row per sample, if given) and set the fitted attributes.

        Trains ``module`` when given, else a new module built by ``_build_module``.
        """
        device = _data.resolve_device(self.device)
        rng = check_random_state(self.random_state)
        torch_seed = int(rng.randint(np.iinfo(np.int32).max))
        if module is None:
            if statistics is None:
                statistics = self._fit_statistics(X)
            module, hidden_dims = self._new_module(X.shape[1], statistics, device, torch_seed)
        else:
            module, hidden_dims = module.to(device), None
        targets = None if targets is None else torch.as_tensor(targets).to(device)
        train_idx, val_idx = self._split(X.shape[0], rng)
        n_train = len(train_idx)
        batch_size, max_epochs, patience = self._schedule(n_train)
        reader = _data.BatchReader(X, device)

        with limited_torch_threads(), torch.random.fork_rng(devices=_cuda_indices(device)):
            torch.manual_seed(torch_seed)
            optimizer = self._make_optimizer(module)
            history = {"train_loss": [], "validation_loss": []}
            best_loss, best_state, best_epoch, stale = math.inf, None, 0, 0
            start_time = time.perf_counter()
            for epoch in range(max_epochs):
                order = train_idx[rng.permutation(n_train)]
                train_loss = self._train_epoch(module, optimizer, reader, targets, order, batch_size, device)
                history["train_loss"].append(train_loss)
                monitored = train_loss
                if len(val_idx):
                    monitored = self._evaluate(module, reader, targets, val_idx, batch_size, device, torch_seed)
                    history["validation_loss"].append(monitored)
                if self.verbose:
                    self._report(epoch, max_epochs, train_loss, monitored if len(val_idx) else None, start_time)
                if monitored < best_loss - self.tol * abs(best_loss if math.isfinite(best_loss) else 0.0):
                    best_loss, best_epoch, stale = monitored, epoch, 0
                    if self.early_stopping and len(val_idx):
                        best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
                else:
                    stale += 1
                    if self.early_stopping and stale >= patience:
                        break
            if best_state is not None:
                # The weights of the best validation epoch, not of the last one.
                module.load_state_dict(best_state)
        module.eval()
        # A later partial_fit starts a fresh optimiser on this module (keeping Adam's moments would double the
        # memory and pickle size of every fitted estimator).
        self.__dict__.pop("_optimizer", None)
        self.module_ = module
        self.history_ = history
        self.n_iter_ = epoch + 1
        self.best_epoch_ = best_epoch + 1
        self.batch_size_ = batch_size
        self.hidden_dims_ = hidden_dims
        self.device_ = device
        return self

    def _report(self, epoch, max_epochs, train_loss, validation_loss, start_time):
        val_text = "" if validation_loss is None else f", validation loss {validation_loss:.5g}"
        print(
            f"[{type(self).__name__}] epoch {epoch + 1}/{max_epochs}: train loss {train_loss:.5g}{val_text} "
            f"({time.perf_counter() - start_time:.1f} s)",
            file=sys.stderr,
        )

    def _train_epoch(self, module, optimizer, reader, targets, order, batch_size, device):
        module.train()
        total = torch.zeros((), device=device)
        seen = 0
        for rows, x in reader.batches(batch_size, order):
            if len(x) < 2:  # a 1-row remainder has no "other sample" to corrupt with nor any negative
                continue
            with self._autocast(device):
                loss = self._batch_loss(module, x, _rows_of(targets, rows, device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), MAX_GRAD_NORM)
            optimizer.step()
            self._after_step(module)
            total += loss.detach().float() * len(x)
            seen += len(x)
        mean_loss = (total / max(seen, 1)).item()  # one device sync per epoch, not per step
        if not math.isfinite(mean_loss):
            raise FloatingPointError(
                f"{type(self).__name__} training diverged (the loss became {mean_loss}). "
                f"Lower learning_rate (currently {self.learning_rate}), or check the input scale "
                "(e.g. log-transform raw counts, or keep standardize=True)."
            )
        return mean_loss

    @torch.no_grad()
    def _evaluate(self, module, reader, targets, rows, batch_size, device, seed):
        """Mean loss on ``rows`` under a fixed corruption seed, so epochs are compared on the same corruptions."""
        module.eval()
        generator = torch.Generator(device=device).manual_seed(seed)
        total = torch.zeros((), device=device)
        seen = 0
        for batch_rows, x in reader.batches(max(batch_size, 2), rows):
            if len(x) < 2:
                continue
            with self._autocast(device):
                loss = self._batch_loss(module, x, _rows_of(targets, batch_rows, device), generator=generator)
            total += loss.float() * len(x)
            seen += len(x)
        return (total / max(seen, 1)).item()

    def _autocast(self, device):
        """bf16 autocast when ``precision="bf16"`` (matmuls in bfloat16, reductions and the loss in float32)."""
        enabled = getattr(self, "precision", "float32") == "bf16"
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)

    # ------------------------------------------------------------------ inference
    def _module_device(self):
        return next(self.module_.parameters()).device

    def _mapped_batches(self, X, fn, batch_size=None, allow_nan=False):
        """Yield ``(rows, fn(batch))`` over ``X`` in batches, ``fn`` (a module-space tensor function) as float32 numpy.

        ``allow_nan`` lets NaN in out-of-core input through to ``fn`` (missing views); infinities are rejected.
        """
        device = self._module_device()
        batch_size = batch_size or max(self.batch_size_, 1024)
        self.module_.eval()
        check_finite = _data.is_out_of_core(X)
        for rows, block in _data.iter_batches(X, batch_size, check_finite=check_finite, allow_nan=allow_nan):
            with torch.inference_mode():
                yield rows, fn(_data.to_device(block, device)).float().cpu().numpy()

    def _map_batches(self, X, fn, n_out, batch_size=None, allow_nan=False):
        """Apply ``fn`` (module-space tensor function) to ``X`` in batches; return a float32 numpy array."""
        out = np.empty((_data.n_rows(X), n_out), dtype=np.float32)
        for rows, values in self._mapped_batches(X, fn, batch_size, allow_nan):
            out[rows] = values
        return out

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


def _cuda_indices(device):
    return [device.index or 0] if device.type == "cuda" else []


def _rows_of(targets, rows, device):
    if targets is None:
        return None
    index = torch.as_tensor(rows, device=device) if not isinstance(rows, slice) else rows
    return targets[index]


def variance_cap(covariance, cap=1.0):
    """Symmetric matrix ``W`` such that ``z @ W`` has every principal variance above ``cap`` reduced to ``cap``.

    With ``covariance = V diag(lambda) V^T``, ``W = V diag(sqrt(cap / max(lambda, cap))) V^T``: directions with
    at most ``cap`` variance are left as they are, larger ones are scaled down to exactly ``cap`` (a whitening
    of the dominant directions only). ``W`` is always invertible (its eigenvalues lie in ``(0, 1]``) and is the
    identity for uncorrelated components of variance at most ``cap``, including constant ones.

    >>> import numpy as np
    >>> W = variance_cap(np.array([[1.0, 0.8], [0.8, 1.0]]))
    >>> np.round(W.T @ np.array([[1.0, 0.8], [0.8, 1.0]]) @ W, 3)
    array([[0.6, 0.4],
           [0.4, 0.6]])
    >>> variance_cap(np.diag([1.0, 0.5, 0.0]))
    array([[1., 0., 0.],
           [0., 1., 0.],
           [0., 0., 1.]])
    """
    covariance = np.asarray(covariance, dtype=np.float64)
    eigenvalues, vectors = np.linalg.eigh((covariance + covariance.T) / 2)
    factors = np.sqrt(cap / np.maximum(eigenvalues, cap))
    whitening = (vectors * factors) @ vectors.T
    return (whitening + whitening.T) / 2


class BaseSSLEstimator(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseTorchEstimator):
    """Shared machinery of the self-supervised embedders (transformers); not for direct use."""

    def _validate_input(self, X, *, reset):
        """Validate the ``X`` of fit (``reset=True``), partial_fit and transform; subclasses may accept more."""
        return _data.validate_X(self, X, reset=reset)

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the representation from ``X`` without labels.

        After training, one more pass over ``X`` takes the mean and covariance of the embedding, from which
        ``transform`` standardises and decorrelates its output (``embedding_mean_``, ``embedding_scale_``,
        ``embedding_whitening_``).

        Parameters
        ----------
        X : {array-like, sparse matrix, np.memmap} of shape (n_samples, n_features)
            Expression matrix, samples in rows. Sparse and memory-mapped input is read one batch at a time.
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        X = self._validate_input(X, reset=True)
        if X.shape[0] < 2:
            raise ValueError(f"Found array with {X.shape[0]} sample(s) (shape={X.shape}) while a minimum of 2 is required.")
        self._fit_module(X)
        self.n_components_ = self.n_components
        self._fit_embedding_statistics(X)
        return self

    @fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """One pass over a chunk of samples, continuing training from the current state.

        For cohorts too large to pass to ``fit`` at once (or arriving in pieces): each call runs one epoch of
        optimisation steps over ``X`` with the optimiser state kept between calls. The first call builds the
        network and takes the standardisation statistics from its chunk, so make the first chunk representative
        (a random sample of the cohort). No validation split and no early stopping: the caller decides how many
        passes to make. Since the network changes with every call, each call recomputes ``embedding_mean_``,
        ``embedding_scale_`` and ``embedding_whitening_`` (which standardise and decorrelate the output of
        ``transform``) from its own chunk ``X``.

        Parameters
        ----------
        X : {array-like, sparse matrix, np.memmap} of shape (n_samples, n_features)
            A chunk of samples (at least 2).
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : object
            The updated estimator.
        """
        first_call = not hasattr(self, "module_")
        X = self._validate_input(X, reset=first_call)
        if X.shape[0] < 2:
            raise ValueError(f"Found array with {X.shape[0]} sample(s) (shape={X.shape}) while a minimum of 2 is required.")
        if first_call:
            device = _data.resolve_device(self.device)
            self._partial_rng = check_random_state(self.random_state)
            seed = int(self._partial_rng.randint(np.iinfo(np.int32).max))
            module, self.hidden_dims_ = self._new_module(X.shape[1], self._fit_statistics(X), device, seed)
            self._optimizer = self._make_optimizer(module)
            self.module_, self.device_, self.n_components_ = module, device, self.n_components
            self.batch_size_ = self._schedule(X.shape[0])[0]
            self.history_ = {"train_loss": [], "validation_loss": []}
            self.n_iter_ = self.best_epoch_ = 0
        device = self._module_device()
        if not hasattr(self, "_optimizer"):  # continuing after ``fit``: its optimiser state was not kept
            self._optimizer = self._make_optimizer(self.module_)
            self._partial_rng = check_random_state(self.random_state)
        rng = self._partial_rng
        with limited_torch_threads(), torch.random.fork_rng(devices=_cuda_indices(device)):
            torch.manual_seed(int(rng.randint(np.iinfo(np.int32).max)))
            loss = self._train_epoch(
                self.module_, self._optimizer, _data.BatchReader(X, device), None,
                rng.permutation(X.shape[0]), min(self.batch_size_, X.shape[0]), device,
            )
        self.module_.eval()
        self.history_["train_loss"].append(loss)
        self.n_iter_ += 1
        self.best_epoch_ = self.n_iter_
        self._fit_embedding_statistics(X)
        return self

    def transform(self, X):
        """Embed ``X`` with the trained encoder.

        Parameters
        ----------
        X : {array-like, sparse matrix, np.memmap} of shape (n_samples, n_features)
            Same features, in the same order, as the data given to ``fit``.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components), dtype float32
            The embedding, standardised and decorrelated with statistics of the ``fit`` data: each component
            centred and scaled with its mean and standard deviation there (``embedding_mean_``,
            ``embedding_scale_``), then every principal direction with a variance above 1 scaled down to
            variance 1 (``embedding_whitening_``). On the ``fit`` data the output has mean 0, no direction with
            more variance than one standardised component, and each component a variance of at most 1 (exactly 1
            when the components are uncorrelated), so that ``LogisticRegression()`` with its defaults converges
            on it without a ``StandardScaler``.
        """
        check_is_fitted(self)
        X = self._validate_input(X, reset=False)
        return self._standardized_embedding(X)

    # ------------------------------------------------------------------ unit-scale embedding
    def _embedding_allows_nan(self):
        """Whether NaN in the input may reach ``module_.embed`` (the VAE's missing views)."""
        return False

    def _fit_embedding_statistics(self, X):
        """Set ``embedding_mean_``, ``embedding_scale_`` and ``embedding_whitening_`` from the encoder output on
        (validated) ``X``.

        Streams ``X`` in batches and merges per-batch means and co-moment matrices (Chan et al.), so memory-mapped
        and sparse input is never loaded whole and only an (n_components, n_components) matrix is held.
        """
        k = self.n_components_
        count, mean, comoment = 0, np.zeros(k), np.zeros((k, k))
        for _, z in self._mapped_batches(X, self.module_.embed, allow_nan=self._embedding_allows_nan()):
            z = z.astype(np.float64)
            n, batch_mean = len(z), z.mean(axis=0)
            delta, total = batch_mean - mean, count + n
            centred = z - batch_mean
            mean += delta * (n / total)
            comoment += centred.T @ centred + np.outer(delta, delta) * (count * n / total)
            count = total
        covariance = comoment / count
        scale = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
        # A float32 component resolves about eps * |mean|: a smaller spread is rounding, not signal, and
        # dividing by it would blow rounding up (or divide by zero); such a component is only centred.
        spread = scale > 10 * np.finfo(np.float32).eps * np.abs(mean)
        scale[~spread] = 1.0
        self.embedding_mean_ = mean.astype(np.float32)
        self.embedding_scale_ = scale.astype(np.float32)
        # Correlation of the standardised components (components without spread left out: they stay centred).
        correlation = np.zeros((k, k))
        block = np.ix_(spread, spread)
        correlation[block] = (covariance / np.outer(scale, scale))[block]
        self.embedding_whitening_ = variance_cap(correlation).astype(np.float32)

    def _embedding_output(self, Z):
        """Standardise and decorrelate encoder outputs ``Z`` (float32, modified in place) as ``transform`` does."""
        Z -= self.embedding_mean_
        Z /= self.embedding_scale_
        return Z @ self.embedding_whitening_

    def _embedding_input(self, Z):
        """Undo :meth:`_embedding_output`: the encoder outputs whose ``transform`` is ``Z``."""
        # embedding_whitening_ is symmetric with eigenvalues in [1 / sqrt(n_components), 1]: well conditioned.
        raw = np.linalg.solve(self.embedding_whitening_.astype(np.float64), np.asarray(Z, dtype=np.float64).T).T
        return (raw * self.embedding_scale_ + self.embedding_mean_).astype(np.float32)

    def _standardized_embedding(self, X):
        """The encoder output on validated ``X``, standardised and decorrelated with the fit-data statistics."""
        Z = self._map_batches(X, self.module_.embed, self.n_components_, allow_nan=self._embedding_allows_nan())
        return self._embedding_output(Z)

    @property
    def _n_features_out(self):
        return self.n_components_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

