"""SCARF and VIME corruptions: exact counts, rates and donor columns."""

import numpy as np
import pytest
import torch

from skssl._corruption import exact_rate_mask, marginal_sample, scarf_corrupt, vime_mask


def coded_matrix(n_rows, n_cols):
    # Entry (i, j) holds i * 100000 + j, so any value tells the row and the column it came from.
    return (torch.arange(n_rows).unsqueeze(1) * 100000 + torch.arange(n_cols)).double()


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.33, 0.6, 0.99])
def test_scarf_corrupts_exact_count_per_row(rate):
    x = coded_matrix(32, 50)
    corrupted, mask = scarf_corrupt(x, rate, torch.Generator().manual_seed(0))
    expected = round(rate * 50)
    assert (mask.sum(dim=1) == expected).all()
    # Unmasked entries are untouched.
    assert torch.equal(corrupted[~mask], x[~mask])


def test_scarf_values_come_from_same_column_of_another_row():
    x = coded_matrix(16, 40)
    corrupted, mask = scarf_corrupt(x, 0.6, torch.Generator().manual_seed(1))
    rows, cols = torch.nonzero(mask, as_tuple=True)
    values = corrupted[rows, cols].long()
    assert torch.equal(values % 100000, cols)
    assert (values // 100000 != rows).all()


def test_scarf_positions_are_uniform():
    x = torch.zeros(4000, 10)
    _, mask = scarf_corrupt(x, 0.3, torch.Generator().manual_seed(2))
    frequency = mask.double().mean(dim=0)
    np.testing.assert_allclose(frequency.numpy(), 0.3, atol=0.03)


def test_marginal_sample_donors_are_uniform_over_other_rows():
    x = coded_matrix(5, 2000)
    donors = marginal_sample(x, torch.Generator().manual_seed(3)).long() // 100000
    for row in range(5):
        counts = torch.bincount(donors[row], minlength=5).double() / 2000
        assert counts[row] == 0
        others = torch.arange(5)[torch.arange(5) != row]
        np.testing.assert_allclose(counts[others].numpy(), 0.25, atol=0.04)


def test_marginal_sample_needs_two_rows():
    with pytest.raises(ValueError, match="at least 2 rows"):
        marginal_sample(torch.zeros(1, 3))


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_vime_mask_rate(p):
    x = coded_matrix(500, 200)
    corrupted, mask = vime_mask(x, p, torch.Generator().manual_seed(4))
    assert mask.dtype == x.dtype
    assert abs(mask.mean().item() - p) < 0.01
    masked = mask.bool()
    assert torch.equal(corrupted[~masked], x[~masked])
    rows, cols = torch.nonzero(masked, as_tuple=True)
    values = corrupted[rows, cols].long()
    assert torch.equal(values % 100000, cols) and (values // 100000 != rows).all()


def test_exact_rate_mask_edges():
    assert not exact_rate_mask((3, 4), 0.0).any()
    assert exact_rate_mask((3, 4), 1.0).all()


def test_corruption_is_seeded():
    x = coded_matrix(8, 30)
    a, _ = scarf_corrupt(x, 0.5, torch.Generator().manual_seed(5))
    b, _ = scarf_corrupt(x, 0.5, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_marginal_sample_rotates_each_column():
    # Within a column every row donates exactly once (a rotation by a shift in [1, n_rows)), so the corrupted
    # column has exactly the batch's values; the shifts of different columns are independent.
    x = coded_matrix(7, 300)
    donors = marginal_sample(x, torch.Generator().manual_seed(6)).long() // 100000
    for j in range(300):
        assert sorted(donors[:, j].tolist()) == list(range(7))
    shifts = (donors[0] - 0) % 7
    assert set(shifts.tolist()) == set(range(1, 7))


def test_exact_rate_mask_rows_are_uniform_subsets():
    generator = torch.Generator().manual_seed(7)
    mask = torch.cat([exact_rate_mask((40, 6), 0.5, generator=generator) for _ in range(500)])
    assert (mask.sum(dim=1) == 3).all()
    # Each of the C(6, 3) = 20 subsets is about equally frequent, over rows and batches ...
    codes = (mask.long() * (2 ** torch.arange(6))).sum(dim=1)
    frequency = torch.bincount(codes, minlength=64)[codes.unique()].double() / len(codes)
    assert len(frequency) == 20
    np.testing.assert_allclose(frequency.numpy(), 1 / 20, atol=0.01)
    # ... and within one batch, rows use several orderings, so more than n_features distinct subsets occur.
    one_batch = exact_rate_mask((200, 6), 0.5, generator=generator)
    assert len((one_batch.long() * (2 ** torch.arange(6))).sum(dim=1).unique()) > 6


def test_exact_rate_mask_feature_is_chosen_independently_across_rows():
    # For a given feature, rows are chosen independently (rate**2 for two rows), across many batches.
    generator = torch.Generator().manual_seed(8)
    both = np.mean([exact_rate_mask((2, 10), 0.3, generator=generator)[:, 4].all().item() for _ in range(20000)])
    assert both == pytest.approx(0.09, abs=0.01)


def test_bernoulli_mask_rate_and_vime_mask_on_large_batches():
    from skssl._corruption import bernoulli_mask

    mask = bernoulli_mask((400, 500), 0.3, generator=torch.Generator().manual_seed(9))
    assert mask.double().mean().item() == pytest.approx(0.3, abs=0.005)
    # Rows are independent: per-row counts have the binomial variance.
    assert mask.sum(dim=1).double().var().item() == pytest.approx(500 * 0.3 * 0.7, rel=0.2)
