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
    donors = (marginal_sample(x, torch.Generator().manual_seed(3)).long() // 100000)
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
