"""THE training schedule and loop of every skssl network, as functions over explicit arguments.

``resolve_schedule`` turns the ``"auto"`` batch size, epoch budget and early-stopping patience into numbers (the
estimators and the benchmark use the same rule); ``fit_loop`` trains a torch module under such a schedule. A
``KeyboardInterrupt`` during its epochs stops training as early stopping would (skorch's behaviour): the run ends
normally with ``stop_reason="interrupted"``. A :class:`Checkpoint` saves the loop's whole state every
``CHECKPOINT_SECONDS`` so that a killed run resumes where it was and ends bit for bit as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import time
import warnings
from typing import NamedTuple

import numpy as np
import torch

from ._atomic import atomic_path
from .exceptions import FitInterruptedWarning

# Optimisation steps that the "auto" epoch budget aims for, and the least number of steps that early stopping
# waits for an improvement: small cohorts get many short epochs, large ones few long epochs.
AUTO_STEP_BUDGET = 3000
AUTO_MIN_EPOCHS = 3
AUTO_MAX_EPOCHS = 500
AUTO_PATIENCE_STEPS = 200
AUTO_MIN_PATIENCE = 10
# MaskedAutoencoder's patience (its n_iter_no_change="auto"): half as many steps. On cohorts of 50-300 samples the
# 200 steps spent most of a fit after its best epoch (100 epochs of a 2-step epoch on bladderbatch); with 100 each
# of 30 measured runs (10 splits each of bladderbatch, HSMM and a synthetic cohort) kept its best epoch, and 8 of 10
# on TCGA ACC (docs/default_schedule.md). ContrastiveEmbedder lost scores with it (the example notebook's
# scarf_probe), so the other networks keep 200. From 5 000 training rows on (epochs of >= 20 steps) both are the
# 10-epoch minimum.
MASKED_AUTOENCODER_PATIENCE_STEPS = 100
# The "auto" batch size: a quarter of the training rows, clipped to this range (and to the number of rows).
AUTO_MIN_BATCH, AUTO_MAX_BATCH = 32, 256
# Gradients are clipped to this norm: expression data has heavy-tailed genes that can produce rare huge steps.
MAX_GRAD_NORM = 10.0
# A checkpoint is written at the end of the first epoch that ends this long after the previous one (or the start):
# often enough to lose at most a minute of a long fit, rarely enough to cost nothing measurable on a short one.
CHECKPOINT_SECONDS = 60.0
CHECKPOINT_FORMAT = 1


class Schedule(NamedTuple):
    """Rows per step, most epochs, and epochs without improvement before early stopping."""

    batch_size: int
    max_epochs: int
    patience: int

    def last_epoch(self, best_epoch, early_stopping=True):
        """The epoch after which training stops if the monitored loss does not improve on ``best_epoch``'s."""
        if not early_stopping:
            return self.max_epochs
        return min(self.max_epochs, best_epoch + self.patience)


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


def resolve_schedule(
    n_train,
    *,
    batch_size="auto",
    max_epochs="auto",
    n_iter_no_change="auto",
    steps=AUTO_STEP_BUDGET,
    patience_steps=AUTO_PATIENCE_STEPS,
):
    """Batch size, epochs and early-stopping patience for ``n_train`` training rows, resolving ``"auto"``.

    - ``batch_size="auto"``: a quarter of the training rows, clipped to [32, 256]; any batch size is clipped to
      ``n_train``.
    - ``max_epochs="auto"``: about ``steps`` (3 000) optimisation steps, between 3 and 500 epochs.
    - ``n_iter_no_change="auto"``: about ``patience_steps`` optimisation steps (200; ``MaskedAutoencoder`` asks for
      ``MASKED_AUTOENCODER_PATIENCE_STEPS``, 100), at least 10 epochs.

    >>> resolve_schedule(54)
    Schedule(batch_size=32, max_epochs=500, patience=100)
    >>> resolve_schedule(54, patience_steps=MASKED_AUTOENCODER_PATIENCE_STEPS)
    Schedule(batch_size=32, max_epochs=500, patience=50)
    >>> resolve_schedule(1_000_000, patience_steps=MASKED_AUTOENCODER_PATIENCE_STEPS)
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
        patience = max(AUTO_MIN_PATIENCE, math.ceil(patience_steps / per_epoch))
    else:
        patience = int(n_iter_no_change)
    return Schedule(size, epochs, patience)


def _is_auto(value):
    return isinstance(value, str) and value == "auto"


# ---------------------------------------------------------------------------------------------------- the loop
class FitResult(NamedTuple):
    """What a run of :func:`fit_loop` did."""

    history: dict  # "train_loss" and "validation_loss" per epoch
    n_epochs: int  # epochs run
    best_epoch: int  # epoch (counted from 1) with the lowest monitored loss
    stop_reason: str  # "early_stopping", "max_epochs" or "interrupted" (KeyboardInterrupt)
    restored_best: bool  # whether the module holds the best epoch's weights (not the last epoch's)
    seconds: float  # wall time of the run


def fit_loop(
    module,
    loss_fn,
    *,
    reader,
    train_rows,
    validation_rows,
    schedule,
    device,
    generator,
    seed,
    optimizer,
    targets=None,
    after_step=None,
    early_stopping=True,
    tol=1e-4,
    precision="float32",
    name="model",
    progress=None,
    checkpoint=None,
    resume=None,
    distributed=None,
):
    """Train ``module`` in place for up to ``schedule.max_epochs`` epochs; return a :class:`FitResult`.

    Each epoch visits ``train_rows`` (indices into ``reader``'s matrix) in an order drawn from ``generator`` (a
    ``numpy.random.RandomState``), ``schedule.batch_size`` rows per optimiser step, and calls
    ``loss_fn(module, x, batch_targets, generator=None)`` on each batch: ``x`` the batch's rows as float32 on
    ``device``, ``batch_targets`` their rows of ``targets`` (None without targets). A 1-row remainder batch is
    skipped (it has no other sample to corrupt with, nor any negative). ``after_step(module)`` runs after every
    optimiser step.

    After each epoch the mean loss on ``validation_rows`` (in eval mode, under a corruption generator seeded with
    ``seed`` so that epochs are compared on the same corruptions) is the monitored loss; the training loss is
    monitored when there are no validation rows. With ``early_stopping``, training stops after
    ``schedule.patience`` epochs without a relative improvement of ``tol``, and with validation rows the module
    gets the weights of the best epoch back. The global torch RNG draws the training corruptions: seed it (in a
    ``torch.random.fork_rng``) for reproducible runs. ``precision="bf16"`` runs forward and backward passes under
    bfloat16 autocast.

    ``progress`` (e.g. :class:`skssl._progress.EpochProgress`) hears ``start``, every ``epoch`` and ``finish`` (or
    ``abort`` when an exception ends the run). A non-finite training loss raises ``FloatingPointError`` naming
    ``name`` and the learning rate. A ``KeyboardInterrupt`` during the epochs ends the run like early stopping
    (best weights restored, ``stop_reason="interrupted"``, ``n_epochs`` the epochs completed); the caller warns.

    ``checkpoint`` (a :class:`Checkpoint`) saves the loop's state every ``CHECKPOINT_SECONDS``; ``resume`` (what
    :meth:`Checkpoint.load` returned) restores such a state into ``module``, ``optimizer``, ``generator`` and
    torch's global RNG, and the run goes on from the epoch after it.

    ``distributed`` (a :class:`skssl._distributed.DataParallelRun`) trains data-parallel: this rank reads and
    trains on its shard of every batch, losses are summed over ranks, rank 0 alone writes checkpoints, and an
    exception (``KeyboardInterrupt`` included) fails the run on every rank.
    """
    train_rows, validation_rows = np.asarray(train_rows), np.asarray(validation_rows)
    n_train, has_validation = len(train_rows), len(validation_rows) > 0
    batch_size = schedule.batch_size
    history = {"train_loss": [], "validation_loss": []}
    best_loss, best_state, best_epoch, stale, stop_reason = math.inf, None, 1, 0, "max_epochs"
    if distributed is not None:
        loss_fn, reader = distributed.prepare(module, loss_fn, reader, reader.X.shape[1])
        checkpoint = checkpoint if distributed.rank == 0 else None
    completed = 0  # epochs whose bookkeeping is done: what an interrupted run reports
    if resume is not None:
        completed = _restore(resume, module, optimizer, generator, device)
        history, best_state = resume["history"], resume["best_state"]
        best_loss, best_epoch, stale = resume["best_loss"], resume["best_epoch"], resume["stale"]
    start = last_save = time.perf_counter()
    if progress is not None:
        progress.start(schedule, has_validation=has_validation)
    try:
        for epoch in range(completed + 1, schedule.max_epochs + 1):
            order = train_rows[generator.permutation(n_train)]
            train_loss = train_epoch(
                module,
                loss_fn,
                optimizer,
                reader,
                order,
                batch_size,
                device,
                targets=targets,
                after_step=after_step,
                precision=precision,
                name=name,
                distributed=distributed,
            )
            history["train_loss"].append(train_loss)
            monitored = train_loss
            if has_validation:
                monitored = evaluate(
                    module,
                    loss_fn,
                    reader,
                    validation_rows,
                    batch_size,
                    device,
                    seed,
                    targets=targets,
                    precision=precision,
                    distributed=distributed,
                )
                history["validation_loss"].append(monitored)
            if monitored < best_loss - tol * abs(best_loss if math.isfinite(best_loss) else 0.0):
                best_loss, best_epoch, stale = monitored, epoch, 0
                if early_stopping and has_validation:
                    best_state = keep_state(module, best_state)
            else:
                stale += 1
            if progress is not None:
                last = schedule.last_epoch(best_epoch, early_stopping)
                validation = monitored if has_validation else None
                progress.epoch(epoch, train_loss, validation, best_epoch=best_epoch, last_epoch=last)
            completed = epoch
            if early_stopping and stale >= schedule.patience:
                stop_reason = "early_stopping"
                break
            due = time.perf_counter() - last_save >= CHECKPOINT_SECONDS and epoch < schedule.max_epochs
            if checkpoint is not None and due:
                state = {"epoch": epoch, "history": history, "best_state": best_state, "best_loss": best_loss}
                checkpoint.save(module, optimizer, generator, device, **state, best_epoch=best_epoch, stale=stale)
                last_save = time.perf_counter()
    except KeyboardInterrupt as exc:
        if distributed is not None:  # the ranks cannot agree on where to stop: the run fails on each
            distributed.fail(exc, name)
            raise
        # Stop, do not lose: the run ends as early stopping would, with the epochs completed so far.
        stop_reason = "interrupted"
        del history["train_loss"][completed:], history["validation_loss"][completed:]
        best_epoch = best_epoch if completed else 0
    except BaseException as exc:
        if progress is not None:
            progress.abort(f"stopped by {type(exc).__name__}")
        if distributed is not None:
            distributed.fail(exc, name)  # raises naming the failed rank when another rank failed
        raise
    if best_state is not None:
        # The weights of the best validation epoch, not of the last one.
        module.load_state_dict(best_state)
    module.eval()
    result = FitResult(history, completed, best_epoch, stop_reason, best_state is not None, time.perf_counter() - start)
    if progress is not None:
        progress.finish(result)
    return result


class Checkpoint:
    """Where :func:`fit_loop` saves its state, and what identifies the run it belongs to.

    ``fingerprint`` (plain data: strings, numbers, tuples) names the estimator, its parameters and the data shape:
    :meth:`load` refuses a file written under another fingerprint. ``extra`` (tensors, numbers) is stored as is for
    the caller (e.g. the seed and the validation split). The file is written atomically: a run killed while
    writing leaves the previous checkpoint.
    """

    def __init__(self, path, fingerprint, extra=None):
        self.path, self.fingerprint, self.extra = os.fspath(path), fingerprint, dict(extra or {})

    def save(self, module, optimizer, generator, device, **loop_state):
        keys, position, has_gauss, cached_gaussian = generator.get_state()[1:]
        state = {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": self.fingerprint,
            "extra": self.extra,
            "module": module.state_dict(),
            "optimizer": optimizer.state_dict(),
            # numpy's MT19937 state as a tensor and numbers, so that torch.load(weights_only=True) reads it.
            "numpy_rng": (torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), cached_gaussian),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            **loop_state,
        }
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)

    def load(self):
        """The saved state (None when there is no file); ValueError when it belongs to another run."""
        if not os.path.exists(self.path):
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"Cannot read the checkpoint {self.path!r} ({exc}); delete it to start afresh.") from exc
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{self.path!r} is not an skssl checkpoint of this version; delete it to start afresh.")
        saved = state["fingerprint"]
        if saved != self.fingerprint:
            changed = sorted(k for k in {**saved, **self.fingerprint} if saved.get(k) != self.fingerprint.get(k))
            raise ValueError(
                f"The checkpoint {self.path!r} was written by a fit with other parameters or data (differing: "
                f"{', '.join(changed)}). Fit with the same parameters and data to resume it, or delete it (or "
                "choose another checkpoint path) to start afresh."
            )
        return state

    def run(self, resume, seed, train_rows, validation_rows):
        """The seed and split of the run: the saved ones when resuming, else the given ones (recorded in ``extra``)."""
        if resume is not None:
            extra = resume["extra"]
            return int(extra["seed"]), extra["train_rows"].numpy(), extra["validation_rows"].numpy()
        rows = {"train_rows": torch.as_tensor(train_rows), "validation_rows": torch.as_tensor(validation_rows)}
        self.extra.update(seed=seed, **rows)
        return seed, train_rows, validation_rows

    def remove(self):
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)


def run_fingerprint(name, params, shape):
    """What identifies a fit for its checkpoint: the estimator, its parameters (but those that do not change the
    result: verbose, device, checkpoint, warm_start) and the data shape, as plain strings and numbers."""
    skipped = {"verbose", "device", "checkpoint", "warm_start"}
    described = {
        key: type(value).__name__ if isinstance(value, np.random.RandomState) else repr(value)
        for key, value in params.items()
        if key not in skipped
    }
    return {"estimator": name, "shape": tuple(int(n) for n in shape), **described}


def _restore(state, module, optimizer, generator, device):
    """Load a checkpoint's module, optimiser and RNG states; return the number of epochs it had completed."""
    module.load_state_dict(state["module"])
    optimizer.load_state_dict(state["optimizer"])
    keys, position, has_gauss, cached_gaussian = state["numpy_rng"]
    generator.set_state(("MT19937", keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch_rng"])
    if device.type == "cuda" and state["cuda_rng"] is not None:
        torch.cuda.set_rng_state(state["cuda_rng"], device)
    if state["best_state"] is not None:
        state["best_state"] = {k: v.to(device) for k, v in state["best_state"].items()}
    return int(state["epoch"])


def warn_interrupted(name, result, max_epochs, hint):
    """Warn that ``result``'s run was interrupted, from the caller's ``fit`` line (the first frame outside skssl and
    scikit-learn, whose ``fit_context`` wraps every ``fit``)."""
    kept = f"the weights of its best epoch ({result.best_epoch})" if result.restored_best else "its last weights"
    message = (
        f"{name}: training interrupted (KeyboardInterrupt) after {result.n_epochs} of at most {max_epochs} epochs; "
        f"the estimator is fitted with {kept}. {hint}"
    )
    frame, level = inspect.currentframe().f_back, 2
    while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] in ("skssl", "sklearn"):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, FitInterruptedWarning, stacklevel=level)


def train_epoch(
    module,
    loss_fn,
    optimizer,
    reader,
    order,
    batch_size,
    device,
    *,
    targets=None,
    after_step=None,
    precision="float32",
    name="model",
    distributed=None,
):
    """One pass over the rows ``order`` (optimiser steps in that order); return the mean training loss (over the
    ranks of a ``distributed`` run, whose shards may hold fewer than 2 rows of a batch)."""
    module.train()
    total = torch.zeros((), device=device)
    seen = 0
    for rows, x in reader.batches(batch_size, order):
        if len(x) < 2 and distributed is None:  # a 1-row remainder has no other sample to corrupt with nor negative
            continue
        with autocast(device, precision):
            loss = loss_fn(module, x, rows_of(targets, rows, device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(module)
        optimizer.step()
        if after_step is not None:
            after_step(module)
        total += loss.detach().float() * len(x)
        seen += len(x)
    if distributed is not None:
        total, seen = distributed.sum(total, seen)
    mean_loss = (total / max(seen, 1)).item()  # one device sync per epoch, not per step
    if not math.isfinite(mean_loss):
        learning_rate = optimizer.param_groups[0]["lr"]
        raise FloatingPointError(
            f"{name} training diverged (the loss became {mean_loss}). "
            f"Lower learning_rate (currently {learning_rate}), or check the input scale "
            "(e.g. log-transform raw counts, or keep standardize=True)."
        )
    return mean_loss


@torch.no_grad()
def evaluate(
    module, loss_fn, reader, rows, batch_size, device, seed, *, targets=None, precision="float32", distributed=None
):
    """Mean loss on ``rows`` in eval mode, the corruptions drawn from a generator seeded with ``seed``."""
    module.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    total = torch.zeros((), device=device)
    seen = 0
    for batch_rows, x in reader.batches(max(batch_size, 2), rows):
        if len(x) < 2 and distributed is None:
            continue
        with autocast(device, precision):
            loss = loss_fn(module, x, rows_of(targets, batch_rows, device), generator=generator)
        total += loss.float() * len(x)
        seen += len(x)
    if distributed is not None:
        total, seen = distributed.sum(total, seen)
    return (total / max(seen, 1)).item()


def keep_state(module, kept=None):
    """A copy of ``module``'s state, written into ``kept`` (a previous copy) when there is one.

    Copying into the previous best epoch's tensors rather than cloning new ones spares a wide network a fresh
    allocation of all its weights at every improvement (on 47 192 genes, 292 MB, whose new pages cost more than
    the copy).
    """
    state = module.state_dict()
    if kept is None:
        return {k: v.detach().clone() for k, v in state.items()}
    for key, value in state.items():
        kept[key].copy_(value.detach())
    return kept


def clip_gradients(module):
    """Scale the gradients down to a norm of ``MAX_GRAD_NORM`` when it is more, as ``clip_grad_norm_`` does.

    ``clip_grad_norm_`` multiplies every gradient by its clamped factor even when that factor is 1, to spare an
    accelerator a synchronisation; on a CPU that pass over the gradients was 5 % of a wide network's step, so there
    the factor is computed the same way and the gradients are scaled only when it is below 1 (the same values, bit
    for bit).
    """
    params = [p for p in module.parameters() if p.grad is not None]
    if not params or params[0].device.type != "cpu":
        torch.nn.utils.clip_grad_norm_(module.parameters(), MAX_GRAD_NORM)
        return
    norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    if (MAX_GRAD_NORM / (norm + 1e-6)).item() < 1.0:
        torch.nn.utils.clip_grads_with_norm_(params, MAX_GRAD_NORM, norm)


def autocast(device, precision):
    """bf16 autocast when ``precision="bf16"`` (matmuls in bfloat16, reductions and the loss in float32)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def rows_of(targets, rows, device):
    """The rows ``rows`` (an index array, tensor or slice) of ``targets``; None without targets."""
    if targets is None:
        return None
    index = torch.as_tensor(rows, device=device) if not isinstance(rows, slice) else rows
    return targets[index]


# ---------------------------------------------------------------------------------------------------- helpers
def cuda_indices(device):
    """The CUDA devices whose RNG ``torch.random.fork_rng`` must save for work on ``device``."""
    return [device.index or 0] if device.type == "cuda" else []


@contextlib.contextmanager
def limited_torch_threads():
    """Cap torch's intra-op threads at the OMP_NUM_THREADS that joblib/loky sets in its workers.

    Without this, ``GridSearchCV(n_jobs=k)`` starts k processes that each use every core.
    """
    previous = torch.get_num_threads()
    limit = os.environ.get("OMP_NUM_THREADS")
    if limit and limit.isdigit() and 0 < int(limit) < previous:
        torch.set_num_threads(int(limit))
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def make_adamw(params, *, lr, weight_decay):
    """AdamW with the fused (single-kernel) update where torch has one for the parameters' device.

    On a CPU the fused step of a ~3 M-parameter MLP is ~10x faster than the default per-tensor loop, which would
    otherwise cost a sizeable share of a training step.
    """
    params = list(params)
    groups = params if params and isinstance(params[0], dict) else [{"params": params}]
    devices = {p.device.type for group in groups for p in group["params"]}
    fused = bool(devices) and devices <= {"cpu", "cuda"}
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused, foreach=None if fused else True)
