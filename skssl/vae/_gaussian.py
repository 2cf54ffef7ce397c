"""Gaussian likelihood: (log-)expression, normalised or any real-valued measurement."""

from __future__ import annotations

import copy

import torch
from torch import nn

from .._losses import gaussian_log_likelihood
from .._nn import Standardize
from ._likelihood import LOG_VAR_BOUND, Likelihood


class Gaussian(Likelihood):
    """Independent Gaussians on the standardised values, with a learned noise variance per feature.

    The decoder output is the mean of the standardised values (``(x - mean) / std`` of the fit data, or ``x`` itself
    with ``standardize=False``); the encoder sees the same standardised values.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skssl.vae.likelihoods import Gaussian
    >>> likelihood = Gaussian(2, mean=np.array([1.0, 2.0]), std=np.array([2.0, 1.0]))
    >>> likelihood.mean(torch.tensor([[0.5, -1.0]]))
    tensor([[2., 1.]])
    >>> round(float(likelihood.log_prob(torch.tensor([[2.0, 1.0]]), torch.tensor([[0.5, -1.0]])).detach()), 4)
    -1.8379
    """

    name = "gaussian"

    def __init__(self, n_features, mean, std, standardize=True):
        super().__init__(n_features)
        self.standardize = Standardize(mean, std, enabled=standardize)
        self.log_var = nn.Parameter(torch.zeros(n_features))  # per-feature noise variance (standardised units)

    @classmethod
    def from_statistics(cls, n_features, statistics):
        return cls(n_features, statistics["mean"], statistics["std"], statistics.get("standardize", True))

    def preprocess(self):
        return copy.deepcopy(self.standardize)

    def _log_var(self):
        return self.log_var.clamp(-LOG_VAR_BOUND, LOG_VAR_BOUND)

    def log_prob(self, x, out):
        return gaussian_log_likelihood(self.standardize(x), out, self._log_var())

    def mean(self, out):
        return self.standardize.inverse(out)

    def sample(self, out, generator):
        std = (0.5 * self._log_var()).exp()
        noise = torch.randn(out.shape, device=out.device, generator=generator)
        return self.standardize.inverse(out + noise * std)

    def log_det(self):
        return torch.log(self.standardize.scale).sum()
