"""Losses against values computed by hand or by scipy, on tiny tensors."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from skssl._losses import (
    bernoulli_log_likelihood,
    byol_loss,
    gaussian_kl,
    gaussian_log_likelihood,
    nb_log_likelihood,
    nt_xent,
    vime_loss,
)


def test_nt_xent_orthogonal_pairs_by_hand():
    # Anchor (1, 0): positive (1, 0) has similarity 1, the two other rows 0.
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    expected = -math.log(math.e / (math.e + 2.0))
    assert nt_xent(z, z.clone(), temperature=1.0).item() == pytest.approx(expected, rel=1e-6)


def test_nt_xent_temperature_and_scale_invariance():
    z1 = torch.tensor([[3.0, 0.0], [0.0, 0.5]])  # norms differ: the loss must normalise rows
    z2 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    t = 0.5
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2.0))
    assert nt_xent(z1, z2, temperature=t).item() == pytest.approx(expected, rel=1e-6)


def test_nt_xent_general_case_against_explicit_formula():
    gen = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(4, 3, generator=gen), torch.randn(4, 3, generator=gen)
    t = 0.3
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1).double()
    sim = (z @ z.T / t).numpy()
    n = 4
    losses = []
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        others = [k for k in range(2 * n) if k != i]
        losses.append(-(sim[i, positive] - np.log(np.exp(sim[i, others]).sum())))
    assert nt_xent(z1, z2, temperature=t).item() == pytest.approx(np.mean(losses), rel=1e-5)


def test_nt_xent_is_lower_for_aligned_views():
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(8, 5, generator=gen)
    assert nt_xent(z, z + 0.01 * torch.randn(8, 5, generator=gen)) < nt_xent(z, torch.randn(8, 5, generator=gen))


def test_byol_loss_by_hand():
    prediction = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    target = torch.tensor([[0.0, 3.0], [2.0, 2.0]])
    # Row 1: orthogonal -> 2; row 2: parallel -> 0.
    assert byol_loss(prediction, target).item() == pytest.approx(1.0, abs=1e-6)


def test_byol_loss_stops_gradient_into_target():
    prediction = torch.tensor([[1.0, 0.5]], requires_grad=True)
    target = torch.tensor([[0.3, 1.0]], requires_grad=True)
    byol_loss(prediction, target).backward()
    assert prediction.grad is not None and target.grad is None


def test_vime_loss_by_hand():
    logits = torch.zeros(2, 2)  # sigmoid 0.5 -> BCE log 2 whatever the mask
    mask = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    reconstruction = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    x = torch.tensor([[1.0, 2.0], [3.0, 2.0]])  # one error of 2 -> MSE 4 / 4 = 1
    assert vime_loss(logits, mask, reconstruction, x, alpha=2.0).item() == pytest.approx(math.log(2) + 2.0, rel=1e-6)


def test_nb_log_likelihood_matches_scipy():
    x = torch.tensor([[0.0, 1.0, 5.0, 40.0], [3.0, 0.0, 12.0, 7.0]], dtype=torch.float64)
    mu = torch.tensor([[0.5, 2.0, 4.0, 35.0], [1.0, 0.2, 20.0, 7.5]], dtype=torch.float64)
    theta = torch.tensor([0.7, 2.0, 10.0, 0.3], dtype=torch.float64)
    expected = stats.nbinom(n=theta.numpy(), p=(theta / (theta + mu)).numpy()).logpmf(x.numpy()).sum(axis=1)
    np.testing.assert_allclose(nb_log_likelihood(x, mu, theta, eps=0.0).numpy(), expected, rtol=1e-10)


def test_gaussian_log_likelihood_matches_scipy():
    x = torch.tensor([[0.3, -1.0, 2.0]], dtype=torch.float64)
    mean = torch.tensor([[0.0, -0.5, 1.0]], dtype=torch.float64)
    log_var = torch.tensor([0.0, 1.0, -1.0], dtype=torch.float64)
    expected = stats.norm(mean.numpy(), np.exp(0.5 * log_var.numpy())).logpdf(x.numpy()).sum(axis=1)
    np.testing.assert_allclose(gaussian_log_likelihood(x, mean, log_var).numpy(), expected, rtol=1e-12)


def test_bernoulli_log_likelihood_matches_scipy_and_broadcasts_over_draws():
    x = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    logits = torch.tensor([[-2.0, 0.5, 3.0], [0.0, 1.5, -0.7]], dtype=torch.float64)
    p = torch.sigmoid(logits).numpy()
    expected = stats.bernoulli(p).logpmf(x.numpy()).sum(axis=1)
    np.testing.assert_allclose(bernoulli_log_likelihood(x, logits).numpy(), expected, rtol=1e-12)
    draws = torch.stack([logits, torch.zeros_like(logits)])  # (n_draws, n_rows, n_features)
    per_draw = bernoulli_log_likelihood(x, draws)
    assert per_draw.shape == (2, 2)
    np.testing.assert_allclose(per_draw[1].numpy(), np.full(2, 3 * math.log(0.5)), rtol=1e-12)


def test_gaussian_kl_by_hand():
    mean = torch.tensor([[1.0, 0.0]])
    log_var = torch.tensor([[0.0, math.log(2.0)]])
    # 0.5 * (1 + 1 - 1 - 0) + 0.5 * (0 + 2 - 1 - log 2)
    expected = 0.5 + 0.5 * (1.0 - math.log(2.0))
    assert gaussian_kl(mean, log_var).item() == pytest.approx(expected, rel=1e-6)
