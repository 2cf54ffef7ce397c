"""Semi-supervised phenotype predictors: every sample shapes the model, the labeled ones train it.

Two strategies. ``"ensemble"`` (the default, see :mod:`skssl._ensemble`): linear models on the standardised genes
and on the whitened top principal components, label spreading over a nearest-neighbour graph, and (when an
embedder is given) a linear model on a self-supervised embedding, all fitted on every row and weighted by held-out
predictions of the labeled rows. ``"finetune"``: the protocol of the reference study, an embedder pre-trained on
all samples without labels, then its encoder and a small head trained on the labeled samples only;
``pretrain=False`` gives its honest baseline, the same network trained from random weights on the labeled samples.
"""

from __future__ import annotations

import copy
import numbers
import warnings
from numbers import Real

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import softmax
from sklearn.base import ClassifierMixin, RegressorMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.utils import check_random_state, get_tags
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_consistent_length, check_is_fitted, column_or_1d
from torch import nn

from . import _data, _ensemble
from ._compat import Interval, InvalidParameterError, StrOptions, fit_context
from ._base import BaseSSLEstimator, BaseTorchEstimator, _cuda_indices, make_adamw
from ._nn import Standardize, make_mlp
from .masked import MaskedAutoencoder

__all__ = ["SSLClassifier", "SSLRegressor"]

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


class _FineTuneModule(nn.Module):
    """An embedder's embedding path (``body``: raw features -> embedding), a fixed standardisation of the
    embedding (``scale``) and a prediction ``head``."""

    def __init__(self, body, scale, head, frozen):
        super().__init__()
        self.body = body
        self.scale = scale
        self.head = head
        self.frozen = frozen

    def embed(self, x):
        return self.body.embed(x)

    def forward(self, x):
        return self.head(self.scale(self.body.embed(x)))

    def train(self, mode=True):
        super().train(mode)
        if self.frozen:
            # A frozen encoder is a fixed feature map: no dropout noise in its output while the head trains.
            self.body.eval()
        return self


def _embedding_path(module, n_features):
    """A copy of ``module`` reduced to what its ``embed`` uses, and the embedding dimension.

    The embedders' modules also hold decoders, projection heads or BYOL target networks; they are dropped here
    (found by which parameters get a gradient through ``embed``) so that the fine-tuned model stays small.
    Parameters left that ``embed`` does not use are frozen.
    """
    body = copy.deepcopy(module).requires_grad_(True).eval()
    device = next(body.parameters()).device
    # Positive values: valid input for every preprocessing (standardisation, log-normalisation of counts).
    generator = torch.Generator().manual_seed(0)
    probe = (torch.rand((2, n_features), generator=generator) + 0.5).to(device)
    with torch.enable_grad():
        reference = body.embed(probe)
        params = list(body.parameters())
        grads = torch.autograd.grad(reference.sum(), params, allow_unused=True)
    used = {id(p) for p, g in zip(params, grads) if g is not None}
    removed = {}
    for name, child in list(body.named_children()):
        child_params = list(child.parameters())
        if child_params and not any(id(p) in used for p in child_params):
            removed[name] = child
            delattr(body, name)
    try:
        with torch.no_grad():
            intact = torch.equal(body.embed(probe), reference.detach())
    except (AttributeError, RuntimeError):
        intact = False
    if not intact:  # ``embed`` needs something the probe did not reveal: keep the whole module
        for name, child in removed.items():
            setattr(body, name, child)
    for p in body.parameters():
        p.requires_grad_(id(p) in used)
    return body, reference.shape[1]


@torch.no_grad()
def _embeddings(body, X, rows):
    """Embeddings of ``X[rows]`` (in eval mode), float64 on the CPU."""
    body.eval()
    device = next(body.parameters()).device
    embeddings = torch.cat(
        [
            body.embed(_data.to_device(block, device)).double().cpu()
            for _, block in _data.iter_batches(X, _data.CHUNK_ROWS, indices=rows)
        ]
    )
    return embeddings


class _BaseFineTune(BaseTorchEstimator):
    """Shared fitting of SSLClassifier and SSLRegressor; not for direct use."""

    _parameter_constraints: dict = {
        "embedder": [BaseSSLEstimator, FrozenEstimator, None],
        "strategy": [StrOptions({"ensemble", "finetune"})],
        "members": [tuple, list, None],
        "pretrain": ["boolean"],
        "prefit": ["boolean"],
        "finetune": [StrOptions({"full", "head"})],
        "encoder_lr_ratio": [Interval(Real, 0.0, None, closed="neither")],
        "head_hidden_dims": [tuple, list],
        **{key: BaseTorchEstimator._parameter_constraints[key] for key in _SHARED_KEYS},
    }

    # ------------------------------------------------------------------ target handling, per task
    def _labeled_mask(self, y):
        raise NotImplementedError

    def _encode_targets(self, y_labeled):
        """Validate the labeled targets, set the target attributes; return (encoded targets, strata or None)."""
        raise NotImplementedError

    def _n_outputs(self):
        raise NotImplementedError

    def _full_targets(self, n_samples, rows, encoded):
        raise NotImplementedError

    # ------------------------------------------------------------------ fitting
    def _resolved_embedder(self):
        embedder = MaskedAutoencoder() if self.embedder is None else self.embedder
        return embedder.estimator if isinstance(embedder, FrozenEstimator) else embedder

    def _uses_prefit(self):
        # A FrozenEstimator is fitted by definition: clone() keeps it, fit() does not change it.
        return self.prefit or isinstance(self.embedder, FrozenEstimator)

    def _configured_embedder(self, seed):
        """A clone of the embedder that follows this estimator's seed, device and verbosity where it has none."""
        embedder = clone(self._resolved_embedder())
        params = embedder.get_params(deep=False)
        overrides = {}
        if "random_state" in params and params["random_state"] is None:
            overrides["random_state"] = seed
        if "device" in params and isinstance(params["device"], str) and params["device"] == "auto":
            overrides["device"] = self.device
        if "verbose" in params and not params["verbose"] and self.verbose:
            overrides["verbose"] = self.verbose
        return embedder.set_params(**overrides)

    def _fit(self, X, y):
        if not isinstance(self._resolved_embedder(), BaseSSLEstimator):
            raise InvalidParameterError(
                f"The 'embedder' parameter of {type(self).__name__} must be an skssl embedder (possibly in a "
                f"FrozenEstimator) or None. Got {self.embedder!r} instead."
            )
        if self.prefit and not self.pretrain:
            raise ValueError("prefit=True uses an already trained embedder; it cannot be combined with pretrain=False.")
        if not all(_data.is_integer(width) and width >= 1 for width in self.head_hidden_dims):
            raise ValueError(
                f"head_hidden_dims must be a sequence of positive integers, got {self.head_hidden_dims!r}."
            )
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None.")
        X = _data.validate_X(self, X, reset=True)
        y = column_or_1d(y, warn=True)
        check_consistent_length(X, y)
        rows = np.flatnonzero(self._labeled_mask(y))
        if len(rows) < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 labeled samples, got {len(rows)} sample(s) with a label "
                f"among {len(y)}."
            )
        try:
            return self._fit_labeled(X, rows, *self._encode_targets(y[rows]))
        finally:
            for name in ("_fit_rows", "_fit_strata", "_loss_weight"):  # state of this fit only
                self.__dict__.pop(name, None)

    def _check_prefit_embedder(self, embedder, X):
        try:
            check_is_fitted(embedder)
        except NotFittedError as exc:
            raise NotFittedError(
                f"The embedder {type(embedder).__name__} is not fitted, but prefit=True (or a FrozenEstimator "
                "embedder) means it is used as is. Fit it first, or use prefit=False to let fit pre-train a copy "
                "of it on X. Note that clone() (used by cross-validation "
                "and grid searches) returns an unfitted copy of the embedder: wrap the fitted embedder in "
                "sklearn.frozen.FrozenEstimator to keep it fitted."
            ) from exc
        if embedder.n_features_in_ != X.shape[1]:
            raise ValueError(
                f"X has {X.shape[1]} features, but the prefit embedder was fitted on {embedder.n_features_in_}."
            )
        names, fitted_names = getattr(self, "feature_names_in_", None), getattr(embedder, "feature_names_in_", None)
        if names is not None and fitted_names is not None and not np.array_equal(names, fitted_names):
            raise ValueError("The feature names of X differ from those the prefit embedder was fitted on.")

    def _resolved_members(self):
        if self.members is None:
            # The embedding joins when the user asks for an embedder; without one, the members the
            # leave-one-dataset-out selection kept (docs/benchmarks.md) need no pre-training at all.
            return _ensemble.DEFAULT_MEMBERS + (() if self.embedder is None else ("embedding",))
        members = tuple(self.members)
        unknown = [m for m in members if m not in _ensemble.MEMBERS]
        if not members or unknown or len(set(members)) != len(members):
            raise ValueError(
                f"members must be a non-empty sequence of distinct names among {_ensemble.MEMBERS} (or None for the "
                f"default); got {self.members!r}."
            )
        return members

    def _pretrained_embedder(self, X, seed):
        """A copy of the prefit embedder (checked against ``X``), or a clone pre-trained on every row of ``X``."""
        if self._uses_prefit():
            self._check_prefit_embedder(self._resolved_embedder(), X)
            return copy.deepcopy(self._resolved_embedder())
        # Every row, labeled or not, trains the self-supervised objective; the labels stay hidden.
        return self._configured_embedder(seed).fit(X)

    def _fit_ensemble(self, X, rows, encoded):
        members = self._resolved_members()
        rng = check_random_state(self.random_state)
        embedder_seed, seed = (int(s) for s in rng.randint(np.iinfo(np.int32).max, size=2))
        self.embedder_, embedding = None, None
        if "embedding" in members:
            if not self.pretrain:
                raise ValueError(
                    "pretrain=False (the from-scratch network) belongs to strategy='finetune'; the 'embedding' member "
                    "of strategy='ensemble' needs a pre-trained embedder. Use strategy='finetune', or drop "
                    "'embedding' from members."
                )
            self.embedder_ = self._pretrained_embedder(X, embedder_seed)
            embedding = self._embed(X)
        task = "classification" if isinstance(self, ClassifierMixin) else "regression"
        n_classes = len(self.classes_) if task == "classification" else None
        target = self._full_targets(X.shape[0], rows, encoded)
        weights = getattr(self, "_loss_weight", None)
        class_weight = None if weights is None else weights.cpu().numpy().astype(np.float64)
        self.ensemble_ = _ensemble.SemiSupervisedEnsemble(task, members, n_classes, seed, class_weight)
        self.ensemble_.fit(_ensemble.dense_rows(X), rows, target, embedding)
        self.members_ = members
        self.weights_ = dict(self.ensemble_.weights_)
        return self

    def _ensemble_outputs(self, X):
        """Weighted member average: class probabilities, or standardised predictions."""
        check_is_fitted(self)
        X = _data.validate_X(self, X, reset=False)
        embedding = self._embed(X) if "embedding" in self.members_ else None
        return self.ensemble_.predict(_ensemble.dense_rows(X), embedding)

    def _embed(self, X):
        """``embedder_.transform`` of the validated ``X``. Validation turned a DataFrame into an array; its gene
        names were already checked against ours (and, for a prefit embedder, ours against the embedder's), so the
        embedder's warning about an array without names says nothing here."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="X does not have valid feature names", category=UserWarning)
            return self.embedder_.transform(X)

    def _fit_labeled(self, X, rows, encoded, strata):
        if self.strategy == "ensemble":
            return self._fit_ensemble(X, rows, encoded)
        rng = check_random_state(self.random_state)
        embedder_seed, head_seed = (int(s) for s in rng.randint(np.iinfo(np.int32).max, size=2))
        if self.pretrain:
            self.embedder_ = self._pretrained_embedder(X, embedder_seed)
            source = self.embedder_.module_
        else:
            # From-scratch baseline: the module the embedder would start from, on the labeled rows only.
            self.embedder_ = None
            source = self._configured_embedder(embedder_seed)._untrained_module(X[rows])

        body, n_components = _embedding_path(source, X.shape[1])
        frozen = self.finetune == "head"
        if frozen:
            body.requires_grad_(False)
        # Embeddings come at any scale (a VAE mean is near unit, a contrastive one need not be): standardised,
        # they give the head's learning rate the same meaning with every embedder.
        embeddings = _embeddings(body, X, rows)
        scale = Standardize(embeddings.mean(dim=0), embeddings.std(dim=0, correction=0))
        device = _data.resolve_device(self.device)
        with torch.random.fork_rng(devices=_cuda_indices(device)):
            torch.manual_seed(head_seed)
            head = make_mlp(n_components, tuple(self.head_hidden_dims), self._n_outputs(), dropout=self.dropout)
        if self.embedder_ is not None and not self.head_hidden_dims:
            # Linear probe, then fine-tuning (LP-FT, Kumar et al. 2022): the head starts as the probe that fits
            # the labeled rows, so the first gradient steps refine the pre-trained features instead of pushing
            # them around to fit a random head.
            self._init_linear_head(head[-1], scale(embeddings.float()).double().numpy(), encoded, head_seed)
        module = _FineTuneModule(body, scale, head, frozen)

        # The training loop sees all rows of X, but ``_split`` only ever hands it the labeled ones.
        self._fit_rows, self._fit_strata = rows, strata
        self._fit_module(X, targets=self._full_targets(X.shape[0], rows, encoded), module=module)
        self.n_components_ = n_components
        return self

    def _init_linear_head(self, layer, embeddings, encoded, seed):
        """Set a linear head from a model fitted on the standardised embeddings of the labeled rows (no-op here)."""

    def _split(self, n_samples, rng):
        """Training and validation rows among the labeled rows; for classification, stratified by class.

        Validation is skipped when it would hold fewer than 2 rows or leave fewer than 2 to train on, and for
        classification unless every class has a row on both sides (as a stratified split requires): with a
        handful of labels, early stopping on a validation loss over one or two samples stops at random.
        """
        rows = self._fit_rows
        no_validation = rows, rows[:0]
        n_val = round(self.validation_fraction * len(rows)) if self.early_stopping else 0
        if n_val < 2 or len(rows) - n_val < 2:
            return no_validation
        if self._fit_strata is None:
            order = rng.permutation(len(rows))
            return np.sort(rows[order[n_val:]]), np.sort(rows[order[:n_val]])
        groups, counts = np.unique(self._fit_strata, return_counts=True)
        if n_val < len(groups) or counts.min() < 2:
            return no_validation
        # One validation row per class, the rest by largest remainder, leaving each class a training row.
        quotas = n_val * counts / counts.sum()
        take = np.clip(np.floor(quotas).astype(int), 1, counts - 1)
        for g in np.argsort(-(quotas - np.floor(quotas)), kind="stable"):
            if take.sum() >= n_val:
                break
            take[g] = min(take[g] + 1, counts[g] - 1)
        is_val = np.zeros(len(rows), dtype=bool)
        for group, n_take in zip(groups, take):
            members = np.flatnonzero(self._fit_strata == group)
            is_val[members[rng.permutation(len(members))[:n_take]]] = True
        return rows[~is_val], rows[is_val]

    def _make_optimizer(self, module):
        groups = [{"params": list(module.head.parameters()), "lr": self.learning_rate}]
        encoder_params = [p for p in module.body.parameters() if p.requires_grad]
        if encoder_params:
            # A pre-trained encoder moves slowly so the few labels adjust, not overwrite, what it learned.
            ratio = 1.0 if self.embedder_ is None else self.encoder_lr_ratio
            groups.append({"params": encoder_params, "lr": self.learning_rate * ratio})
        return make_adamw(groups, lr=self.learning_rate, weight_decay=self.weight_decay)

    def _outputs(self, X):
        """Network outputs (logits, or standardised predictions) in float64."""
        check_is_fitted(self)
        X = _data.validate_X(self, X, reset=False)
        device = self._module_device()
        out = np.empty((_data.n_rows(X), self._n_outputs()))
        self.module_.eval()
        with torch.inference_mode():
            # In float64: float32 matrix products vary in the last digits with the batch's shape, and a sample's
            # prediction must not depend on which other samples are predicted with it.
            weights = {
                name: value.double() if value.is_floating_point() else value
                for name, value in self.module_.state_dict().items()
            }
            for rows, block in _data.iter_batches(X, max(self.batch_size_, 1024), check_finite=_data.is_out_of_core(X)):
                x = _data.to_device(block, device).double()
                out[rows] = torch.func.functional_call(self.module_, weights, (x,)).cpu().numpy()
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = get_tags(self._resolved_embedder()).input_tags.positive_only
        return tags


_STRATEGY_PARAMETERS = """strategy : {"ensemble", "finetune"}, default="ensemble"
        ``"ensemble"``: the recommended start (described above). Members read views of all rows of ``X`` (labeled and
        unlabeled) and are trained on the labeled rows; their predictions are averaged with weights chosen on
        held-out predictions of the labeled rows. ``"finetune"``: the reference study's protocol, pre-training then
        fine-tuning the encoder with a head (the parameters from ``finetune`` to ``verbose`` apply to it only).
    members : tuple of str or None, default=None
        Members of the ensemble, among ``"genes"`` (linear model on the standardised genes), ``"pcs"`` (linear
        model on the 8 whitened top principal components of all rows), ``"graph"`` (label spreading over the
        10-nearest-neighbour graph of all rows in the space of their 10 top principal components) and
        ``"embedding"`` (linear model on the embedding of ``embedder``, pre-trained on all rows). None:
        ``("genes", "pcs", "graph")``, plus ``"embedding"`` when ``embedder`` is given."""

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
        Passes over the labeled rows; "auto" aims for about 3 000 optimisation steps (between 10 and 500 epochs).
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
        Print the losses of every epoch to stderr (also for the pre-training when the embedder's ``verbose``
        is 0)."""

_COMMON_ATTRIBUTES = """embedder_ : estimator or None
        The fitted embedder (a fitted clone of ``embedder``, or a copy of it with ``prefit=True``); None for the
        baseline (``pretrain=False``) and for an ensemble without the ``"embedding"`` member. Fine-tuning changes a
        copy of its encoder, not ``embedder_`` itself.
    members_ : tuple of str
        With ``strategy="ensemble"``: the members used.
    weights_ : dict of str to float
        With ``strategy="ensemble"``: each member's weight in the average (they sum to 1). Uniform when the labels
        are too few to judge the members (fewer than 3 per class, or 10 labeled rows for regression); otherwise
        from greedy ensemble selection on leave-one-out (up to 40 labeled rows) or 5-fold held-out predictions.
    ensemble_ : object
        With ``strategy="ensemble"``: the fitted members and views (``ensemble_.held_out_loss_``: each member's
        held-out log-loss or squared error, None when the weights are uniform).
    module_ : torch.nn.Module
        With ``strategy="finetune"`` (as the attributes below): the trained network: ``module_.body`` (the
        encoder, raw features to embedding), ``module_.scale`` (a fixed standardisation of the embedding,
        statistics of the labeled rows) and ``module_.head``.
    n_components_ : int
        Dimension of the embedding the head reads.
    history_ : dict
        ``"train_loss"`` and ``"validation_loss"`` of the supervised training, per epoch.
    n_iter_ : int
        Number of epochs of supervised training run.
    best_epoch_ : int
        Epoch whose weights were kept.
    batch_size_ : int
        Batch size used for the supervised training.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during ``fit`` (only when X has string column names)."""


def _is_missing_label(value):
    if value is None or type(value).__name__ == "NAType":
        return True
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return bool(np.isnan(value)) or value == -1  # NaN, or scikit-learn's -1
    return False


class SSLClassifier(ClassifierMixin, _BaseFineTune):
    __doc__ = f"""Semi-supervised phenotype classifier: all samples shape the model, the labeled ones train it.

    ``fit(X, y)`` follows scikit-learn's semi-supervised convention: rows whose label is ``-1`` are unlabeled
    (as in :class:`~sklearn.semi_supervised.SelfTrainingClassifier`).

    With the default ``strategy="ensemble"`` — the recommended start — several members see every row of ``X``
    and learn from the labeled ones: a logistic regression on the standardised genes (the linear baseline, so
    the ensemble contains what it must beat), a logistic regression on the whitened top principal components of
    all rows (a low-rank view that needs few labels), label spreading over a nearest-neighbour graph of all rows
    (Zhou et al., 2004: labels flow to similar unlabeled samples) and, when ``embedder`` is given, a logistic
    regression on its self-supervised embedding pre-trained on all rows. Their class probabilities are averaged:
    uniformly when fewer than 3 samples per class are labeled, otherwise with weights chosen by greedy ensemble
    selection (Caruana et al., 2004) on held-out predictions of the labeled rows, so that with many labels the
    weight goes to what predicts them best. The unlabeled rows change the model (principal components, scaling,
    graph, embedding); their labels are never read. These defaults were chosen by leave-one-dataset-out over
    four cohorts (``docs/benchmarks.md``): with 10 % of the labels they beat the better of logistic regression
    and PCA + logistic regression on three of the four and trailed it by 0.011 on the fourth, and with all labels
    they stayed within 0.005 of it; a default fit takes seconds.

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

    _parameter_constraints: dict = {
        **_BaseFineTune._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
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
        """Pre-train the embedder on all rows of ``X``, then fine-tune it with a head on the labeled rows.

        Parameters
        ----------
        X : {array-like, sparse matrix, np.memmap} of shape (n_samples, n_features)
            Expression matrix, samples in rows; labeled and unlabeled samples together.
        y : array-like of shape (n_samples,)
            Class labels; ``-1`` (or None/NaN in an object array) marks an unlabeled sample. At least 2 labeled
            samples of at least 2 classes are needed.

        Returns
        -------
        self : object
            The fitted classifier.
        """
        return self._fit(X, y)

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
                    stacklevel=_data.user_stacklevel(),
                )
        if y.dtype.kind == "O":
            return ~np.fromiter((_is_missing_label(v) for v in y), dtype=bool, count=len(y))
        return np.ones(len(y), dtype=bool)  # strings and booleans have no unlabeled marker

    def _encode_targets(self, y_labeled):
        if y_labeled.dtype.kind == "f" and not np.isfinite(y_labeled).all():
            raise ValueError("Input y contains infinity or a value too large for dtype('float64').")
        check_classification_targets(y_labeled)
        self.classes_, encoded = np.unique(y_labeled, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs labeled samples of at least 2 classes; got 1 class "
                f"({self.classes_[0]!r})."
            )
        if self.class_weight is not None:
            weights = compute_class_weight(self.class_weight, classes=self.classes_, y=y_labeled)
            self._loss_weight = torch.as_tensor(weights, dtype=torch.float32, device=_data.resolve_device(self.device))
        return encoded.astype(np.int64), encoded

    def _n_outputs(self):
        return len(self.classes_)

    def _full_targets(self, n_samples, rows, encoded):
        # Unlabeled rows get an invalid class index: if one ever reached the loss, cross-entropy would fail.
        targets = np.full(n_samples, -1, dtype=np.int64)
        targets[rows] = encoded
        return targets

    def _batch_loss(self, module, x, targets=None, generator=None):
        return F.cross_entropy(module(x), targets, weight=getattr(self, "_loss_weight", None))

    def _init_linear_head(self, layer, embeddings, encoded, seed):
        # The same probe as Pipeline([embedder, StandardScaler(), LogisticRegression()]).
        weights = getattr(self, "_loss_weight", None)
        class_weight = None if weights is None else dict(enumerate(weights.cpu().numpy().tolist()))
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


class SSLRegressor(RegressorMixin, _BaseFineTune):
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
    {_COMMON_ATTRIBUTES}

    See Also
    --------
    SSLClassifier : The same for class labels.

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
        """Pre-train the embedder on all rows of ``X``, then fine-tune it with a head on the rows with a target.

        Parameters
        ----------
        X : {array-like, sparse matrix, np.memmap} of shape (n_samples, n_features)
            Expression matrix, samples in rows; labeled and unlabeled samples together.
        y : array-like of shape (n_samples,)
            Continuous target; NaN marks an unlabeled sample. At least 2 samples need a target.

        Returns
        -------
        self : object
            The fitted regressor.
        """
        return self._fit(X, y)

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
        self._y_mean = float(y_labeled.mean())
        scale = float(y_labeled.std())
        self._y_scale = scale if scale > 0 else 1.0
        return ((y_labeled - self._y_mean) / self._y_scale).astype(np.float32), None

    def _n_outputs(self):
        return 1

    def _full_targets(self, n_samples, rows, encoded):
        # Unlabeled rows keep NaN: if one ever reached the loss, training would fail as diverged.
        targets = np.full(n_samples, np.nan, dtype=np.float32)
        targets[rows] = encoded
        return targets

    def _batch_loss(self, module, x, targets=None, generator=None):
        return F.mse_loss(module(x)[:, 0], targets)

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
        return outputs * self._y_scale + self._y_mean
