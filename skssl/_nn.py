"""Small torch building blocks shared by every method.

The estimators (``contrastive.py``, ``masked.py``, ``vae.py``) hold the user API; the modules here hold the math.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._compat import ema_update_


def make_mlp(in_features, hidden_dims, out_features, *, dropout=0.0, norm=True):
    """Linear -> LayerNorm -> ReLU -> Dropout blocks, then a plain Linear output layer.

    LayerNorm rather than BatchNorm: it behaves the same in training and inference and with batches of any size,
    so ``transform`` on one row equals ``transform`` on that row inside a larger batch.
    """
    layers = []
    width = in_features
    for hidden in hidden_dims:
        layers.append(nn.Linear(width, hidden))
        if norm:
            layers.append(nn.LayerNorm(hidden))
        layers.append(nn.ReLU())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = hidden
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


def with_batch_code(z, batch, n_batches):
    """``z`` with the one-hot code of each row's batch (study) appended: the input of a batch-conditioned decoder
    (scVI's way: the decoder explains study identity, so the latent code need not).

    ``z`` has shape (..., n_rows, d) and ``batch`` (n_rows,) integer codes; ``batch=None`` appends the mean of
    the codes (``1 / n_batches`` each), a decoding for an average study. With ``n_batches=0`` (a model fitted
    without batches) ``z`` is returned as it is.
    """
    if not n_batches:
        return z
    if batch is None:
        code = z.new_full((*z.shape[:-1], n_batches), 1.0 / n_batches)
    else:
        code = F.one_hot(batch.long(), n_batches).to(z.dtype).expand(*z.shape[:-1], n_batches)
    return torch.cat([z, code], dim=-1)


@torch.no_grad()
def ema_update(target, online, decay):
    """In-place exponential moving average ``target <- decay * target + (1 - decay) * online``."""
    target_params = list(target.parameters())
    online_params = list(online.parameters())
    ema_update_(target_params, online_params, decay)


class Standardize(nn.Module):
    """Per-feature ``(x - mean) / scale`` with statistics from the fit data, kept as buffers so they travel with
    the module (device moves, pickles). Features with zero variance get scale 1."""

    def __init__(self, mean, std, enabled=True):
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float32)
        std = torch.as_tensor(std, dtype=torch.float32)
        if not enabled:
            mean, std = torch.zeros_like(mean), torch.ones_like(std)
        std = torch.where(std > 1e-8 * (1.0 + mean.abs()), std, torch.ones_like(std))
        self.register_buffer("mean", mean)
        self.register_buffer("scale", std)

    def forward(self, x):
        return (x - self.mean) / self.scale

    def inverse(self, x):
        return x * self.scale + self.mean


class LogNormalize(nn.Module):
    """Counts -> ``log1p(counts / library size * 10 000)``: what an encoder of raw counts sees (as in scVI)."""

    def __init__(self, target_sum=1e4):
        super().__init__()
        self.target_sum = target_sum

    def forward(self, x):
        library = x.sum(dim=1, keepdim=True).clamp_min(1.0)
        return torch.log1p(x / library * self.target_sum)


class EncoderModule(nn.Module):
    """Base of a method's module whose embedding is ``encoder(preprocess(x))`` (the masked and contrastive
    modules): ``embed`` and ``encoder_path`` live here once, so the method's file holds only its layers and loss."""

    def embed(self, x):
        return self.encoder(self.preprocess(x))

    def encoder_path(self):
        """The part of this module that ``embed`` uses: preprocessing and encoder (shared, not copied)."""
        return EncoderPath(self.preprocess, self.encoder)


class EncoderPath(EncoderModule):
    """Raw features -> embedding through ``preprocess`` then ``encoder``: the part of an embedder's module that its
    ``embed`` uses (see ``encoder_path()`` of the masked and contrastive modules), sharing their layers."""

    def __init__(self, preprocess, encoder):
        super().__init__()
        self.preprocess = preprocess
        self.encoder = encoder

    def forward(self, x):
        return self.embed(x)
