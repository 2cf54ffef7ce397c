"""The VAE's observation models (skssl.vae.likelihoods): each on a 4 x 3 tensor, then Bernoulli end to end."""

import numpy as np
import pytest
import torch
from scipy import stats

from skssl import VAEEmbedder
from skssl.multiview import VIEW_LIKELIHOODS
from skssl.vae.likelihoods import LIKELIHOODS, Bernoulli, Gaussian, NegativeBinomial, make_likelihood

FAST = dict(n_components=3, hidden_dims=(16,), max_epochs=5, device="cpu", random_state=0)
X = torch.tensor([[0.0, 1.0, 4.0], [2.0, 0.0, 1.0], [1.0, 1.0, 0.0], [5.0, 3.0, 2.0]], dtype=torch.float64)
OUT = torch.tensor([[0.1, -0.3, 0.7], [1.2, 0.0, -1.0], [-0.5, 0.4, 0.2], [0.3, 0.3, -0.8]], dtype=torch.float64)


def test_registry_names_every_likelihood_a_view_may_use():
    assert set(LIKELIHOODS) == set(VIEW_LIKELIHOODS) == {"gaussian", "nb", "bernoulli"}
    assert all(cls.name == name for name, cls in LIKELIHOODS.items())
    statistics = {"mean": np.zeros(3), "std": np.ones(3), "standardize": True, "library_sizes": [5.0, 3.0]}
    assert isinstance(make_likelihood("bernoulli", 3, statistics), Bernoulli)
    with pytest.raises(ValueError, match="likelihood must be one of"):
        make_likelihood("poisson", 3, statistics)


def test_gaussian_is_a_normal_density_in_standardised_units_with_its_jacobian():
    mean, std = np.array([1.0, 0.0, 2.0]), np.array([2.0, 1.0, 0.5])
    likelihood = Gaussian(3, mean, std).double().requires_grad_(False)
    likelihood.log_var.copy_(torch.tensor([0.0, 0.5, -1.0]))
    log_prob = likelihood.log_prob(X, OUT)
    sigma = np.exp(0.5 * likelihood.log_var.numpy())
    z = (X.numpy() - mean) / std
    np.testing.assert_allclose(log_prob.numpy(), stats.norm(OUT.numpy(), sigma).logpdf(z).sum(axis=1), rtol=1e-12)
    # In data units the density is over x: the log-Jacobian of the standardisation is subtracted.
    data_units = stats.norm(mean + std * OUT.numpy(), std * sigma).logpdf(X.numpy()).sum(axis=1)
    np.testing.assert_allclose((log_prob - likelihood.log_det()).numpy(), data_units, rtol=1e-12)
    np.testing.assert_allclose(likelihood.mean(OUT).numpy(), mean + std * OUT.numpy(), rtol=1e-12)
    np.testing.assert_allclose(likelihood.preprocess()(X).numpy(), z, rtol=1e-12)
    draws = likelihood.sample(OUT.expand(20000, 4, 3).reshape(-1, 3), torch.Generator().manual_seed(0))
    draws = draws.reshape(20000, 4, 3).numpy()
    np.testing.assert_allclose(draws.mean(axis=0), likelihood.mean(OUT).numpy(), atol=0.05)
    np.testing.assert_allclose(draws.std(axis=0)[0], std * sigma, rtol=0.05)
    # standardize=False: the identity transform.
    plain = Gaussian(3, mean, std, standardize=False).double()
    np.testing.assert_allclose(plain.mean(OUT).numpy(), OUT.numpy())
    assert float(plain.log_det()) == 0.0


def test_negative_binomial_scales_proportions_by_the_library_size():
    likelihood = NegativeBinomial(3, library_sizes=[10.0, 40.0, 20.0, 0.0]).double().requires_grad_(False)
    assert float(likelihood.library_size) == 15.0  # the median
    logs = np.log([10.0, 40.0, 20.0, 1.0])  # library sizes below 1 count as 1 in the log-normal
    assert float(likelihood.log_library_mean) == pytest.approx(logs.mean())
    assert float(likelihood.log_library_std) == pytest.approx(logs.std())
    likelihood.log_theta.copy_(torch.log(torch.tensor([0.5, 2.0, 10.0])))
    theta = np.array([0.5, 2.0, 10.0])
    mu = torch.softmax(OUT, dim=-1).numpy() * X.numpy().sum(axis=1, keepdims=True)  # at each row's own library
    expected = stats.nbinom(n=theta, p=theta / (theta + mu)).logpmf(X.numpy()).sum(axis=1)
    np.testing.assert_allclose(likelihood.log_prob(X, OUT).numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(likelihood.mean(OUT).numpy(), torch.softmax(OUT, -1).numpy() * 15.0, rtol=1e-6)
    counts = X / X.sum(dim=1, keepdim=True) * 1e4
    np.testing.assert_allclose(likelihood.preprocess()(X).numpy(), np.log1p(counts.numpy()), rtol=1e-12)
    torch.manual_seed(0)  # the gamma draws use torch's RNG
    draws = likelihood.sample(OUT, torch.Generator().manual_seed(0))
    assert draws.shape == (4, 3) and (draws >= 0).all() and torch.equal(draws, draws.round())
    assert likelihood.log_det() is None
    # Unknown library sizes (a network rebuilt before its stored buffers are loaded): neutral placeholders.
    assert float(NegativeBinomial(3).library_size) == 1.0


def test_bernoulli_reads_logits():
    likelihood = Bernoulli(3).double()
    calls = (X > 1).double()
    p = torch.sigmoid(OUT).numpy()
    np.testing.assert_allclose(
        likelihood.log_prob(calls, OUT).numpy(), stats.bernoulli(p).logpmf(calls.numpy()).sum(axis=1), rtol=1e-12
    )
    np.testing.assert_allclose(likelihood.mean(OUT).numpy(), p, rtol=1e-12)
    assert torch.equal(likelihood.preprocess()(calls), calls)  # 0/1 calls reach the encoder as they are
    draws = likelihood.sample(OUT.expand(20000, 4, 3), torch.Generator().manual_seed(0)).numpy()
    assert set(np.unique(draws)) <= {0.0, 1.0}
    np.testing.assert_allclose(draws.mean(axis=0), p, atol=0.02)
    assert list(likelihood.parameters()) == [] and likelihood.log_det() is None


def test_log_prob_broadcasts_over_latent_draws():
    draws = torch.stack([OUT, OUT + 1.0])  # (n_draws, n_rows, n_features), as the ELBO calls it
    for likelihood, x in [
        (Gaussian(3, np.zeros(3), np.ones(3)), X),
        (NegativeBinomial(3, [5.0]), X),
        (Bernoulli(3), (X > 1).double()),
    ]:
        likelihood = likelihood.double().requires_grad_(False)
        per_draw = likelihood.log_prob(x, draws)
        assert per_draw.shape == (2, 4)
        torch.testing.assert_close(per_draw[0], likelihood.log_prob(x, OUT))


# ----------------------------------------------------------------------------- Bernoulli end to end


def binary_calls(n=80, seed=0):
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(n, 2))
    return (factors @ rng.normal(size=(2, 12)) + 0.5 * rng.normal(size=(n, 12)) > 0).astype(np.float32)


def test_bernoulli_vae_on_binary_calls():
    calls = binary_calls()
    vae = VAEEmbedder(likelihood="bernoulli", **{**FAST, "max_epochs": 30}).fit(calls)
    assert vae.module_.likelihoods[0].name == "bernoulli"
    Z = vae.transform(calls)
    assert Z.shape == (80, 3) and np.isfinite(Z).all()
    probabilities = vae.inverse_transform(Z)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    # Decoding the embedding predicts the calls better than the marginal frequencies do.
    assert np.mean((probabilities - calls) ** 2) < np.mean((calls.mean(axis=0) - calls) ** 2)
    draws = vae.sample(50, random_state=0)
    assert set(np.unique(draws)) <= {0.0, 1.0}
    np.testing.assert_array_equal(draws, vae.sample(50, random_state=0))
    scores = vae.score_samples(calls)
    assert np.isfinite(scores).all() and (scores < 0).all()  # a log-probability bound of discrete data
    assert not hasattr(vae, "library_size_") and not hasattr(vae, "views_")


def test_bernoulli_vae_rejects_values_other_than_0_and_1():
    calls = binary_calls()
    bad = calls.copy()
    bad[3, 4] = 0.5
    with pytest.raises(ValueError, match="X has values other than 0 and 1 .*e.g. 0.5"):
        VAEEmbedder(likelihood="bernoulli", **FAST).fit(bad)
    fitted = VAEEmbedder(likelihood="bernoulli", **FAST).fit(calls)
    with pytest.raises(ValueError, match="values other than 0 and 1"):
        fitted.transform(bad)
    import scipy.sparse as sp

    with pytest.raises(ValueError, match="values other than 0 and 1"):
        fitted.transform(sp.csr_matrix(bad))
