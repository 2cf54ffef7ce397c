"""ContrastiveEmbedder: SCARF (random feature corruption + NT-Xent) or BYOL (bootstrap with an EMA target)."""

from __future__ import annotations

import copy
import functools
from numbers import Real

from ._base import BaseSSLEstimator
from ._compat import Interval, StrOptions
from ._corruption import scarf_corrupt
from ._distributed import local_rows, row_mean, whole_batch, whole_batch_of
from ._docstrings import fill_doc
from ._losses import byol_loss, nt_xent
from ._nn import EncoderModule, Standardize, ema_update, make_mlp


class _ContrastiveModule(EncoderModule):
    def __init__(self, n_features, hidden_dims, n_components, dropout, mean, std, standardize, byol):
        super().__init__()
        width = hidden_dims[-1] if hidden_dims else 256
        self.preprocess = Standardize(mean, std, enabled=standardize)
        self.encoder = make_mlp(n_features, hidden_dims, n_components, dropout=dropout)
        self.projector = make_mlp(n_components, (width,), 128)
        self.byol = byol
        if byol:
            self.predictor = make_mlp(128, (width,), 128)
            # The target network is a slow copy of the online one and never gets gradients.
            self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
            self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)

    def online(self, x_std):
        return self.projector(self.encoder(x_std))

    def target(self, x_std):
        return self.target_projector(self.target_encoder(x_std))


@fill_doc
class ContrastiveEmbedder(BaseSSLEstimator):
    """Contrastive self-supervised embedding of expression profiles (SCARF, or BYOL as an option).

    For each sample, a fraction ``corruption_rate`` of its genes, chosen at random, is replaced by the same genes of
    other random samples (draws from each gene's empirical marginal). With ``objective="scarf"`` (Bahri et al.,
    2022) the encoder learns to match the embedding of a profile with that of its corrupted version against all
    other profiles of the batch (NT-Xent loss). With ``objective="byol"`` (Grill et al., 2020) two corrupted views
    are matched through an online predictor and a slowly updated (EMA) target network, without negatives.

    ``transform`` returns the encoder output, standardised with its per-component mean and standard deviation on the fit
    data, then multiplied by one factor, ``lambda_1 ** -0.25`` for the largest principal variance ``lambda_1`` (see
    ``transform``) (the projection head is only used for training).

    **Several studies at once** (``fit(X, batch=study)``): a corrupted gene takes its value from another sample of
    the same batch (study), and SCARF's negatives are the samples of the anchor's own batch (pairs across batches
    are left out of the NT-Xent denominator), so encoding study identity no longer helps the pretext task. Each
    batch needs at least 2 samples (else ``fit`` raises a ``ValueError``); within a training mini-batch, a
    batch represented by a single row takes its replacement values from any other row and, with SCARF, has no
    negative (its term of the loss is 0): with many small batches, a larger ``batch_size`` keeps more of them
    together. The encoder never sees the batch: ``transform`` embeds samples of any study, one the model never
    saw included, without a batch. With ``objective="byol"`` (no negatives) same-study donors were measured to
    *raise* the separation of studies in the embedding (``benchmarks/batch_aware_bladderbatch.py``,
    ``docs/benchmarks.md``): use SCARF, ``MaskedAutoencoder`` or ``VAEEmbedder`` to keep study identity out.

    Parameters
    ----------
    n_components : int, default=128
        Dimension of the embedding. A linear model on 128 dimensions keeps up with one on thousands of genes as
        labels grow, where 32 fell behind in our label-efficiency runs (``docs/benchmarks.md``).
    objective : {"scarf", "byol"}, default="scarf"
        Contrastive (NT-Xent) or bootstrap (BYOL) objective.
    corruption_rate : float in [0, 1), default=0.6
        Fraction of features of each sample replaced by marginal draws (exactly ``round(rate * n_features)``).
    temperature : float > 0, default=0.1
        NT-Xent temperature (``objective="scarf"``), chosen in the defaults sweep of ``docs/benchmarks.md``
        ("Choosing the embedders' defaults").
    ema_decay : float in [0, 1), default=0.99
        Decay of the exponential moving average that updates the BYOL target network.
    %(training_parameters)s

    Attributes
    ----------
    module_ : torch.nn.Module
        The trained network (``module_.encoder`` is the encoder).
    batch_categories_ : ndarray of shape (n_batches,)
        The batch (study) labels given to ``fit`` (sorted); only when fitted with ``batch``.
    %(fitted_attributes)s

    See Also
    --------
    MaskedAutoencoder : Masked-feature reconstruction (VIME).
    VAEEmbedder : Variational autoencoder (Gaussian or negative-binomial likelihood).

    Examples
    --------
    >>> from skssl import ContrastiveEmbedder
    >>> from skssl.datasets import make_expression
    >>> X, y = make_expression(n_samples=100, n_genes=50, random_state=0)
    >>> embedder = ContrastiveEmbedder(n_components=8, max_epochs=3, random_state=0)
    >>> embedder.fit_transform(X).shape
    (100, 8)
    """

    _parameter_constraints: dict = {
        **BaseSSLEstimator._parameter_constraints,
        "objective": [StrOptions({"scarf", "byol"})],
        "corruption_rate": [Interval(Real, 0.0, 1.0, closed="left")],
        "temperature": [Interval(Real, 0.0, None, closed="neither")],
        "ema_decay": [Interval(Real, 0.0, 1.0, closed="left")],
    }

    def __init__(
        self,
        n_components=128,
        *,
        objective="scarf",
        corruption_rate=0.6,
        temperature=0.1,
        ema_decay=0.99,
        hidden_dims="auto",
        dropout=0.1,
        batch_size="auto",
        max_epochs="auto",
        learning_rate=1e-3,
        weight_decay=1e-5,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change="auto",
        tol=1e-4,
        standardize=True,
        device="auto",
        precision="float32",
        random_state=None,
        verbose=0,
        warm_start=False,
        checkpoint=None,
    ):
        self.n_components = n_components
        self.objective = objective
        self.corruption_rate = corruption_rate
        self.temperature = temperature
        self.ema_decay = ema_decay
        self.hidden_dims = hidden_dims
        self.dropout = dropout
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.standardize = standardize
        self.device = device
        self.precision = precision
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.checkpoint = checkpoint

    def _build_module(self, n_features, hidden_dims, statistics):
        return _ContrastiveModule(
            n_features,
            hidden_dims,
            self.n_components,
            self.dropout,
            statistics["mean"],
            statistics["std"],
            self.standardize,
            byol=self.objective == "byol",
        )

    def _check_batch_counts(self, counts, categories):
        lone = categories[counts < 2].tolist()
        if lone:
            raise ValueError(
                f"ContrastiveEmbedder: batch {lone[0]!r} has a single sample ({len(lone)} such batch(es)). With "
                "batch=..., a corrupted gene takes its value from another sample of the same batch (and SCARF's "
                "negatives are samples of the same batch): a batch of one sample has none. Merge it into the most "
                "similar batch, drop it, or fit without batch."
            )

    def _batch_loss(self, module, x, targets=None, generator=None, shard=None):
        # In a data-parallel fit x is this rank's shard of the batch: the corruptions are drawn over the whole
        # batch (the marginal donors are its rows) and sliced, and NT-Xent compares with every row (skssl._distributed).
        # targets: the batch (study) code of each row when fitted with batch=...: donors and negatives are then
        # rows of the same study.
        x = module.preprocess(x)
        batch = whole_batch_of(x, shard)
        groups = None if targets is None else whole_batch_of(targets, shard)
        corrupt = scarf_corrupt if groups is None else functools.partial(scarf_corrupt, groups=groups)
        if self.objective == "scarf":
            corrupted = local_rows(corrupt(batch, self.corruption_rate, generator)[0], shard)
            z, z_corrupted = whole_batch_of(module.online(x), shard), whole_batch_of(module.online(corrupted), shard)
            return whole_batch(nt_xent(z, z_corrupted, self.temperature, groups=groups), shard)
        view1 = local_rows(corrupt(batch, self.corruption_rate, generator)[0], shard)
        view2 = local_rows(corrupt(batch, self.corruption_rate, generator)[0], shard)
        p1, p2 = module.predictor(module.online(view1)), module.predictor(module.online(view2))
        return row_mean(0.5 * (byol_loss(p1, module.target(view2)) + byol_loss(p2, module.target(view1))), shard)

    def _after_step(self, module):
        if self.objective == "byol":
            ema_update(module.target_encoder, module.encoder, self.ema_decay)
            ema_update(module.target_projector, module.projector, self.ema_decay)
