"""Bernoulli likelihood: binary calls (mutated or not, methylated or not, present or absent)."""

from __future__ import annotations

import torch
from torch import nn

from .._losses import bernoulli_log_likelihood
from ._likelihood import Likelihood


class Bernoulli(Likelihood):
    """Independent Bernoulli variables; the decoder outputs their logits and the encoder sees the 0/1 values as
    they are.

    Examples
    --------
    >>> import torch
    >>> from skssl.vae.likelihoods import Bernoulli
    >>> likelihood = Bernoulli(2)
    >>> likelihood.mean(torch.tensor([[0.0, 100.0]]))
    tensor([[0.5000, 1.0000]])
    >>> round(float(likelihood.log_prob(torch.tensor([[1.0, 1.0]]), torch.tensor([[0.0, 100.0]]))), 4)  # log 0.5
    -0.6931
    """

    name = "bernoulli"

    def preprocess(self):
        return nn.Identity()

    def log_prob(self, x, out):
        return bernoulli_log_likelihood(x, out)

    def mean(self, out):
        return torch.sigmoid(out)

    def sample(self, out, generator):
        return torch.bernoulli(torch.sigmoid(out), generator=generator)
