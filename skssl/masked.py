"""MaskedAutoencoder: VIME self-supervised learning (mask estimation + feature reconstruction)."""

from __future__ import annotations

from numbers import Real

from ._base import BaseSSLEstimator
from ._compat import Interval
from ._corruption import vime_mask
from ._distributed import local_rows, row_mean, whole_batch_of
from ._docstrings import fill_doc
from ._losses import vime_loss
from ._nn import EncoderModule, Standardize, make_mlp, with_batch_code
from ._training import MASKED_AUTOENCODER_PATIENCE_STEPS


class _MaskedModule(EncoderModule):
    n_batches = 0  # a class default: modules pickled before batch conditioning have no such attribute

    def __init__(self, n_features, hidden_dims, n_components, dropout, mean, std, standardize, n_batches=0):
        super().__init__()
        width = hidden_dims[-1] if hidden_dims else 256
        self.preprocess = Standardize(mean, std, enabled=standardize)
        self.encoder = make_mlp(n_features, hidden_dims, n_components, dropout=dropout)
        # Both heads read the code and, when fitted with batches, the one-hot study: they explain study identity.
        self.n_batches = n_batches
        self.mask_head = make_mlp(n_components + n_batches, (width,), n_features)
        self.feature_head = make_mlp(n_components + n_batches, (width,), n_features)


@fill_doc(
    n_iter_no_change="""\
    n_iter_no_change : "auto" or int, default="auto"
        Epochs without improvement before stopping; "auto" waits for about 100 optimisation steps, at least 10
        epochs (50 epochs of a 2-step epoch on a cohort of about 50 samples): half the other embedders' patience,
        chosen because on small cohorts it keeps the best epoch while the fit takes about half the time (see
        "The default schedule" in the documentation). The verbose progress shows the time left until the epoch
        where this rule stops the run if the loss does not improve again.
"""
)
class MaskedAutoencoder(BaseSSLEstimator):
    """Masked-feature self-supervised embedding (VIME, Yoon et al., 2020).

    Each entry of a profile is masked with probability ``mask_rate`` and replaced by the same gene of another
    random sample, so a masked value looks plausible. From the corrupted profile the encoder's embedding must
    predict which entries were masked (binary cross-entropy) and reconstruct the original profile (mean squared
    error): ``loss = BCE + alpha * MSE``. Useful for noisy or sparse signals, where recovering a gene from its
    co-expressed partners is exactly the structure worth learning.

    ``transform`` returns the encoder output, standardised with its per-component mean and standard deviation on the fit
    data, then multiplied by one factor, ``lambda_1 ** -0.25`` for the largest principal variance ``lambda_1`` (see
    ``transform``): the components are strongly correlated, and this lets ``LogisticRegression()`` with its defaults
    converge on them.

    **Several studies at once** (``fit(X, batch=study)``): both heads (mask estimation and reconstruction) read
    the one-hot batch (study) of the sample along with the embedding, as scVI's decoder does, so the heads explain
    what sets the studies apart and the embedding need not encode study identity. The encoder never sees the
    batch: ``transform`` embeds samples of any study, one the model never saw included, without a batch.

    Parameters
    ----------
    n_components : int, default=128
        Dimension of the embedding (the code passed to both heads). A linear model on 128 dimensions keeps up
        with one on thousands of genes as labels grow, where 32 fell behind in our label-efficiency runs.
    mask_rate : float in [0, 1), default=0.3
        Probability that an entry is masked.
    alpha : float >= 0, default=2.0
        Weight of the reconstruction term.
    %(training_parameters)s

    Attributes
    ----------
    module_ : torch.nn.Module
        The trained network (``module_.encoder`` is the encoder).
    batch_categories_ : ndarray of shape (n_batches,)
        The batch (study) labels given to ``fit`` (sorted), one per input of the heads' one-hot batch code; only
        when fitted with ``batch``.
    %(fitted_attributes)s

    See Also
    --------
    ContrastiveEmbedder : Contrastive learning with feature corruption (SCARF / BYOL).
    VAEEmbedder : Variational autoencoder (Gaussian or negative-binomial likelihood).

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from skssl import MaskedAutoencoder
    >>> from skssl.datasets import make_expression
    >>> X, y = make_expression(n_samples=100, n_genes=50, random_state=0)
    >>> model = make_pipeline(MaskedAutoencoder(n_components=8, max_epochs=3, random_state=0),
    ...                       LogisticRegression())
    >>> model.fit(X, y).predict(X[:5]).shape
    (5,)

    Pre-training on two studies (their labels as ``batch``), then embedding a third one without a batch:

    >>> import numpy as np
    >>> study = np.repeat(["GSE1", "GSE2", "GSE3"], [40, 40, 20])
    >>> vime = MaskedAutoencoder(n_components=8, max_epochs=3, random_state=0)
    >>> vime.fit(X[:80], batch=study[:80]).batch_categories_
    array(['GSE1', 'GSE2'], dtype='<U4')
    >>> vime.transform(X[80:]).shape
    (20, 8)

    In a ``Pipeline`` or a cross-validation, scikit-learn's metadata routing passes ``batch`` on:
    ``sklearn.set_config(enable_metadata_routing=True)``, then ``MaskedAutoencoder().set_fit_request(batch=True)``
    and ``cross_val_score(pipeline, X, y, params={"batch": study})``.
    """

    # Half the steps of the other networks' patience: measured to keep the best epoch on small cohorts
    # (docs/default_schedule.md), where the 200 steps were most of a fit.
    _patience_steps = MASKED_AUTOENCODER_PATIENCE_STEPS

    _parameter_constraints: dict = {
        **BaseSSLEstimator._parameter_constraints,
        "mask_rate": [Interval(Real, 0.0, 1.0, closed="left")],
        "alpha": [Interval(Real, 0.0, None, closed="left")],
    }

    def __init__(
        self,
        n_components=128,
        *,
        mask_rate=0.3,
        alpha=2.0,
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
        self.mask_rate = mask_rate
        self.alpha = alpha
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
        return _MaskedModule(
            n_features,
            hidden_dims,
            self.n_components,
            self.dropout,
            statistics["mean"],
            statistics["std"],
            self.standardize,
            n_batches=self._n_batches(statistics),
        )

    def _batch_loss(self, module, x, targets=None, generator=None, shard=None):
        # targets: the batch (study) code of each row when fitted with batch=..., else None.
        x = module.preprocess(x)
        # In a data-parallel fit x is this rank's shard: the mask and marginal donors are drawn over the whole batch.
        corrupted, mask = (local_rows(t, shard) for t in vime_mask(whole_batch_of(x, shard), self.mask_rate, generator))
        z = with_batch_code(module.encoder(corrupted), targets, module.n_batches)
        return row_mean(vime_loss(module.mask_head(z), mask, module.feature_head(z), x, self.alpha), shard)
