"""A fit's new state, computed first and assigned at once: what a training run returns, and the guard that puts back
the previous state when a fit does not finish (Ctrl-C included)."""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch


class TrainingRun(NamedTuple):
    """What :meth:`BaseTorchEstimator._train` returns: the trained module, the loop's result, the schedule it
    followed and the device it ran on (nothing is set on the estimator)."""

    module: torch.nn.Module
    result: object  # skssl._training.FitResult
    schedule: object  # skssl._training.Schedule
    device: torch.device


def training_attributes(module, history, n_iter, best_epoch, batch_size, device):
    """The fitted attributes of a training run (of ``_train``, or of one skipped with no epoch run)."""
    return {
        "module_": module,
        "history_": history,
        "n_iter_": n_iter,
        "best_epoch_": best_epoch,
        "batch_size_": batch_size,
        "device_": device,
    }


@contextlib.contextmanager
def previous_state_on_error(estimator):
    """Within the block, any exception (Ctrl-C's ``KeyboardInterrupt`` included) puts back the attributes that
    ``estimator`` had before it, and is re-raised.

    An embedder's fit computes its whole new state first and assigns it at once at its end; validation sets
    ``n_features_in_`` and ``feature_names_in_`` on the way, and the semi-supervised estimators set their
    targets' attributes and ``embedder_`` before training. With this guard around the fit, a fit that does not
    finish leaves the previous fitted state (or an unfitted estimator), never a mix of the two. Objects of the
    previous state must not be changed in place inside the block (a warm start and partial_fit train copies).
    """
    previous = dict(estimator.__dict__)
    try:
        yield
    except BaseException:
        estimator.__dict__.clear()
        estimator.__dict__.update(previous)
        raise
