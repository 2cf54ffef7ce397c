"""THE training schedule and loop of every skssl network, as functions over explicit arguments.

``resolve_schedule`` turns the ``"auto"`` batch size, epoch budget and early-stopping patience into numbers (the
estimators and the benchmark use the same rule); ``fit_loop`` trains a torch module under such a schedule.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

# Optimisation steps that the "auto" epoch budget aims for, and the least number of steps that early stopping
# waits for an improvement: small cohorts get many short epochs, large ones few long epochs.
AUTO_STEP_BUDGET = 3000
AUTO_MIN_EPOCHS = 3
AUTO_MAX_EPOCHS = 500
AUTO_PATIENCE_STEPS = 200
AUTO_MIN_PATIENCE = 10
# The "auto" batch size: a quarter of the training rows, clipped to this range (and to the number of rows).
AUTO_MIN_BATCH, AUTO_MAX_BATCH = 32, 256


class Schedule(NamedTuple):
    """Rows per step, most epochs, and epochs without improvement before early stopping."""

    batch_size: int
    max_epochs: int
    patience: int


def auto_batch_size(n_train):
    """A quarter of the training rows, clipped to [32, 256] and to the number of rows."""
    return int(min(n_train, np.clip(n_train // 4, AUTO_MIN_BATCH, AUTO_MAX_BATCH)))


def steps_per_epoch(n_train, batch_size):
    """Optimisation steps of one epoch: full batches, plus the remainder when it has at least 2 rows."""
    return max(1, n_train // batch_size + (n_train % batch_size >= 2))


def validation_size(n_samples, validation_fraction, early_stopping=True):
    """Rows held out for early stopping: ``round(validation_fraction * n_samples)``, or 0 when early stopping is
    off or when the held-out part or the rest would have fewer than 2 rows."""
    n_val = int(round(validation_fraction * n_samples)) if early_stopping else 0
    return 0 if n_val < 2 or n_samples - n_val < 2 else n_val


def resolve_schedule(n_train, *, batch_size="auto", max_epochs="auto", n_iter_no_change="auto",
                     steps=AUTO_STEP_BUDGET):
    """Batch size, epochs and early-stopping patience for ``n_train`` training rows, resolving ``"auto"``.

    - ``batch_size="auto"``: a quarter of the training rows, clipped to [32, 256]; any batch size is clipped to
      ``n_train``.
    - ``max_epochs="auto"``: about ``steps`` (3 000) optimisation steps, between 3 and 500 epochs.
    - ``n_iter_no_change="auto"``: about 200 optimisation steps, at least 10 epochs.

    >>> resolve_schedule(54)
    Schedule(batch_size=32, max_epochs=500, patience=100)
    >>> resolve_schedule(1_000_000)
    Schedule(batch_size=256, max_epochs=3, patience=10)
    >>> resolve_schedule(100, batch_size=500, max_epochs=7, n_iter_no_change=2)
    Schedule(batch_size=100, max_epochs=7, patience=2)
    """
    n_train = int(n_train)
    if n_train < 1:
        raise ValueError(f"resolve_schedule needs at least 1 training row, got {n_train}.")
    size = auto_batch_size(n_train) if _is_auto(batch_size) else min(int(batch_size), n_train)
    per_epoch = steps_per_epoch(n_train, size)
    if _is_auto(max_epochs):
        epochs = int(np.clip(math.ceil(steps / per_epoch), AUTO_MIN_EPOCHS, AUTO_MAX_EPOCHS))
    else:
        epochs = int(max_epochs)
    if _is_auto(n_iter_no_change):
        patience = max(AUTO_MIN_PATIENCE, math.ceil(AUTO_PATIENCE_STEPS / per_epoch))
    else:
        patience = int(n_iter_no_change)
    return Schedule(size, epochs, patience)


def _is_auto(value):
    return isinstance(value, str) and value == "auto"
