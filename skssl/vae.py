"""VAEEmbedder: a variational autoencoder with a Gaussian (log-expression) or negative-binomial (counts) likelihood.

With ``views`` it is a multi-view (multi-omics) VAE: one encoder and one likelihood per view, fused by a
product of experts so that samples lacking a view are encoded from the views they have.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted
from torch import nn

from . import _data
from ._compat import Interval, StrOptions, standard_gamma, validate_params
from ._base import BaseSSLEstimator, _cuda_indices, fill_doc
from ._losses import gaussian_kl, gaussian_log_likelihood, nb_log_likelihood
from ._nn import LogNormalize, Standardize, make_mlp
from .multiview import resolve_views, scan_views

LOG_VAR_BOUND = 10.0  # keeps exp(log_var) finite early in training
SCORE_DRAWS = 16  # latent draws averaged by score_samples


class _VAEModule(nn.Module):
    def __init__(self, n_features, hidden_dims, n_latent, dropout, likelihood, mean, std, standardize):
        super().__init__()
        self.likelihood = likelihood
        self.n_latent = n_latent
        if likelihood == "gaussian":
            self.preprocess = Standardize(mean, std, enabled=standardize)
            self.log_var = nn.Parameter(torch.zeros(n_features))  # per-gene noise variance
        else:
            self.preprocess = LogNormalize()
            self.log_theta = nn.Parameter(torch.zeros(n_features))  # per-gene NB inverse dispersion
        self.encoder = make_mlp(n_features, hidden_dims, 2 * n_latent, dropout=dropout)
        self.decoder = make_mlp(n_latent, tuple(reversed(hidden_dims)), n_features)

    def encode(self, x):
        stats = self.encoder(self.preprocess(x))
        mean, log_var = stats[:, : self.n_latent], stats[:, self.n_latent :]
        return mean, log_var.clamp(-LOG_VAR_BOUND, LOG_VAR_BOUND)

    def embed(self, x):
        return self.encode(x)[0]

    def encoder_path(self):
        """The part of this module that ``embed`` uses (preprocessing and encoder, shared with this module)."""
        return _EncoderPath([_Expert(None, self.preprocess, self.encoder, self.n_latent)], prior_expert=False)

    def decode_mean(self, z, library=None):
        """Mean of p(x | z): standardised values (Gaussian) or counts at ``library`` total (NB)."""
        out = self.decoder(z)
        if self.likelihood == "gaussian":
            return out
        return torch.softmax(out, dim=-1) * library

    def elbo(self, x, beta=1.0, generator=None, noise=None):
        """Per-row evidence lower bound (in the module's data space), estimated with reparameterised samples of z.

        By default one fresh sample per row. ``noise`` of shape (n_draws, n_latent) instead uses the same standard
        normal draws for every row and averages over them: a deterministic estimate that does not depend on the
        other rows of the batch (``score_samples`` uses it).
        """
        mean, log_var = self.encode(x)
        if noise is None:
            noise = torch.randn(mean.shape, device=mean.device, generator=generator).unsqueeze(0)
        else:
            noise = noise.unsqueeze(1)  # (n_draws, 1, n_latent): broadcast over rows
        z = mean + noise * (0.5 * log_var).exp()  # (n_draws, n_rows, n_latent)
        if self.likelihood == "gaussian":
            log_lik = gaussian_log_likelihood(
                self.preprocess(x), self.decode_mean(z), self.log_var.clamp(-LOG_VAR_BOUND, LOG_VAR_BOUND)
            )
        else:
            library = x.sum(dim=1, keepdim=True)
            log_lik = nb_log_likelihood(x, self.decode_mean(z, library), self.log_theta.exp())
        return log_lik.mean(dim=0) - beta * gaussian_kl(mean, log_var)


class _View(nn.Module):
    """One view of a multi-view VAE: its columns, preprocessing, encoder (an expert), decoder and likelihood."""

    def __init__(self, index, likelihood, hidden_dims, n_latent, dropout, mean, std, standardize, log_libraries):
        super().__init__()
        n_features = len(index)
        self.likelihood = likelihood
        self.n_latent = n_latent
        self.register_buffer("index", torch.as_tensor(np.asarray(index), dtype=torch.long))
        if likelihood == "gaussian":
            self.preprocess = Standardize(mean, std, enabled=standardize)
            self.log_var = nn.Parameter(torch.zeros(n_features))
        elif likelihood == "nb":
            self.preprocess = LogNormalize()
            self.log_theta = nn.Parameter(torch.zeros(n_features))
            # Library sizes of the fit data: inverse_transform decodes at the median, sample draws log-normally.
            median, mean_log, std_log = (
                (float(np.exp(np.median(log_libraries))), float(log_libraries.mean()), float(log_libraries.std()))
                if len(log_libraries)
                else (1.0, 0.0, 0.0)
            )
            self.register_buffer("library_size", torch.tensor(median))
            self.register_buffer("log_library_mean", torch.tensor(mean_log))
            self.register_buffer("log_library_std", torch.tensor(std_log))
        else:  # bernoulli: 0/1 calls go to the encoder as they are
            self.preprocess = nn.Identity()
        self.encoder = make_mlp(n_features, hidden_dims, 2 * n_latent, dropout=dropout)
        self.decoder = make_mlp(n_latent, tuple(reversed(hidden_dims)), n_features)

    def encode(self, xv):
        stats = _at_least_float32(self.encoder(self.preprocess(xv)))
        return stats[:, : self.n_latent], stats[:, self.n_latent :].clamp(-LOG_VAR_BOUND, LOG_VAR_BOUND)

    def log_likelihood(self, xv, z):
        """Per-row log p(xv | z) summed over the view's features, shape ``z.shape[:-1]``."""
        out = _at_least_float32(self.decoder(z))
        if self.likelihood == "gaussian":
            return gaussian_log_likelihood(
                self.preprocess(xv), out, self.log_var.clamp(-LOG_VAR_BOUND, LOG_VAR_BOUND)
            )
        if self.likelihood == "nb":
            library = xv.sum(dim=1, keepdim=True)
            return nb_log_likelihood(xv, torch.softmax(out, dim=-1) * library, self.log_theta.exp())
        target = xv.expand_as(out)
        return -F.binary_cross_entropy_with_logits(out, target, reduction="none").sum(dim=-1)

    def decode(self, z):
        """Mean of p(xv | z) in data units (nb: expected counts at the median library size of the fit data)."""
        out = self.decoder(z).float()
        if self.likelihood == "gaussian":
            return self.preprocess.inverse(out)
        if self.likelihood == "nb":
            return torch.softmax(out, dim=-1) * self.library_size
        return torch.sigmoid(out)

    def sample(self, z, generator):
        out = self.decoder(z).float()
        if self.likelihood == "gaussian":
            std = (0.5 * self.log_var.clamp(-LOG_VAR_BOUND, LOG_VAR_BOUND)).exp()
            noise = torch.randn(out.shape, device=out.device, generator=generator)
            return self.preprocess.inverse(out + noise * std)
        if self.likelihood == "nb":
            log_library = self.log_library_mean + self.log_library_std * torch.randn(
                (z.shape[0], 1), device=z.device, generator=generator
            )
            mu = torch.softmax(out, dim=-1) * log_library.exp()
            theta = self.log_theta.exp().expand_as(mu)
            return torch.poisson(standard_gamma(theta) * (mu / theta), generator=generator)
        return torch.bernoulli(torch.sigmoid(out), generator=generator)


class _MultiViewVAEModule(nn.Module):
    """Product-of-experts VAE over views; a view is missing in a row when all its values there are NaN.

    The posterior is the product of a standard normal prior expert and one Gaussian expert per present view:
    precision ``1 + sum_v exp(-log_var_v)``, precision-weighted mean. Missing views contribute neither an expert
    nor a likelihood term, whatever their values: rows are masked, not imputed.
    """

    def __init__(self, views, n_latent):
        super().__init__()
        self.views = nn.ModuleList(views)
        self.n_latent = n_latent

    def blocks(self, x, present=None):
        """Each view's block of ``x`` with missing rows zero-filled, and the (n_rows, n_views) presence mask.

        ``present`` (bool, (n_rows, n_views)) overrides the NaN-based detection: its False blocks are ignored
        whatever they hold.
        """
        blocks, masks = [], []
        for k, view in enumerate(self.views):
            xv = x.index_select(1, view.index)
            mask = ~torch.isnan(xv).all(dim=1) if present is None else present[:, k].to(torch.bool)
            blocks.append(torch.where(mask.unsqueeze(1), xv, torch.zeros((), dtype=xv.dtype, device=xv.device)))
            masks.append(mask)
        return blocks, torch.stack(masks, dim=1)

    def encode(self, x, present=None):
        """Product-of-experts posterior ``(mean, log_var)`` from the present views of each row."""
        blocks, mask = self.blocks(x, present)
        return self._poe(blocks, mask)

    def _poe(self, blocks, mask):
        precision, weighted = [], []
        for k, (view, xv) in enumerate(zip(self.views, blocks)):
            mean_v, log_var_v = view.encode(xv)
            here = mask[:, k : k + 1]
            precision_v = torch.exp(-log_var_v)
            precision.append(torch.where(here, precision_v, 0.0))
            weighted.append(torch.where(here, precision_v * mean_v, 0.0))
        precision = 1.0 + torch.stack(precision).sum(dim=0)  # 1.0: the standard normal prior expert (mean 0)
        return torch.stack(weighted).sum(dim=0) / precision, -torch.log(precision)

    def embed(self, x):
        return self.encode(x)[0]

    def encoder_path(self):
        """The part of this module that ``embed`` uses (each view's preprocessing and encoder, shared with it)."""
        experts = [_Expert(view.index, view.preprocess, view.encoder, self.n_latent) for view in self.views]
        return _EncoderPath(experts, prior_expert=True)

    def elbo(self, x, beta=1.0, generator=None, noise=None, present=None):
        """Per-row ELBO over the present views (see ``_VAEModule.elbo`` for ``noise``)."""
        blocks, mask = self.blocks(x, present)
        mean, log_var = self._poe(blocks, mask)
        if noise is None:
            noise = torch.randn(mean.shape, device=mean.device, generator=generator).unsqueeze(0)
        else:
            noise = noise.unsqueeze(1)
        z = mean + noise.to(mean.dtype) * (0.5 * log_var).exp()
        log_lik = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
        for k, (view, xv) in enumerate(zip(self.views, blocks)):
            log_lik = log_lik + torch.where(mask[:, k], view.log_likelihood(xv, z).to(z.dtype), 0.0)
        return log_lik.mean(dim=0) - beta * gaussian_kl(mean, log_var)

    def log_det_standardize(self, x):
        """Per-row log-Jacobian of the standardisation of the present Gaussian views (puts scores in data units)."""
        _, mask = self.blocks(x)
        total = torch.zeros(mask.shape[0], dtype=x.dtype, device=x.device)
        for k, view in enumerate(self.views):
            if view.likelihood == "gaussian":
                total = total + mask[:, k] * torch.log(view.preprocess.scale).sum().to(x.dtype)
        return total

    def decode(self, z, n_features):
        out = torch.empty((z.shape[0], n_features), device=z.device)
        for view in self.views:
            out[:, view.index] = view.decode(z)
        return out

    def sample(self, z, n_features, generator):
        out = torch.empty((z.shape[0], n_features), device=z.device)
        for view in self.views:
            out[:, view.index] = view.sample(z, generator)
        return out


class _Expert(nn.Module):
    """One view's encoder: its columns (``index``; None: all), preprocessing and encoder network -> a Gaussian."""

    def __init__(self, index, preprocess, encoder, n_latent):
        super().__init__()
        self.register_buffer("index", None if index is None else index.clone())
        self.preprocess = preprocess
        self.encoder = encoder
        self.n_latent = n_latent

    def forward(self, xv):
        stats = _at_least_float32(self.encoder(self.preprocess(xv)))
        return stats[:, : self.n_latent], stats[:, self.n_latent :].clamp(-LOG_VAR_BOUND, LOG_VAR_BOUND)


class _EncoderPath(nn.Module):
    """Raw features -> posterior mean: what a VAE's ``embed`` computes, holding only the modules it uses."""

    def __init__(self, experts, prior_expert):
        super().__init__()
        self.experts = nn.ModuleList(experts)
        self.prior_expert = prior_expert

    def encode(self, x):
        if not self.prior_expert:  # one view, never missing: its expert is the posterior
            return self.experts[0](x)
        precision, weighted = [], []
        for expert in self.experts:
            xv = x.index_select(1, expert.index)
            here = ~torch.isnan(xv).all(dim=1, keepdim=True)
            mean_v, log_var_v = expert(torch.where(here, xv, torch.zeros((), dtype=xv.dtype, device=xv.device)))
            precision_v = torch.exp(-log_var_v)
            precision.append(torch.where(here, precision_v, 0.0))
            weighted.append(torch.where(here, precision_v * mean_v, 0.0))
        precision = 1.0 + torch.stack(precision).sum(dim=0)
        return torch.stack(weighted).sum(dim=0) / precision, -torch.log(precision)

    def embed(self, x):
        return self.encode(x)[0]

    def forward(self, x):
        return self.embed(x)


_VAE_PARAMETER_DOCS = {
    "hidden_dims": """\
    hidden_dims : "auto" or tuple of int, default="auto"
        Widths of the encoder's hidden layers (the decoder mirrors them); "auto" uses two layers of 256 (under
        1 000 features) or 512.
""",
    "dropout": """\
    dropout : float in [0, 1), default=0.1
        Dropout after each hidden layer of the encoder.
""",
    "standardize": """\
    standardize : bool, default=True
        Centre and scale each feature with statistics of the ``fit`` data (Gaussian likelihood only; ignored for
        ``likelihood="nb"``, whose encoder normalises by library size instead).
""",
    "random_state": """\
    random_state : int, RandomState instance or None, default=None
        Seeds the split, batch order, weights and latent samples: same seed, same embedding on CPU.
""",
}


@fill_doc(**_VAE_PARAMETER_DOCS)
class VAEEmbedder(BaseSSLEstimator):
    """Variational autoencoder embedding of expression profiles.

    A generative model: each profile is encoded into a Gaussian posterior over ``n_components`` latent factors
    and decoded into a likelihood of the observed profile. ``likelihood="gaussian"`` suits log-scale or normalised
    data (per-gene noise variance is learned); ``likelihood="nb"`` models raw non-negative counts with a
    negative binomial as in scVI: the encoder sees ``log1p``-normalised counts, the decoder outputs gene
    proportions scaled by each sample's observed library size, with one dispersion per gene.

    ``transform`` returns the posterior mean (standardised with its per-component mean and standard deviation on
    the fit data, principal directions of variance above 1 scaled down to 1), ``score`` the mean evidence lower
    bound (ELBO) per sample, ``inverse_transform`` the decoded mean of such factors and ``sample`` draws new
    profiles.

    **Several omics at once** (``views``): the columns are split into named views (RNA-seq, miRNA, protein, copy
    number, mutations...), each with its own encoder, decoder and likelihood (``"gaussian"``, ``"nb"``, or
    ``"bernoulli"`` for 0/1 calls). The views are fused into one latent space by a product of experts (as in the
    MVAE of Wu & Goodman, 2018): each view's encoder proposes a Gaussian over the latent factors, and the posterior
    is the product of these experts and the standard normal prior. A sample lacking a view holds NaN in all of that
    view's columns; the view is then left out of its posterior and of its loss, so the sample is encoded from the
    views it has. NaN in only part of a view, a sample with no view at all, or NaN when ``views`` is None are
    errors. See :func:`skssl.multiview.assemble_views` to build such a matrix from one table per omic.

    Parameters
    ----------
    n_components : int, default=32
        Number of latent factors.
    likelihood : {"gaussian", "nb"}, default="gaussian"
        Observation model: Gaussian on (log-)expression or negative binomial on raw counts. With ``views``, the
        likelihood of the views whose spec does not name one.
    views : dict or None, default=None
        None: one view of all columns, no NaN allowed. Otherwise a multi-view VAE: a mapping from view name to the
        view's columns, or to a spec ``{"columns": columns, "likelihood": likelihood}`` with ``likelihood`` one of
        ``"gaussian"``, ``"nb"`` (non-negative counts), ``"bernoulli"`` (0/1 values). ``columns`` are integer
        positions, a ``slice``, a boolean mask, or column names when fitting on a DataFrame (resolved against
        ``feature_names_in_``). Every column must belong to exactly one view (a column in no view, in two views,
        out of range or of unknown name is a ``ValueError`` naming the view). Each view gets an encoder and a
        decoder of ``hidden_dims`` widths; ``standardize`` applies to the Gaussian views, with statistics over the
        samples that have the view.
    beta : float >= 0, default=1.0
        Weight of the KL term in the ELBO (1 is the standard VAE).
    %(training_parameters)s

    Attributes
    ----------
    module_ : torch.nn.Module
        The trained network (``module_.encoder``, ``module_.decoder``; with ``views``, ``module_.views[k]`` holds
        the k-th view's ``encoder``, ``decoder`` and, for a negative-binomial view, its library-size statistics).
    history_ : dict
        ``"train_loss"`` and ``"validation_loss"`` per epoch: the negative ELBO per sample divided by the number
        of features.
    n_iter_ : int
        Number of epochs run.
    best_epoch_ : int
        Epoch whose weights were kept.
    batch_size_ : int
        Batch size used.
    hidden_dims_ : tuple of int
        Hidden layer widths used.
    n_components_ : int
        Number of latent factors.
    embedding_mean_ : ndarray of shape (n_components_,), dtype float32
        Mean of each component of the posterior mean on the ``fit`` data (on the last chunk after
        ``partial_fit``); ``transform`` subtracts it and ``inverse_transform`` adds it back.
    embedding_scale_ : ndarray of shape (n_components_,), dtype float32
        Standard deviation of each component of the posterior mean on the same data (1 for a component with no
        spread); ``transform`` divides by it and ``inverse_transform`` multiplies by it.
    embedding_whitening_ : ndarray of shape (n_components_, n_components_), dtype float32
        Symmetric, invertible matrix that ``transform`` applies to the standardised factors: it scales every
        principal direction of their covariance on the same data whose variance exceeds 1 down to variance 1
        (the identity for uncorrelated factors); ``inverse_transform`` undoes it.
    library_size_ : float
        Median total count per sample of the fit data (``likelihood="nb"``, without ``views``): the library size at
        which ``inverse_transform`` decodes.
    log_library_mean_, log_library_std_ : float
        Mean and standard deviation of the log library sizes of the fit data (``likelihood="nb"``, without
        ``views``), from which ``sample`` draws library sizes.
    views_ : dict of str to ndarray of int
        With ``views``: the column positions of each view.
    view_likelihoods_ : dict of str to str
        With ``views``: the likelihood of each view.
    view_counts_ : dict of str to int
        With ``views``: the number of fit samples that have each view.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during ``fit`` (only when X has string column names).

    See Also
    --------
    ContrastiveEmbedder : Contrastive learning with feature corruption (SCARF / BYOL).
    MaskedAutoencoder : Masked-feature reconstruction (VIME).

    Examples
    --------
    >>> from skssl import VAEEmbedder
    >>> from skssl.datasets import make_expression
    >>> counts, y = make_expression(n_samples=100, n_genes=50, output="counts", random_state=0)
    >>> vae = VAEEmbedder(n_components=4, likelihood="nb", max_epochs=3, random_state=0).fit(counts)
    >>> vae.transform(counts).shape
    (100, 4)
    >>> vae.sample(3, random_state=0).shape
    (3, 50)

    Two views, the second missing for the first ten samples:

    >>> import numpy as np
    >>> X = np.log1p(counts)
    >>> calls = (counts[:, :5] > np.median(counts[:, :5], axis=0)).astype(np.float32)
    >>> X2 = np.hstack([X, calls])
    >>> X2[:10, 50:] = np.nan
    >>> views = {"rna": slice(0, 50), "calls": {"columns": slice(50, 55), "likelihood": "bernoulli"}}
    >>> mv = VAEEmbedder(n_components=4, views=views, max_epochs=3, random_state=0).fit(X2)
    >>> Z = mv.transform(X2)
    >>> Z.shape, bool(np.isfinite(Z).all())
    ((100, 4), True)
    >>> mv.view_counts_
    {'rna': 100, 'calls': 90}
    """

    _parameter_constraints: dict = {
        **BaseSSLEstimator._parameter_constraints,
        "likelihood": [StrOptions({"gaussian", "nb"})],
        "views": [None, Mapping],
        "beta": [Interval(Real, 0.0, None, closed="left")],
    }

    def __init__(
        self,
        n_components=32,
        *,
        likelihood="gaussian",
        views=None,
        beta=1.0,
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
    ):
        self.n_components = n_components
        self.likelihood = likelihood
        self.views = views
        self.beta = beta
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

    # ------------------------------------------------------------------ validation
    def _multiview(self, reset):
        """Whether the data is multi-view: the ``views`` parameter at fit, the fitted ``views_`` afterwards."""
        return self.views is not None if reset else getattr(self, "views_", None) is not None

    def _validate_input(self, X, *, reset):
        if not self._multiview(reset):
            if reset:
                for name in ("views_", "view_likelihoods_", "view_counts_"):
                    self.__dict__.pop(name, None)
            return _data.validate_X(self, X, reset=reset)
        X = _data.validate_X(self, X, reset=reset, allow_nan=True)
        if reset:
            self.views_, self.view_likelihoods_ = resolve_views(
                self.views, X.shape[1], getattr(self, "feature_names_in_", None), self.likelihood
            )
        else:
            # At fit the same pass runs in _fit_statistics; here it checks the missing-view pattern and values.
            scan_views(X, self.views_, self.view_likelihoods_)
        return X

    def _fit_statistics(self, X):
        if not self._multiview(reset=True):
            statistics = super()._fit_statistics(X)
            if self.likelihood == "nb" and statistics["min"] >= 0:  # negative values fail in _check_fit_values
                _warn_if_not_counts(X, {None: slice(None)})
            return statistics
        statistics = _data.column_statistics(X, allow_nan=True)
        scan = scan_views(X, self.views_, self.view_likelihoods_)
        nb_views = {name: index for name, index in self.views_.items() if self.view_likelihoods_[name] == "nb"}
        if nb_views:
            _warn_if_not_counts(X, nb_views)
        counts = scan["present"].sum(axis=0)
        for name, count in zip(self.views_, counts):
            if count == 0:
                raise ValueError(f"View {name!r} is missing (all NaN) in every sample: there is nothing to fit it on.")
        self.view_counts_ = {name: int(count) for name, count in zip(self.views_, counts)}
        statistics["views"] = scan
        return statistics

    # ------------------------------------------------------------------ training hooks
    def _check_fit_values(self, statistics):
        if "views" in statistics:
            return  # each view's values were checked against its likelihood by scan_views
        if self.likelihood == "nb":
            _check_counts_minimum(statistics["min"])
            log_library = np.log(np.maximum(statistics["row_sums"], 1.0))
            self.library_size_ = float(np.median(statistics["row_sums"]))
            self.log_library_mean_ = float(log_library.mean())
            self.log_library_std_ = float(log_library.std())

    def _build_module(self, n_features, hidden_dims, statistics):
        if "views" in statistics:
            present, row_sums = statistics["views"]["present"], statistics["views"]["row_sums"]
            views = []
            for k, (name, index) in enumerate(self.views_.items()):
                log_libraries = np.log(np.maximum(row_sums[present[:, k], k], 1.0))
                views.append(
                    _View(
                        index,
                        self.view_likelihoods_[name],
                        hidden_dims,
                        self.n_components,
                        self.dropout,
                        statistics["mean"][index],
                        statistics["std"][index],
                        self.standardize,
                        log_libraries,
                    )
                )
            return _MultiViewVAEModule(views, self.n_components)
        return _VAEModule(
            n_features,
            hidden_dims,
            self.n_components,
            self.dropout,
            self.likelihood,
            statistics["mean"],
            statistics["std"],
            self.standardize,
        )

    def _batch_loss(self, module, x, targets=None, generator=None):
        # Per-feature scale keeps the loss (and so the gradient clipping) comparable across gene counts.
        return -module.elbo(x, self.beta, generator).mean() / x.shape[1]

    # ------------------------------------------------------------------ inference
    def _validate_for_inference(self, X):
        check_is_fitted(self)
        X = self._validate_input(X, reset=False)
        if self._multiview(reset=False):
            return X
        if self.likelihood == "nb" and not _data.is_out_of_core(X):
            _check_counts_minimum(X.data.min() if hasattr(X, "data") and hasattr(X, "indptr") and X.nnz else X.min())
        return X

    def _embedding_allows_nan(self):
        return self._multiview(reset=False)

    def transform(self, X):
        """Posterior mean of the latent factors, standardised.

        Parameters
        ----------
        X : {array-like, sparse matrix, np.memmap} of shape (n_samples, n_features)
            Same features, in the same order, as the data given to ``fit``.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components), dtype float32
            The posterior mean with each component centred and scaled by its mean and standard deviation on the
            ``fit`` data (``embedding_mean_``, ``embedding_scale_``), then every principal direction with a
            variance above 1 there scaled down to variance 1 (``embedding_whitening_``), so that a downstream
            linear model sees unit-scale, well-conditioned features. ``inverse_transform`` undoes both.
        """
        X = self._validate_for_inference(X)
        return self._standardized_embedding(X)

    def score_samples(self, X):
        """Evidence lower bound (ELBO) of each sample: a lower bound of its log likelihood.

        For the Gaussian likelihood with ``standardize=True`` the bound is expressed in the units of ``X`` (the
        log-Jacobian of the standardisation is included), so scores of models fitted with different settings are
        comparable. The expectation over the posterior is averaged over 16 fixed latent draws shared by all rows,
        so a sample's score depends on that sample alone and repeated calls give the same values.

        With ``views``, the ELBO of each sample is over the views it has (its missing views add no term), so scores
        of samples with different views are not comparable with each other.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            Higher means more typical of the training data; low scores flag outliers.
        """
        X = self._validate_for_inference(X)
        multiview = self._multiview(reset=False)
        device = self._module_device()
        generator = torch.Generator(device=device).manual_seed(0)
        noise = torch.randn((SCORE_DRAWS, self.n_components_), device=device, generator=generator)
        # In float64: sums over thousands of genes would otherwise differ in the last float32 digits between a
        # row scored alone and the same row scored in a batch.
        module = copy.deepcopy(self.module_).double()
        scores = np.empty(_data.n_rows(X))
        with torch.inference_mode():
            module.eval()
            batches = _data.iter_batches(
                X, max(self.batch_size_, 1024), check_finite=_data.is_out_of_core(X), allow_nan=multiview
            )
            for rows, block in batches:
                x = _data.to_device(block, device).double()
                scores[rows] = module.elbo(x, self.beta, noise=noise.double()).cpu().numpy()
                if multiview:
                    scores[rows] -= module.log_det_standardize(x).cpu().numpy()
        if self.likelihood == "gaussian" and not multiview:
            scores -= float(torch.log(module.preprocess.scale).sum())
        return scores

    def score(self, X, y=None):
        """Mean ELBO per sample (higher is better), like ``PCA.score``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        score : float
        """
        return float(np.mean(self.score_samples(X)))

    def inverse_transform(self, X):
        """Decode latent factors into expression profiles (the mean of p(x | z)).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            Latent factors on the scale of the output of ``transform`` (standardised and decorrelated with
            ``embedding_mean_``, ``embedding_scale_`` and ``embedding_whitening_``, which are undone before
            decoding), e.g. the output of ``transform``.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features_in_)
            In the units of the fit data; for ``likelihood="nb"``, expected counts at the median library size of
            the fit data (``library_size_``). With ``views``, every view is decoded (a ``"nb"`` view at the median
            library size of that view, a ``"bernoulli"`` view as probabilities).
        """
        check_is_fitted(self)
        Z = check_array(X, dtype=np.float32)
        if Z.shape[1] != self.n_components_:
            raise ValueError(
                f"X has {Z.shape[1]} latent dimensions, but {type(self).__name__} has n_components="
                f"{self.n_components_}."
            )
        # Back to the posterior's own latent space, where the decoder works.
        Z = self._embedding_input(Z)
        return self._map_batches(Z, self._decode, self.n_features_in_)

    def _decode(self, z, library=None):
        if self._multiview(reset=False):
            return self.module_.decode(z, self.n_features_in_)
        if self.likelihood == "gaussian":
            return self.module_.preprocess.inverse(self.module_.decode_mean(z))
        if library is None:
            library = torch.full((z.shape[0], 1), self.library_size_, device=z.device)
        return self.module_.decode_mean(z, library)

    @validate_params(
        {"n_samples": [Interval(Integral, 1, None, closed="left")], "random_state": ["random_state"]},
        prefer_skip_nested_validation=True,
    )
    def sample(self, n_samples=1, random_state=None):
        """Draw new expression profiles from the generative model.

        Latent factors come from the standard normal prior; profiles from the likelihood: Gaussian noise with the
        learned per-gene variance, or negative-binomial counts at library sizes drawn from the log-normal fitted
        to the library sizes of the fit data. With ``views``, every view of each profile is drawn (from one shared
        latent draw) from its own likelihood: ``"bernoulli"`` views give 0/1 calls; no view is missing.

        Parameters
        ----------
        n_samples : int, default=1
            Number of profiles.
        random_state : int, RandomState instance or None, default=None
            Seed of the draws.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features_in_), dtype float32
        """
        check_is_fitted(self)
        seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
        device = self._module_device()
        generator = torch.Generator(device=device).manual_seed(seed)
        module = self.module_
        # The gamma draws of the negative binomial take no generator: seed torch's RNG inside a fork of it, so the
        # draws are reproducible and the caller's global RNG is left alone.
        with torch.inference_mode(), torch.random.fork_rng(devices=_cuda_indices(device)):
            torch.manual_seed(seed)
            module.eval()
            z = torch.randn((n_samples, self.n_components_), device=device, generator=generator)
            if self._multiview(reset=False):
                out = module.sample(z, self.n_features_in_, generator)
            elif self.likelihood == "gaussian":
                mean = module.decode_mean(z)
                std = (0.5 * module.log_var.clamp(-LOG_VAR_BOUND, LOG_VAR_BOUND)).exp()
                noise = torch.randn(mean.shape, device=device, generator=generator)
                out = module.preprocess.inverse(mean + noise * std)
            else:
                log_library = self.log_library_mean_ + self.log_library_std_ * torch.randn(
                    (n_samples, 1), device=device, generator=generator
                )
                mu = module.decode_mean(z, log_library.exp())
                theta = module.log_theta.exp().expand_as(mu)
                # Gamma-Poisson mixture == negative binomial with mean mu and inverse dispersion theta.
                rate = standard_gamma(theta) * (mu / theta)
                out = torch.poisson(rate, generator=generator)
        return out.float().cpu().numpy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = self.likelihood == "nb"
        tags.input_tags.allow_nan = self.views is not None
        return tags


def _at_least_float32(tensor):
    """bf16/fp16 outputs of autocast regions in float32; float32 and float64 (score_samples) left as they are."""
    return tensor.float() if tensor.dtype in (torch.bfloat16, torch.float16) else tensor


# Rows read to tell counts from non-integer (log-scale, normalised) data: enough to see, cheap even for a memmap.
COUNT_CHECK_ROWS = 256


def _warn_if_not_counts(X, views):
    """Warn when the first rows of ``X`` (the columns of each ``"nb"`` view) hold non-integer values.

    Only the first :data:`COUNT_CHECK_ROWS` rows are read, so out-of-core and sparse input are never loaded whole.
    ``views`` maps a view name (None without views) to its column index.
    """
    block = _data.read_rows(X, slice(0, min(_data.n_rows(X), COUNT_CHECK_ROWS)))
    for name, index in views.items():
        values = block[:, index]
        with np.errstate(invalid="ignore"):
            fractional = np.isfinite(values) & (values != np.round(values))
        if not fractional.any():
            continue
        row, col = (int(i) for i in np.argwhere(fractional)[0])
        target = "X" if name is None else f"view {name!r}"
        fix = "likelihood='gaussian'" if name is None else f"the likelihood 'gaussian' for view {name!r}"
        warnings.warn(
            f"VAEEmbedder: {target} has non-integer values (e.g. {float(values[row, col]):g} in row {row}; "
            f"{int(fractional.sum())} of {values.size} values in the first {len(values)} rows), but "
            "likelihood='nb' (negative binomial) models raw counts. For log-scale or normalised data (log1p, CPM, "
            f"TPM, z-scores) use {fix}; for counts, pass the raw integer counts.",
            UserWarning,
            stacklevel=_data.user_stacklevel(),
        )


def _check_counts_minimum(minimum):
    if minimum < 0:
        raise ValueError(
            f"Negative values in data passed to VAEEmbedder (minimum {minimum:g}): likelihood='nb' models "
            "non-negative counts. "
            "Pass raw counts, or use likelihood='gaussian' for log-scale or normalised data."
        )
