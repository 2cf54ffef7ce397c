"""The pieces of ``strategy="finetune"`` (SSLClassifier / SSLRegressor): the network, the split, the optimiser.

Fine-tuning trains an embedder's embedding path (``module.encoder_path()``) under a fixed standardisation of the
embedding and a prediction head, on the labeled rows only. Everything here takes its inputs as arguments: the
estimators in :mod:`skssl.supervised` hand over the rows, strata and class weights of the current fit.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import _reading
from ._nn import Standardize, make_mlp
from ._training import cuda_indices, make_adamw


class _FineTuneModule(nn.Module):
    """An embedder's embedding path (``body``: raw features -> embedding), a fixed standardisation of the
    embedding (``scale``) and a prediction ``head``."""

    def __init__(self, body, scale, head, frozen):
        super().__init__()
        self.body = body
        self.scale = scale
        self.head = head
        self.frozen = frozen

    def embed(self, x):
        return self.body.embed(x)

    def forward(self, x):
        return self.head(self.scale(self.body.embed(x)))

    def train(self, mode=True):
        super().train(mode)
        if self.frozen:
            # A frozen encoder is a fixed feature map: no dropout noise in its output while the head trains.
            self.body.eval()
        return self


def _embedding_path(module, n_features):
    """A trainable copy of what ``module.embed`` uses (``module.encoder_path()``), and the embedding dimension.

    The embedders' modules also hold decoders, projection heads or BYOL target networks; the copy leaves them out
    so that the fine-tuned model stays small.
    """
    if not hasattr(module, "encoder_path"):
        raise TypeError(
            f"{type(module).__name__} has no encoder_path(): an embedder's module must say which of its parts "
            "embed() uses (see BaseSSLEstimator._build_module)."
        )
    body = copy.deepcopy(module.encoder_path()).requires_grad_(True).eval()
    device = next(body.parameters()).device
    # Positive values: valid input for every preprocessing (standardisation, log-normalisation of counts).
    probe = (torch.rand((2, n_features), generator=torch.Generator().manual_seed(0)) + 0.5).to(device)
    with torch.no_grad():
        n_components = body.embed(probe).shape[1]
    return body, n_components


@torch.no_grad()
def _embeddings(body, X, rows):
    """Embeddings of ``X[rows]`` (in eval mode), float64 on the CPU."""
    body.eval()
    device = next(body.parameters()).device
    return torch.cat(
        [
            body.embed(_reading.to_device(block, device)).double().cpu()
            for _, block in _reading.iter_batches(X, _reading.CHUNK_ROWS, indices=rows)
        ]
    )


def build_network(source, X, rows, *, n_outputs, head_hidden_dims, dropout, frozen, seed, device, init_head=None):
    """The fine-tuning network on the embedding path of ``source`` (an embedder's module) and its dimension.

    The embedding is standardised with its statistics on ``X[rows]`` (embeddings come at any scale: a VAE mean is
    near unit, a contrastive one need not be; standardised, they give the head's learning rate the same meaning
    with every embedder). The head's initial weights are seeded by ``seed``; ``init_head(layer, embeddings)``,
    if given, then sets a linear head from the standardised embeddings of ``X[rows]``.
    """
    body, n_components = _embedding_path(source, X.shape[1])
    if frozen:
        body.requires_grad_(False)
    embeddings = _embeddings(body, X, rows)
    scale = Standardize(embeddings.mean(dim=0), embeddings.std(dim=0, correction=0))
    with torch.random.fork_rng(devices=cuda_indices(device)):
        torch.manual_seed(seed)
        head = make_mlp(n_components, tuple(head_hidden_dims), n_outputs, dropout=dropout)
    if init_head is not None:
        init_head(head[-1], scale(embeddings.float()).double().numpy())
    return _FineTuneModule(body, scale, head, frozen), n_components


def split_labeled(rows, strata, validation_fraction, early_stopping, rng):
    """Training and validation rows among the labeled ``rows``; stratified by ``strata`` (class codes) if given.

    Validation is skipped when it would hold fewer than 2 rows or leave fewer than 2 to train on, and for
    classification unless every class has a row on both sides (as a stratified split requires): with a handful
    of labels, early stopping on a validation loss over one or two samples stops at random.
    """
    no_validation = rows, rows[:0]
    n_val = round(validation_fraction * len(rows)) if early_stopping else 0
    if n_val < 2 or len(rows) - n_val < 2:
        return no_validation
    if strata is None:
        order = rng.permutation(len(rows))
        return np.sort(rows[order[n_val:]]), np.sort(rows[order[:n_val]])
    groups, counts = np.unique(strata, return_counts=True)
    if n_val < len(groups) or counts.min() < 2:
        return no_validation
    # One validation row per class, the rest by largest remainder, leaving each class a training row.
    quotas = n_val * counts / counts.sum()
    take = np.clip(np.floor(quotas).astype(int), 1, counts - 1)
    for g in np.argsort(-(quotas - np.floor(quotas)), kind="stable"):
        if take.sum() >= n_val:
            break
        take[g] = min(take[g] + 1, counts[g] - 1)
    is_val = np.zeros(len(rows), dtype=bool)
    for group, n_take in zip(groups, take):
        members = np.flatnonzero(strata == group)
        is_val[members[rng.permutation(len(members))[:n_take]]] = True
    return rows[~is_val], rows[is_val]


def make_optimizer(module, *, learning_rate, encoder_learning_rate, weight_decay):
    """AdamW over the head (at ``learning_rate``) and the trainable encoder parameters (``encoder_learning_rate``)."""
    groups = [{"params": list(module.head.parameters()), "lr": learning_rate}]
    encoder_params = [p for p in module.body.parameters() if p.requires_grad]
    if encoder_params:
        groups.append({"params": encoder_params, "lr": encoder_learning_rate})
    return make_adamw(groups, lr=learning_rate, weight_decay=weight_decay)


def cross_entropy_loss(module, x, targets=None, generator=None, *, weight=None):
    """The classification loss of a batch (``weight``: one weight per class, or None)."""
    return F.cross_entropy(module(x), targets, weight=weight)


def squared_error_loss(module, x, targets=None, generator=None):
    """The regression loss of a batch (standardised targets)."""
    return F.mse_loss(module(x)[:, 0], targets)


def network_outputs(module, X, n_outputs, batch_size):
    """Outputs of ``module`` on validated ``X`` (logits, or standardised predictions) in float64."""
    device = next(module.parameters()).device
    out = np.empty((_reading.n_rows(X), n_outputs))
    module.eval()
    with torch.inference_mode():
        # In float64: float32 matrix products vary in the last digits with the batch's shape, and a sample's
        # prediction must not depend on which other samples are predicted with it.
        weights = {
            name: value.double() if value.is_floating_point() else value for name, value in module.state_dict().items()
        }
        for rows, block in _reading.iter_batches(X, batch_size, check_finite=_reading.is_out_of_core(X)):
            x = _reading.to_device(block, device).double()
            out[rows] = torch.func.functional_call(module, weights, (x,)).cpu().numpy()
    return out
