"""Batched, vectorised feature corruptions (SCARF and VIME).

Both replace a chosen entry ``x[i, j]`` by ``x[r, j]``: the same feature in another row ``r`` of the batch. A batch
is a uniform random sample of the training rows, so this draws from feature ``j``'s empirical marginal without
keeping the whole training matrix at hand. Every function works on the batch's own device and has no Python loop
over rows.
"""

from __future__ import annotations

import torch


def marginal_sample(x, generator=None):
    """For every entry ``(i, j)``, the value of feature ``j`` in a random *other* row of ``x``.

    Parameters
    ----------
    x : Tensor of shape (n_rows, n_features)
    generator : torch.Generator, optional

    Returns
    -------
    Tensor of the same shape as ``x``.
    """
    n_rows = x.shape[0]
    if n_rows < 2:
        raise ValueError("marginal sampling needs at least 2 rows in a batch.")
    # An offset in [1, n_rows) guarantees the donor row differs from the row itself.
    offset = torch.randint(1, n_rows, x.shape, device=x.device, generator=generator)
    donor = (torch.arange(n_rows, device=x.device).unsqueeze(1) + offset) % n_rows
    return torch.gather(x, 0, donor)


def exact_rate_mask(shape, rate, *, device=None, generator=None):
    """Boolean mask with exactly ``round(rate * n_features)`` True entries per row, positions uniform per row."""
    n_rows, n_features = shape
    n_corrupt = int(round(rate * n_features))
    mask = torch.zeros(shape, dtype=torch.bool, device=device)
    if n_corrupt == 0:
        return mask
    if n_corrupt >= n_features:
        return mask.fill_(True)
    scores = torch.rand(shape, device=device, generator=generator)
    chosen = torch.topk(scores, n_corrupt, dim=1, sorted=False).indices
    return mask.scatter_(1, chosen, True)


def scarf_corrupt(x, rate, generator=None):
    """SCARF corruption: replace exactly ``round(rate * n_features)`` features of each row by marginal draws.

    Returns
    -------
    corrupted : Tensor, same shape as ``x``
    mask : bool Tensor, True where an entry was replaced
    """
    mask = exact_rate_mask(x.shape, rate, device=x.device, generator=generator)
    return torch.where(mask, marginal_sample(x, generator), x), mask


def vime_mask(x, p, generator=None):
    """VIME corruption: each entry is masked independently with probability ``p`` and replaced by a marginal draw.

    Returns
    -------
    corrupted : Tensor, same shape as ``x``
    mask : float Tensor of 0/1, 1 where an entry was replaced (the target of the mask-estimation head)
    """
    mask = torch.rand(x.shape, device=x.device, generator=generator) < p
    return torch.where(mask, marginal_sample(x, generator), x), mask.to(x.dtype)
