"""Training throughput of every embedder: samples/s of one epoch, and its FLOP/s against plain ``torch.matmul``.

For each embedder (SCARF, BYOL, VIME, VAE with their defaults) and each gene count, on ``--batches`` x
``--batch-size`` rows of Gaussian data, prints from ONE run on one machine (ratios are what to compare):

- samples/s of one training epoch of ``fit`` (batch reading, corruption, forward, backward, AdamW step). Public API
  only, so the epoch is timed as a difference: ``fit`` with ``max_epochs=1 + --epochs`` minus ``fit`` with
  ``max_epochs=1`` (``early_stopping=False``: no validation rows, every epoch runs), divided by ``--epochs``; the
  set-up and the end-of-fit pass over the data cancel. Medians of ``--rounds`` interleaved rounds.
- GFLOP of one epoch, counted the same way (``torch.utils.flop_counter.FlopCounterMode`` around both fits), and the
  achieved GFLOP/s as a fraction of the GFLOP/s of ``torch.matmul`` on the widest layer's three training products
  (forward, gradient of the input, gradient of the weight; widths from the fitted ``hidden_dims_``), timed in the
  same rounds.

Public API only (``skssl``'s estimators and their fitted attributes). The comparison with a per-row Python
corruption loop that ``docs/performance.md`` reports was measured by ``dev/train_step_speed.py`` at commit 477fbb3;
it needed a private hook and is not repeated here.

Usage::

    OMP_NUM_THREADS=2 python benchmarks/train_step_speed.py [--genes 5000 20000] [--rounds 5] [--device cpu]
    python benchmarks/train_step_speed.py --quick          # toy sizes, a few seconds: checks the script runs
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from skssl import ContrastiveEmbedder, MaskedAutoencoder, VAEEmbedder

METHODS = {
    "scarf": lambda: ContrastiveEmbedder(random_state=0),
    "byol": lambda: ContrastiveEmbedder(objective="byol", random_state=0),
    "vime": lambda: MaskedAutoencoder(random_state=0),
    "vae": lambda: VAEEmbedder(random_state=0),
}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def estimator(method, batch_size, epochs, device):
    return METHODS[method]().set_params(
        batch_size=batch_size, max_epochs=epochs, early_stopping=False, device=str(device)
    )


def fit_seconds(method, X, batch_size, epochs, device):
    sync(device)
    start = time.perf_counter()
    fitted = estimator(method, batch_size, epochs, device).fit(X)
    sync(device)
    assert fitted.n_iter_ == epochs, (fitted.n_iter_, epochs)
    return time.perf_counter() - start, fitted


def fit_flops(method, X, batch_size, epochs, device):
    with FlopCounterMode(display=False) as counter:
        estimator(method, batch_size, epochs, device).fit(X)
    return counter.get_total_flops()


def matmul_seconds(n_in, n_out, batch_size, device, repeats=10):
    """Seconds of ``repeats`` x a layer's three training matmuls (forward, grad input, grad weight)."""
    a = torch.randn(batch_size, n_in, device=device)
    w = torch.randn(n_in, n_out, device=device)
    g = torch.randn(batch_size, n_out, device=device)
    torch.matmul(a, w)  # warm-up
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.matmul(a, w)
        torch.matmul(g, w.T)
        torch.matmul(a.T, g)
    sync(device)
    return time.perf_counter() - start, repeats * 3 * 2 * batch_size * n_in * n_out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genes", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=6, help="batches per epoch")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per round (the difference of two fits)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds; medians are reported")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="toy sizes (200 genes, 2 batches of 32, 2 rounds)")
    args = parser.parse_args(argv)
    if args.quick:
        args.genes, args.batch_size, args.batches, args.epochs, args.rounds = [200], 32, 2, 1, 2
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no GPU")
    print(
        f"# machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    )
    print(
        f"# batch {args.batch_size}, {args.batches} batches per epoch; epoch = (fit with {1 + args.epochs} epochs - "
        f"fit with 1) / {args.epochs}; medians of {args.rounds} interleaved rounds"
    )
    header = ("method", "genes", "hidden", "samples/s", "epoch GFLOP", "GFLOP/s", "matmul GFLOP/s", "fraction")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    wall, cpu = time.perf_counter(), time.process_time()
    for n_genes in args.genes:
        X = np.random.default_rng(0).normal(size=(args.batch_size * args.batches, n_genes)).astype(np.float32)
        for method in args.methods:
            fit_seconds(method, X, args.batch_size, 1, device)  # warm-up
            epoch_s, matmul_rate = [], []
            for _ in range(args.rounds):
                short, fitted = fit_seconds(method, X, args.batch_size, 1, device)
                long, _ = fit_seconds(method, X, args.batch_size, 1 + args.epochs, device)
                epoch_s.append((long - short) / args.epochs)
                seconds, flops = matmul_seconds(n_genes, fitted.hidden_dims_[0], args.batch_size, device)
                matmul_rate.append(flops / seconds)
            epoch, peak = float(np.median(epoch_s)), float(np.median(matmul_rate))
            epoch_flops = (
                fit_flops(method, X, args.batch_size, 1 + args.epochs, device)
                - fit_flops(method, X, args.batch_size, 1, device)
            ) / args.epochs
            achieved = epoch_flops / epoch if epoch > 0 else float("nan")
            print(
                f"| {method} | {n_genes} | {fitted.hidden_dims_} | {len(X) / epoch:,.0f} | {epoch_flops / 1e9:.2f} | "
                f"{achieved / 1e9:.1f} | {peak / 1e9:.1f} | {achieved / peak:.0%} |",
                flush=True,
            )
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"# wall {time.perf_counter() - wall:.1f} s, CPU {time.process_time() - cpu:.1f} s; "
        f"peak RSS {usage.ru_maxrss / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
