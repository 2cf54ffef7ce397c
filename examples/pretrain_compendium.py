"""Pre-train an embedder on a large compendium stored on disk, in one process or data-parallel on many.

The compendium is a float32 ``.npy`` matrix (samples x genes) opened as a memory map: ``fit`` reads it one batch
at a time, so it never needs to fit in memory. Started by ``torchrun``, every process joins a ``torch.distributed``
process group (NCCL on GPUs, gloo on CPUs) and ``fit`` trains data-parallel: each rank reads only its share of
every batch, ``DistributedDataParallel`` averages the gradients, and every rank ends with the same fitted embedder,
the one a single process would fit with the same seed (up to float rounding). Rank 0 saves it. See
``docs/distributed.md``.

Run::

    python examples/pretrain_compendium.py                                  # one process, synthetic compendium
    python examples/pretrain_compendium.py --data compendium.npy            # one process, your matrix
    torchrun --nproc_per_node=4 examples/pretrain_compendium.py --data compendium.npy   # 4 GPUs (or CPU ranks)
    # two machines with 8 GPUs each: run on both, with the first machine's address as the endpoint
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST0:29500 \\
        examples/pretrain_compendium.py --data /shared/compendium.npy

Without ``--data`` rank 0 writes a synthetic compendium (3 000 profiles x 500 genes, ``compendium.npy`` in the
working directory) first. The default budget of 5 epochs keeps the run under a minute on 2 CPU cores: pass
``--max-epochs auto`` for a real pre-training. ``SKSSL_EXAMPLE_QUICK=1`` shrinks the data and budget to seconds.
"""

import argparse
import datetime
import os
import time

import numpy as np
import torch
import torch.distributed as dist

from skssl import ContrastiveEmbedder, MaskedAutoencoder, VAEEmbedder, make_expression, save_model

QUICK = os.environ.get("SKSSL_EXAMPLE_QUICK") == "1"
N_SAMPLES, N_GENES = (400, 60) if QUICK else (3_000, 500)
METHODS = {"scarf": ContrastiveEmbedder, "vime": MaskedAutoencoder, "vae": VAEEmbedder}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="float32 .npy matrix, samples x genes (default: a synthetic compendium)")
    parser.add_argument("--method", choices=sorted(METHODS), default="vime")
    # A few epochs keep the default run under a minute on 2 CPU cores; give "auto" (about 3 000 steps) for real use.
    parser.add_argument("--max-epochs", default="2" if QUICK else "5", help="an integer or 'auto'")
    parser.add_argument("--batch-size", default="256", help="rows per optimiser step over all ranks, or 'auto'")
    parser.add_argument("--output", default="pretrained_embedder.skssl", help="where rank 0 saves the embedder")
    parser.add_argument("--timeout-minutes", type=float, default=10.0, help="how long a rank waits for the others")
    return parser.parse_args()


def start_process_group(timeout_minutes):
    """Join the process group when started by torchrun (WORLD_SIZE > 1); return this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return "auto"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_gpus = torch.cuda.is_available() and torch.cuda.device_count() > local_rank
    if use_gpus:
        torch.cuda.set_device(local_rank)
    # A rank that fails makes the others stop with an error naming it; one that hangs, after this timeout.
    dist.init_process_group("nccl" if use_gpus else "gloo", timeout=datetime.timedelta(minutes=timeout_minutes))
    return f"cuda:{local_rank}" if use_gpus else "cpu"


def synthetic_compendium(path):
    """Rank 0 writes a synthetic log-CPM compendium to ``path``; the other ranks wait for it."""
    if not dist.is_initialized() or dist.get_rank() == 0:
        X, _ = make_expression(n_samples=N_SAMPLES, n_genes=N_GENES, random_state=0)
        np.save(path, X.astype(np.float32))
    if dist.is_initialized():
        dist.barrier()
    return path


def as_number(value):
    return value if value == "auto" else int(value)


def main():
    args = parse_args()
    device = start_process_group(args.timeout_minutes)
    rank = dist.get_rank() if dist.is_initialized() else 0
    world_size = dist.get_world_size() if dist.is_initialized() else 1
    X = np.load(args.data or synthetic_compendium("compendium.npy"), mmap_mode="r")
    embedder = METHODS[args.method](
        n_components=32 if QUICK else 128,
        batch_size=as_number(args.batch_size),
        max_epochs=as_number(args.max_epochs),
        device=device,
        random_state=0,
        verbose=int(rank == 0),
    )
    start = time.perf_counter()
    embedder.fit(X)  # data-parallel when a process group is initialised
    seconds = time.perf_counter() - start
    if rank == 0:
        save_model(embedder, args.output)
        print(
            f"{type(embedder).__name__} on {X.shape[0]} x {X.shape[1]} in {world_size} process(es): "
            f"{embedder.n_iter_} epochs of {embedder.batch_size_}-row batches in {seconds:.1f} s, "
            f"final validation loss {embedder.history_['validation_loss'][-1]:.4f}; saved to {args.output}"
        )
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
