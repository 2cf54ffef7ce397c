"""The torch side of :class:`skssl.VAEEmbedder`: one VAE over one or more views (the math, no data handling).

A single-view model is a one-view model: the views' experts are fused by a product of experts, and without
``multiview`` (the estimator's ``views=None``: one view of every column, never missing) the one expert is the
posterior itself.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .._distributed import row_randn
from .._losses import gaussian_kl
from .._nn import make_mlp, with_batch_code
from ._likelihood import LOG_VAR_BOUND


def at_least_float32(tensor):
    """bf16/fp16 outputs of autocast regions in float32; float32 and float64 (score_samples) left as they are."""
    return tensor.float() if tensor.dtype in (torch.bfloat16, torch.float16) else tensor


class Expert(nn.Module):
    """One view's encoder: its columns (``index``; None: every column), preprocessing and network -> a Gaussian
    ``(mean, log_var)`` over the latent factors."""

    def __init__(self, index, preprocess, n_features, hidden_dims, n_latent, dropout):
        super().__init__()
        self.register_buffer("index", None if index is None else torch.as_tensor(np.asarray(index), dtype=torch.long))
        self.preprocess = preprocess
        self.encoder = make_mlp(n_features, hidden_dims, 2 * n_latent, dropout=dropout)
        self.n_latent = n_latent

    def forward(self, xv):
        stats = at_least_float32(self.encoder(self.preprocess(xv)))
        return stats[:, : self.n_latent], stats[:, self.n_latent :].clamp(-LOG_VAR_BOUND, LOG_VAR_BOUND)


class ProductOfExperts(nn.Module):
    """Raw features -> posterior over the latent factors: the encoder path of the VAE (what ``embed`` uses).

    With ``multiview``, a view is missing in a row when all its values there are NaN, and the posterior is the
    product of a standard normal prior expert and one Gaussian expert per present view: precision
    ``1 + sum_v exp(-log_var_v)``, precision-weighted mean. Missing views contribute no expert, whatever their
    values: rows are masked, not imputed. Without it there is one expert, fed every column, and it is the posterior.
    """

    def __init__(self, experts, multiview):
        super().__init__()
        if not multiview and (len(experts) != 1 or experts[0].index is not None):
            raise ValueError("Without multiview, the product has a single expert over every column.")
        self.experts = nn.ModuleList(experts)
        self.multiview = multiview

    def blocks(self, x, present=None):
        """Each view's block of ``x`` (missing rows zero-filled) and the (n_rows, n_views) presence mask.

        ``present`` (bool, (n_rows, n_views)) overrides the NaN-based detection: its False blocks are ignored
        whatever they hold. Without ``multiview`` the block is ``x`` itself and the mask None (all present).
        """
        if not self.multiview:
            return [x], None
        blocks, masks = [], []
        for k, expert in enumerate(self.experts):
            xv = x.index_select(1, expert.index)
            mask = ~torch.isnan(xv).all(dim=1) if present is None else present[:, k].to(torch.bool)
            blocks.append(torch.where(mask.unsqueeze(1), xv, torch.zeros((), dtype=xv.dtype, device=xv.device)))
            masks.append(mask)
        return blocks, torch.stack(masks, dim=1)

    def posterior(self, blocks, mask):
        """``(mean, log_var)`` of the posterior from the blocks and mask of :meth:`blocks`."""
        if mask is None:
            return self.experts[0](blocks[0])
        precision, weighted = [], []
        for k, (expert, xv) in enumerate(zip(self.experts, blocks)):
            mean_v, log_var_v = expert(xv)
            here = mask[:, k : k + 1]
            precision_v = torch.exp(-log_var_v)
            precision.append(torch.where(here, precision_v, 0.0))
            weighted.append(torch.where(here, precision_v * mean_v, 0.0))
        precision = 1.0 + torch.stack(precision).sum(dim=0)  # 1.0: the standard normal prior expert (mean 0)
        return torch.stack(weighted).sum(dim=0) / precision, -torch.log(precision)

    def encode(self, x, present=None):
        return self.posterior(*self.blocks(x, present))

    def embed(self, x):
        """Posterior mean."""
        return self.encode(x)[0]

    def forward(self, x):
        return self.embed(x)


class VAEModule(nn.Module):
    """VAE over views: a :class:`ProductOfExperts` encoder, and per view a decoder and a likelihood.

    Parameters
    ----------
    views : list of (index, likelihood)
        Per view, its column positions (None: every column, for a model without ``multiview``) and its
        :class:`~skssl.vae.likelihoods.Likelihood`.
    hidden_dims : tuple of int
        Hidden widths of each encoder; each decoder mirrors them.
    n_latent : int
        Number of latent factors.
    dropout : float
        Dropout after each hidden layer of the encoders.
    multiview : bool
        Whether rows may lack views (NaN blocks, see :class:`ProductOfExperts`).
    names : list of str, optional
        Names of the views (the estimator's ``views_`` keys).
    counts : sequence of int, optional
        Number of fit samples that have each view (kept as the ``view_counts`` buffer).
    n_batches : int, default=0
        Number of batches (studies) the decoders are conditioned on: each view's decoder reads the latent factors
        and the one-hot batch of the row (:func:`skssl._nn.with_batch_code`); 0: not conditioned.
    """

    n_batches = 0  # a class default: modules pickled before batch conditioning have no such attribute

    def __init__(self, views, hidden_dims, n_latent, dropout, *, multiview, names=None, counts=None, n_batches=0):
        super().__init__()
        experts, decoders, likelihoods = [], [], []
        self.n_batches = n_batches
        for index, likelihood in views:  # per view: encoder then decoder weights (the seeded initialisation order)
            n_features = likelihood.n_features
            likelihoods.append(likelihood)
            experts.append(Expert(index, likelihood.preprocess(), n_features, hidden_dims, n_latent, dropout))
            decoders.append(make_mlp(n_latent + n_batches, tuple(reversed(hidden_dims)), n_features))
        self.encoder = ProductOfExperts(experts, multiview)
        self.decoders = nn.ModuleList(decoders)
        self.likelihoods = nn.ModuleList(likelihoods)
        self.n_latent = n_latent
        self.names = list(names) if names is not None else [None] * len(views)
        self.register_buffer("view_counts", torch.as_tensor([0] * len(views) if counts is None else counts))

    @property
    def multiview(self):
        return self.encoder.multiview

    def encoder_path(self):
        """The module that :meth:`embed` runs (preprocessing and encoder of every view, shared with this module).

        Its ``embed(x)`` and ``forward(x)`` equal ``self.embed(x)``; it holds no decoder and no likelihood parameter.
        """
        return self.encoder

    def encode(self, x, present=None):
        return self.encoder.encode(x, present)

    def embed(self, x):
        return self.encoder.embed(x)

    def elbo(self, x, beta=1.0, generator=None, noise=None, present=None, batch=None, shard=None):
        """Per-row evidence lower bound over the present views, estimated with reparameterised draws of z.

        By default one fresh draw per row. ``noise`` of shape (n_draws, n_latent) instead uses the same standard
        normal draws for every row and averages over them: a deterministic estimate that does not depend on the
        other rows of the batch (``score_samples`` uses it). ``present`` is as in :meth:`ProductOfExperts.blocks`.
        ``batch`` (integer code per row) conditions the decoders of a model with ``n_batches``; None decodes for
        an average batch. ``shard``: this rank's part of the batch in a data-parallel fit (None in one process), so
        that the draws are the whole batch's (:func:`skssl._distributed.row_randn`).
        """
        blocks, mask = self.encoder.blocks(x, present)
        mean, log_var = self.encoder.posterior(blocks, mask)
        if noise is None:
            noise = row_randn(mean.shape, shard=shard, device=mean.device, generator=generator).unsqueeze(0)
        else:
            noise = noise.unsqueeze(1)  # (n_draws, 1, n_latent): broadcast over rows
        z = mean + noise.to(mean.dtype) * (0.5 * log_var).exp()  # (n_draws, n_rows, n_latent)
        log_lik = None
        decoder_input = with_batch_code(z, batch, self.n_batches)
        for k, (decoder, likelihood, xv) in enumerate(zip(self.decoders, self.likelihoods, blocks)):
            term = likelihood.log_prob(xv, at_least_float32(decoder(decoder_input))).to(z.dtype)
            if mask is not None:
                term = torch.where(mask[:, k], term, 0.0)
            log_lik = term if log_lik is None else log_lik + term
        return log_lik.mean(dim=0) - beta * gaussian_kl(mean, log_var)

    def log_det(self, x):
        """Per-row log-Jacobian of the transforms of the present views' likelihoods (puts scores in data units)."""
        _, mask = self.encoder.blocks(x)
        total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for k, likelihood in enumerate(self.likelihoods):
            log_det = likelihood.log_det()
            if log_det is not None:
                log_det = log_det.to(x.dtype)
                total = total + (log_det if mask is None else mask[:, k] * log_det)
        return total

    def _per_view(self, z, n_features, fn):
        """``fn(likelihood, decoder output)`` of every view, placed in its columns of an (n_rows, n_features) array
        (decoded for an average batch when the decoders are batch-conditioned)."""
        z = with_batch_code(z, None, self.n_batches)
        if not self.multiview:
            return fn(self.likelihoods[0], self.decoders[0](z).float())
        out = torch.empty((z.shape[0], n_features), device=z.device)
        for expert, decoder, likelihood in zip(self.encoder.experts, self.decoders, self.likelihoods):
            out[:, expert.index] = fn(likelihood, decoder(z).float())
        return out

    def decode(self, z, n_features):
        """Mean of p(x | z) in data units, every view."""
        return self._per_view(z, n_features, lambda likelihood, out: likelihood.mean(out))

    def sample(self, z, n_features, generator):
        """A draw of x from p(x | z), every view (in view order, from ``generator`` and torch's RNG)."""
        return self._per_view(z, n_features, lambda likelihood, out: likelihood.sample(out, generator))
