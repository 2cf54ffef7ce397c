"""Loss functions, one small pure function each (testable on 4 x 3 tensors)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def nt_xent(z1, z2, temperature=0.1, groups=None):
    """Normalised-temperature cross-entropy (SimCLR / SCARF).

    Row ``i`` of ``z1`` and row ``i`` of ``z2`` are a positive pair; the other ``2n - 2`` rows are negatives.
    With ``groups`` (one label per row, e.g. the study of each sample), only rows of the anchor's own group are
    negatives: pairs across groups are left out of the denominator, so telling groups apart does not lower the
    loss. An anchor alone in its group has no negative and contributes 0.

    Parameters
    ----------
    z1, z2 : Tensor of shape (n, d)
    temperature : float
    groups : Tensor of shape (n,), optional
        Integer group of each row (the same for row ``i`` of ``z1`` and of ``z2``).

    Returns
    -------
    Scalar tensor: the mean over the ``2n`` anchors.
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0), dim=1)
    logits = z @ z.T / temperature
    # An anchor is never its own negative.
    excluded = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    if groups is not None:
        both = torch.cat([groups, groups]).to(z.device)
        excluded |= both.unsqueeze(1) != both.unsqueeze(0)
    logits = logits.masked_fill(excluded, float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, targets)


def byol_loss(prediction, target):
    """BYOL regression loss ``2 - 2 cos(prediction, target)``, averaged over rows; ``target`` gets no gradient."""
    prediction = F.normalize(prediction, dim=1)
    target = F.normalize(target.detach(), dim=1)
    return (2.0 - 2.0 * (prediction * target).sum(dim=1)).mean()


def vime_loss(mask_logits, mask, reconstruction, x, alpha=2.0):
    """VIME self-supervised loss: BCE(mask estimate) + ``alpha`` * MSE(feature reconstruction).

    Both terms are means over every entry of the batch.
    """
    bce = F.binary_cross_entropy_with_logits(mask_logits, mask)
    mse = F.mse_loss(reconstruction, x)
    return bce + alpha * mse


def gaussian_log_likelihood(x, mean, log_var):
    """Per-row log density of ``x`` under independent Gaussians, summed over features."""
    return -0.5 * (log_var + (x - mean) ** 2 / log_var.exp() + math.log(2 * math.pi)).sum(dim=-1)


def nb_log_likelihood(x, mu, theta, eps=1e-8):
    """Per-row negative-binomial log likelihood summed over features (mean ``mu``, inverse dispersion ``theta``).

    ``P(x) = Gamma(x + theta) / (Gamma(theta) x!) * (theta / (theta + mu))^theta * (mu / (theta + mu))^x``, which is
    ``scipy.stats.nbinom(n=theta, p=theta / (theta + mu))``.
    """
    log_theta_mu = torch.log(theta + mu + eps)
    ll = (
        theta * (torch.log(theta + eps) - log_theta_mu)
        + x * (torch.log(mu + eps) - log_theta_mu)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1.0)
    )
    return ll.sum(dim=-1)


def bernoulli_log_likelihood(x, logits):
    """Per-row Bernoulli log likelihood of 0/1 values ``x`` given ``logits``, summed over features.

    ``logits`` may have leading dimensions (latent draws) that ``x`` is broadcast over.
    """
    return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(dim=-1)


def gaussian_kl(mean, log_var):
    """Per-row KL( N(mean, exp(log_var)) || N(0, I) ), summed over latent dimensions."""
    return 0.5 * (mean**2 + log_var.exp() - 1.0 - log_var).sum(dim=-1)
