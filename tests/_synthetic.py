"""Synthetic data shared by the tests."""

import numpy as np


def low_rank_classes(n_samples=400, n_features=100, n_classes=3, rank=4, noise=3.0, seed=0):
    """Classes that live in a low-rank program under heavy per-gene noise.

    Each class shifts the activity of ``rank`` latent programs; each program loads on a block of co-expressed
    genes. Per gene the noise dominates, pooled over a block the class is clear.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(n_classes, size=n_samples)
    class_centres = rng.normal(scale=2.0, size=(n_classes, rank))
    activities = class_centres[y] + rng.normal(scale=0.5, size=(n_samples, rank))
    loadings = np.zeros((rank, n_features))
    block = n_features // (2 * rank)
    for k in range(rank):
        loadings[k, k * block : (k + 1) * block] = rng.uniform(0.5, 1.5, size=block)
    X = activities @ loadings + rng.normal(scale=noise, size=(n_samples, n_features))
    return X.astype(np.float32), y
