"""Variational autoencoders: :class:`VAEEmbedder` (single view or multi-omics ``views``).

- :mod:`skssl.vae.estimator`: the estimator (API, validation, data handling);
- :mod:`skssl.vae._module`: the torch module (encoders fused by a product of experts, decoders);
- :mod:`skssl.vae.likelihoods`: the observation models (``"gaussian"``, ``"nb"``, ``"bernoulli"``), one small module
  each.
"""

from .estimator import VAEEmbedder

__all__ = ["VAEEmbedder"]
