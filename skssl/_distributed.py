"""Data-parallel pre-training on ``torch.distributed``: every rank reads and trains on its shard of each batch.

When ``fit`` of an embedder runs in a process whose default ``torch.distributed`` process group is initialised with
more than one process (``torchrun``, or ``init_process_group`` by hand), :func:`data_parallel` returns a
:class:`DataParallelRun` and :func:`skssl._training.fit_loop` trains through it; ``SKSSL_DISTRIBUTED=0`` in the
environment turns this off (every rank then fits on its own). What the run does, and why:

- **Same batches as one process.** Every rank holds the whole (memory-mapped or HDF5) matrix and the same random
  state (rank 0's, broadcast by :func:`agreed_random_state`), so the validation split and every epoch's permutation
  are those of a single process. A global batch of ``B`` rows (the rows one process would read, sorted) is cut into
  ``W`` contiguous slices and rank ``r`` reads only rows ``[r * B // W, (r + 1) * B // W)`` of it from disk.
- **Same randomness as one process.** The corruptions need every row of the batch (marginal-sampling donors come
  from the whole batch), so each rank all-gathers the other ranks' rows (communication, not a read), draws the
  corruption of the whole batch from torch's RNG, seeded alike on every rank, and keeps its own rows. Dropout masks
  and the VAE's reparameterisation noise are drawn for the whole batch and sliced the same way
  (:func:`row_randn`, :func:`shard_consistent_dropout`). The draws are therefore those of one process, whatever
  the number of ranks.
- **Same gradient as one process.** ``DistributedDataParallel`` averages the ranks' gradients. A loss that is a
  mean over rows (VIME, BYOL, the VAE) is the mean over the rank's rows with its gradient scaled by
  ``W * n_local / B`` (:func:`row_mean`), so that the average is the gradient of the mean over the whole batch. The
  NT-Xent loss of SCARF compares every row with every other: each rank all-gathers the embeddings (its own keep
  their gradient), computes the loss of the whole batch and scales its gradient by ``W`` (:func:`whole_batch`).
  Recorded loss values are unscaled and summed over ranks, so the history, early stopping and the epoch budget
  (from the global row count) agree on every rank. Gradient clipping, AdamW and BYOL's EMA target then see the
  same gradient on every rank, and the fitted estimators are identical.
- **Failure.** A rank whose fit raises records the error in the process group's store and re-raises it; a rank
  whose collective fails (the peer exited, or the process group's ``timeout`` passed) raises a ``RuntimeError``
  naming the failed rank and its error. The wait is bounded by that timeout (``init_process_group(timeout=...)``).

Not distributed: ``partial_fit`` and the supervised estimators, and the streaming statistics passes before and
after training (feature means and scales, the embedding's mean and whitening), which every rank computes over the
whole matrix in sequential reads so that they are those of one process.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils import check_random_state
from torch import nn

from ._compat import default_process_group_store

#: Set to "0" to keep a fit single-process inside an initialised process group.
ENV_SWITCH = "SKSSL_DISTRIBUTED"
# How long a rank whose collective failed waits for the failed rank's record to reach the store.
FAILURE_RECORD_WAIT_SECONDS = 2.0
_FIT_COUNTER = itertools.count()  # fits run in the same order on every rank: a key prefix per fit


def process_group_active():
    """Whether a fit here is data-parallel: an initialised default process group of more than one process, and
    ``SKSSL_DISTRIBUTED`` not set to "0"."""
    if os.environ.get(ENV_SWITCH, "1").strip() == "0":
        return False
    distributed = torch.distributed
    return distributed.is_available() and distributed.is_initialized() and distributed.get_world_size() > 1


def data_parallel(device):
    """The :class:`DataParallelRun` of a fit on ``device`` (None in a single process)."""
    return DataParallelRun(device) if process_group_active() else None


def shard_bounds(n_rows, rank, world_size):
    """Rows ``[start, stop)`` of a batch of ``n_rows`` that ``rank`` of ``world_size`` trains on."""
    return n_rows * rank // world_size, n_rows * (rank + 1) // world_size


def _comm_device(device):
    # NCCL moves CUDA tensors only; gloo CPU tensors.
    return device if torch.distributed.get_backend() == "nccl" else torch.device("cpu")


def agreed_random_state(random_state, device):
    """``check_random_state(random_state)``, set to rank 0's state on every rank in a data-parallel fit.

    With an integer ``random_state`` the ranks agree already; with None (numpy's global state) or a RandomState
    they might not, and their splits, seeds and batch orders would differ.
    """
    rng = check_random_state(random_state)
    if not process_group_active():
        return rng
    name, keys, position, has_gauss, cached = rng.get_state()
    packed = torch.from_numpy(np.concatenate([keys.astype(np.int64), [position, has_gauss]])).to(_comm_device(device))
    gaussian = torch.tensor([cached], dtype=torch.float64, device=packed.device)
    torch.distributed.broadcast(packed, src=0)
    torch.distributed.broadcast(gaussian, src=0)
    values = packed.cpu().numpy()
    rng.set_state((name, values[:-2].astype(np.uint32), int(values[-2]), int(values[-1]), float(gaussian.item())))
    return rng


# ---------------------------------------------------------------------------------------------------- the shard
class BatchShard:
    """The rows ``[start, stop)`` of a global batch of ``n_global`` rows that this rank trains on."""

    def __init__(self, run, n_global):
        self.run, self.n_global = run, n_global
        self.start, self.stop = shard_bounds(n_global, run.rank, run.world_size)
        self.sizes = [b - a for a, b in (shard_bounds(n_global, r, run.world_size) for r in range(run.world_size))]

    @property
    def n_local(self):
        return self.stop - self.start

    def gather(self, tensor):
        """Every rank's rows of ``tensor`` (first dimension: rows), concatenated in rank order; this rank's rows
        keep their gradient, the others' have none."""
        padded = tensor.new_zeros((max(self.sizes), *tensor.shape[1:]))  # all_gather wants equal shapes
        padded[: len(tensor)] = tensor.detach()
        parts = [torch.empty_like(padded) for _ in self.sizes]
        self.run.all_gather(parts, padded)
        parts = [part[:size] for part, size in zip(parts, self.sizes)]
        parts[self.run.rank] = tensor
        return torch.cat(parts)


# Every function below takes the batch's ``shard`` explicitly: None in one process, the :class:`BatchShard` that the
# data-parallel run hands to the loss (``loss_fn(..., shard=...)``) otherwise, as lightly passes its losses a
# ``gather_distributed`` flag rather than have them read a global.
def whole_batch_of(x, shard):
    """The whole global batch whose local rows are ``x`` (``x`` itself in one process); no gradient but x's own."""
    return x if shard is None else shard.gather(x)


def local_rows(tensor, shard):
    """This rank's rows of a whole-batch ``tensor`` (all of it in one process)."""
    return tensor if shard is None else tensor[shard.start : shard.stop]


def _scale_gradient(loss, factor):
    """``loss`` (same value, bit for bit) whose gradient is multiplied by ``factor``."""
    return loss + (factor - 1.0) * (loss - loss.detach())


def row_mean(loss, shard):
    """A loss that is the mean over this rank's rows, its gradient scaled so that averaging over the ranks gives
    the gradient of the mean over the whole batch (unchanged in one process)."""
    if shard is None:
        return loss
    if shard.n_local == 0:  # a batch smaller than the world: the mean of no rows is NaN, and contributes nothing
        return torch.nan_to_num(loss, nan=0.0) * 0.0
    return _scale_gradient(loss, shard.run.world_size * shard.n_local / shard.n_global)


def whole_batch(loss, shard):
    """A loss of the whole batch computed on every rank (e.g. NT-Xent over the gathered embeddings), its gradient
    scaled so that averaging over the ranks gives the whole batch's gradient (unchanged in one process)."""
    return loss if shard is None else _scale_gradient(loss, float(shard.run.world_size))


def row_randn(shape, *, shard=None, device=None, generator=None):
    """``torch.randn(shape)`` whose rows are this rank's rows of the whole batch's draw (the same numbers as one
    process draws for these rows)."""
    if shard is None:
        return torch.randn(shape, device=device, generator=generator)
    whole = torch.randn((shard.n_global, *shape[1:]), device=device, generator=generator)
    return whole[shard.start : shard.stop]


def _dropout_forward(layer, shard, x):
    if shard is None or not layer.training or layer.p == 0:
        return F.dropout(x, layer.p, layer.training, layer.inplace)
    if x.shape[0] != shard.n_local:
        raise RuntimeError(f"A dropout layer got {x.shape[0]} rows in a shard of {shard.n_local}.")
    # torch's CPU dropout draws bernoulli_(1 - p) over the input's shape and divides by 1 - p: drawn here over the
    # whole batch and sliced, the mask of these rows is the one a single process draws.
    keep = 1.0 - layer.p
    noise = torch.empty((shard.n_global, *x.shape[1:]), dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * noise[shard.start : shard.stop].div_(keep)


@contextlib.contextmanager
def shard_consistent_dropout(module, shard):
    """Within the block, the ``nn.Dropout`` layers of ``module`` draw their masks over the whole batch of ``shard``."""
    layers = [layer for layer in module.modules() if type(layer) is nn.Dropout]
    for layer in layers:
        layer.forward = functools.partial(_dropout_forward, layer, shard)
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward


# ---------------------------------------------------------------------------------------------------- the run
class _LossModule(nn.Module):
    """What DistributedDataParallel wraps: its forward is the estimator's loss on the module."""

    def __init__(self, module, loss_fn):
        super().__init__()
        self.module, self.loss_fn = module, loss_fn

    def forward(self, x, targets=None, **kwargs):
        return self.loss_fn(self.module, x, targets, **kwargs)


class ShardedReader:
    """Yields this rank's rows of every global batch that ``reader`` would yield in one process."""

    def __init__(self, reader, run, n_features):
        self.reader, self.run, self.n_features = reader, run, n_features

    def batches(self, batch_size, indices):
        indices = np.asarray(indices)
        for start in range(0, len(indices), batch_size):
            rows = np.sort(indices[start : start + batch_size])
            if len(rows) < 2:  # skipped as in one process: no other row to corrupt with, no negative
                continue
            shard = BatchShard(self.run, len(rows))
            local = rows[shard.start : shard.stop]
            if len(local):
                _, x = next(iter(self.reader.batches(len(local), local)))
            else:
                x = torch.empty((0, self.n_features), dtype=torch.float32, device=self.run.device)
            self.run.shard = shard
            yield local, x


class DataParallelRun:
    """A data-parallel fit over the default process group; see the module docstring."""

    def __init__(self, device):
        distributed = torch.distributed
        self.rank, self.world_size = distributed.get_rank(), distributed.get_world_size()
        self.device, self.comm_device = device, _comm_device(device)
        self.shard = None
        self.key = f"skssl/fit{next(_FIT_COUNTER)}/failed/"

    def all_gather(self, parts, tensor):
        if self.comm_device == tensor.device:
            torch.distributed.all_gather(parts, tensor)
            return
        moved = [torch.empty_like(part, device=self.comm_device) for part in parts]
        torch.distributed.all_gather(moved, tensor.to(self.comm_device))
        for part, source in zip(parts, moved):
            part.copy_(source)

    def prepare(self, module, loss_fn, reader, n_features):
        """The loss function and reader of the loop: DDP-wrapped loss under the batch's shard, sharded reads."""
        from torch.nn.parallel import DistributedDataParallel

        device_ids = None
        if self.device.type == "cuda":  # device="cuda" means the current device (torch.cuda.set_device)
            device_ids = [self.device.index if self.device.index is not None else torch.cuda.current_device()]
        # Buffers (standardisation statistics) are equal on every rank and never change: no broadcast per step.
        # torch 2.13 renamed the switch (the old name warns).
        newer = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
        no_sync = {"forward_sync_buffers" if newer else "broadcast_buffers": False}
        ddp = DistributedDataParallel(_LossModule(module, loss_fn), device_ids=device_ids, **no_sync)

        def sharded_loss(module_, x, targets=None, **kwargs):
            kwargs["shard"] = self.shard  # the loss gathers, slices and weighs the batch by it
            with shard_consistent_dropout(module_, self.shard):
                if torch.is_grad_enabled():  # a training step: DDP averages the gradients in backward
                    return ddp(x, targets, **kwargs)
                return loss_fn(module_, x, targets, **kwargs)

        return sharded_loss, ShardedReader(reader, self, n_features)

    def sum(self, total, seen):
        """``total`` (a loss sum, tensor) and ``seen`` (rows) summed over the ranks: the same numbers on each."""
        rows = torch.tensor(float(seen), dtype=torch.float64, device=total.device)
        both = torch.stack([total.detach().double().reshape(()), rows])
        both = both.to(self.comm_device)
        torch.distributed.all_reduce(both)
        return both[0].to(total.device, total.dtype), int(both[1].item())

    def fail(self, exc, name):
        """Called when this rank's loop raised ``exc``: raise a ``RuntimeError`` naming the rank that failed when
        another one did; otherwise record this rank's failure for the others (the caller re-raises ``exc``)."""
        store = self._store()
        reported = self._reported(store, wait=_is_communication_error(exc))
        if reported:
            rank, message = reported
            raise RuntimeError(
                f"{name}: data-parallel fit stopped on rank {self.rank} of {self.world_size} because rank {rank} "
                f"failed: {message}. Fix that rank's error and fit again."
            ) from exc
        if _is_communication_error(exc):
            raise RuntimeError(
                f"{name}: data-parallel fit stopped on rank {self.rank} of {self.world_size}: a collective "
                f"operation failed ({type(exc).__name__}: {_first_line(exc)}) and no rank reported an error: another "
                "rank was killed, lost its network, or did not answer within the process group's timeout "
                "(init_process_group(timeout=...))."
            ) from exc
        if store is not None:
            with contextlib.suppress(Exception):
                store.set(self.key + str(self.rank), f"{type(exc).__name__}: {_first_line(exc)}")

    def _store(self):
        try:
            return default_process_group_store()
        except Exception:  # no reachable store: the errors go unnamed
            return None

    def _reported(self, store, wait):
        """``(rank, message)`` of another rank's recorded failure, or None; polls a little when ``wait``."""
        if store is None:
            return None
        deadline = time.monotonic() + (FAILURE_RECORD_WAIT_SECONDS if wait else 0.0)
        while True:
            for rank in range(self.world_size):
                key = self.key + str(rank)
                with contextlib.suppress(Exception):
                    if rank != self.rank and store.check([key]):
                        return rank, store.get(key).decode(errors="replace")
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.1)


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)


def _is_communication_error(exc):
    if isinstance(exc, torch.distributed.DistError):
        return True
    text = str(exc).lower()
    markers = ("gloo", "nccl", "connection closed", "connection reset", "timed out", "broken pipe", "peer")
    return isinstance(exc, RuntimeError) and any(marker in text for marker in markers)
