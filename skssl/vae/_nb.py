"""Negative-binomial likelihood: raw counts (RNA-seq reads, UMIs), as in scVI."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .._compat import standard_gamma
from .._losses import nb_log_likelihood
from .._nn import LogNormalize
from ._likelihood import Likelihood


class NegativeBinomial(Likelihood):
    """Negative binomial with one inverse dispersion per feature; the decoder outputs feature proportions.

    The encoder sees ``log1p``-normalised counts; the mean of a sample's counts is its proportions times its
    observed library size (total count). Decoding without observed counts (``mean``) uses the median library size
    of the fit data, sampling draws library sizes from the log-normal fitted to those of the fit data; both are
    buffers (``library_size``, ``log_library_mean``, ``log_library_std``).

    Examples
    --------
    >>> import torch
    >>> from skssl.vae.likelihoods import NegativeBinomial
    >>> likelihood = NegativeBinomial(2, library_sizes=[10.0, 30.0, 20.0])
    >>> likelihood.mean(torch.zeros(1, 2))  # equal proportions at the median library size
    tensor([[10., 10.]])
    """

    name = "nb"

    def __init__(self, n_features, library_sizes=None):
        super().__init__(n_features)
        self.log_theta = nn.Parameter(torch.zeros(n_features))  # per-feature inverse dispersion (log)
        sizes = np.asarray([] if library_sizes is None else library_sizes, dtype=np.float64)
        if len(sizes):
            log_sizes = np.log(np.maximum(sizes, 1.0))
            median, mean_log, std_log = float(np.median(sizes)), float(log_sizes.mean()), float(log_sizes.std())
        else:  # unknown (a network rebuilt before its stored buffers are loaded)
            median, mean_log, std_log = 1.0, 0.0, 0.0
        self.register_buffer("library_size", torch.tensor(median))
        self.register_buffer("log_library_mean", torch.tensor(mean_log))
        self.register_buffer("log_library_std", torch.tensor(std_log))

    @classmethod
    def from_statistics(cls, n_features, statistics):
        return cls(n_features, statistics.get("library_sizes"))

    def preprocess(self):
        return LogNormalize()

    def log_prob(self, x, out):
        library = x.sum(dim=1, keepdim=True)
        return nb_log_likelihood(x, torch.softmax(out, dim=-1) * library, self.log_theta.exp())

    def mean(self, out):
        return torch.softmax(out, dim=-1) * self.library_size

    def sample(self, out, generator):
        log_library = self.log_library_mean + self.log_library_std * torch.randn(
            (out.shape[0], 1), device=out.device, generator=generator
        )
        mu = torch.softmax(out, dim=-1) * log_library.exp()
        theta = self.log_theta.exp().expand_as(mu)
        # Gamma-Poisson mixture == negative binomial with mean mu and inverse dispersion theta. The gamma draws take
        # no generator: the caller seeds torch's RNG (in a fork of it) for reproducible draws.
        return torch.poisson(standard_gamma(theta) * (mu / theta), generator=generator)
