"""Batched, vectorised feature corruptions (SCARF and VIME).

Both replace a chosen entry ``x[i, j]`` by ``x[r, j]``: the same feature in another row ``r`` of the batch. A batch
is a uniform random sample of the training rows, so this draws from feature ``j``'s empirical marginal without
keeping the whole training matrix at hand. Every function works on the batch's own device and has no Python loop
over rows.

Random numbers dominate the cost of a corruption on a CPU (torch draws one Mersenne-Twister number per element), so
the functions below draw few of them: per-entry Bernoulli masks take 64-bit words in bulk, reinterpreted as four
16-bit draws each; the SCARF mask needs one ordering per 16 rows and one offset per row; the marginal draws need one
shift per feature.
"""

from __future__ import annotations

import torch

_INT16_VALUES = 1 << 16


def random_int16(shape, *, device=None, generator=None):
    """Independent uniform draws over all 65 536 ``int16`` values, four per 64-bit generator call."""
    numel = 1
    for size in shape:
        numel *= size
    words = torch.empty((numel + 3) // 4, dtype=torch.int64, device=device)
    words.random_(-(1 << 63), None, generator=generator)  # full 64-bit range: every bit uniform
    return words.view(torch.int16)[:numel].view(shape)


def bernoulli_mask(shape, p, *, device=None, generator=None):
    """Boolean mask, each entry True independently with probability ``p`` (resolution 1 / 65 536)."""
    threshold = round(p * _INT16_VALUES) - (_INT16_VALUES // 2)
    return random_int16(shape, device=device, generator=generator) < threshold


def marginal_sample(x, generator=None):
    """For every entry ``(i, j)``, the value of feature ``j`` in a random *other* row of ``x``.

    Each feature's column is rotated by its own random shift in ``[1, n_rows)``: within a row, the donor rows of
    different features are independent and uniform over the other rows; within a column, every row donates once,
    so the corrupted column has exactly the batch's marginal distribution.

    Parameters
    ----------
    x : Tensor of shape (n_rows, n_features)
    generator : torch.Generator, optional

    Returns
    -------
    Tensor of the same shape as ``x`` (not necessarily contiguous).
    """
    n_rows, n_features = x.shape
    if n_rows < 2:
        raise ValueError("marginal sampling needs at least 2 rows in a batch.")
    shift = torch.randint(1, n_rows, (n_features, 1), device=x.device, generator=generator)
    # Gather along the rows of the transposed batch stacked twice: each feature's values are then contiguous, so
    # the gather stays in cache (a gather across rows of the row-major batch is several times slower on a CPU),
    # and position i + shift never needs a modulo.
    column_major = torch.cat([x.T, x.T], dim=1)
    donor = torch.arange(n_rows, device=x.device) + shift
    return torch.gather(column_major, 1, donor).T


def grouped_marginal_sample(x, groups, generator=None):
    """For every entry ``(i, j)``, the value of feature ``j`` in a random other row of ``x`` of the same group.

    :func:`marginal_sample` within each group (e.g. the samples of one study): each feature's column is rotated
    within the group by its own random shift in ``[1, group size)``, so the corrupted column of a group has
    exactly that group's marginal distribution and a corruption never reveals another group's values. A row alone
    in its group has no other row there: it takes its values from random other rows of any group.

    Parameters
    ----------
    x : Tensor of shape (n_rows, n_features)
    groups : Tensor of shape (n_rows,)
        Integer group of each row.
    generator : torch.Generator, optional

    Returns
    -------
    Tensor of the same shape as ``x``.
    """
    n_rows, n_features = x.shape
    if n_rows < 2:
        raise ValueError("marginal sampling needs at least 2 rows in a batch.")
    groups = torch.as_tensor(groups, device=x.device)
    if groups.shape != (n_rows,):
        raise ValueError(f"groups must hold one label per row ({n_rows}), got shape {tuple(groups.shape)}.")
    order = torch.argsort(groups, stable=True)  # rows of a group contiguous: positions start .. start + size
    _, sizes = torch.unique_consecutive(groups[order], return_counts=True)
    group_of = torch.repeat_interleave(torch.arange(len(sizes), device=x.device), sizes)  # per sorted position
    size, start = sizes[group_of], (torch.cumsum(sizes, 0) - sizes)[group_of]
    rank = torch.arange(n_rows, device=x.device) - start
    # One shift per group and feature, uniform in [1, size) (any value for a lone row, replaced below).
    uniform = torch.rand((len(sizes), n_features), device=x.device, generator=generator)
    shift = 1 + (uniform * (sizes - 1).unsqueeze(1)).long()
    donor = order[start.unsqueeze(1) + (rank.unsqueeze(1) + shift[group_of]) % size.unsqueeze(1)]
    alone = size == 1
    if alone.any():
        lone_rows = order[alone].unsqueeze(1)
        any_shift = torch.randint(1, n_rows, (1, n_features), device=x.device, generator=generator)
        donor[alone] = (lone_rows + any_shift) % n_rows
    out = torch.empty_like(x)
    out[order] = torch.gather(x, 0, donor)
    return out


#: Number of random feature orderings per batch in :func:`exact_rate_mask` (rows cycle through them).
N_ORDERINGS = 16


def exact_rate_mask(shape, rate, *, device=None, generator=None):
    """Boolean mask with exactly ``round(rate * n_features)`` True entries per row, positions uniform per row.

    Each row's True entries are a window of ``k`` consecutive positions, starting at a uniform random offset, in a
    random ordering of the features. The ordering is uniform, so every row's set is a uniform ``k``-subset; the
    offsets are independent, so whether a given feature is chosen is independent across rows. Rows cycle through
    :data:`N_ORDERINGS` orderings drawn per batch: integer arithmetic on the whole batch instead of one sort (or
    ``randperm``) per row, while rows that share an ordering are a minority of the batch.
    """
    n_rows, n_features = shape
    n_chosen = int(round(rate * n_features))
    if n_chosen <= 0:
        return torch.zeros(shape, dtype=torch.bool, device=device)
    if n_chosen >= n_features:
        return torch.ones(shape, dtype=torch.bool, device=device)
    n_orderings = min(n_rows, N_ORDERINGS)
    orderings = torch.stack(
        [torch.randperm(n_features, device=device, generator=generator, dtype=torch.int32) for _ in range(n_orderings)]
    )
    position = orderings[torch.arange(n_rows, device=device) % n_orderings]  # (n_rows, n_features)
    offset = torch.randint(0, n_features, (n_rows, 1), device=device, generator=generator, dtype=torch.int32)
    shifted = position.sub_(offset)  # in (-n_features, n_features): the window wraps around the end of the ordering
    return ((shifted >= 0) & (shifted < n_chosen)) | (shifted < n_chosen - n_features)


def scarf_corrupt(x, rate, generator=None, groups=None):
    """SCARF corruption: replace exactly ``round(rate * n_features)`` features of each row by marginal draws.

    With ``groups`` (integer group of each row, e.g. its study) the draws come from rows of the same group
    (:func:`grouped_marginal_sample`).

    Returns
    -------
    corrupted : Tensor, same shape as ``x``
    mask : bool Tensor, True where an entry was replaced
    """
    mask = exact_rate_mask(x.shape, rate, device=x.device, generator=generator)
    donors = marginal_sample(x, generator) if groups is None else grouped_marginal_sample(x, groups, generator)
    return torch.where(mask, donors, x), mask


def vime_mask(x, p, generator=None):
    """VIME corruption: each entry is masked independently with probability ``p`` and replaced by a marginal draw.

    Returns
    -------
    corrupted : Tensor, same shape as ``x``
    mask : float Tensor of 0/1, 1 where an entry was replaced (the target of the mask-estimation head)
    """
    mask = bernoulli_mask(x.shape, p, device=x.device, generator=generator)
    return torch.where(mask, marginal_sample(x, generator), x), mask.to(x.dtype)
