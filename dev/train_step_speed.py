"""Training-step throughput of every embedder, measured against the hardware and against a naive loop.

Prints, from ONE run on one machine (ratios are what to compare; machines and loads differ):

(a) samples/s of each embedder's real training epoch (skssl's own loop: batch reading, corruption, forward,
    backward, AdamW step) for 5 000 and 20 000 genes at batch 256;
(b) the achieved FLOP/s of that step (FLOPs counted by ``torch.utils.flop_counter``) as a fraction of the FLOP/s
    of plain ``torch.matmul`` on the widest layer's forward and backward shapes, timed in the same run;
(c) the speed-up over the same estimator whose vectorised corruption is swapped for a Python loop over rows (one
    ``randperm`` per sample: the reference implementations' pattern), for the whole training step and for the
    corruption alone. The VAE corrupts nothing: n/a.

Usage: ``python dev/train_step_speed.py [--genes 5000 20000] [--rounds 5] [--device cpu]``
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from skssl import ContrastiveEmbedder, MaskedAutoencoder, VAEEmbedder, _data

METHODS = {
    "scarf": lambda: ContrastiveEmbedder(random_state=0),
    "byol": lambda: ContrastiveEmbedder(objective="byol", random_state=0),
    "vime": lambda: MaskedAutoencoder(random_state=0),
    "vae": lambda: VAEEmbedder(random_state=0),
}


def setup(method, n_genes, batch_size, n_batches, device):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(batch_size * n_batches, n_genes)).astype(np.float32)
    est = METHODS[method]().set_params(batch_size=batch_size, device=str(device))
    stats = _data.column_statistics(X)
    module, _ = est._new_module(n_genes, stats, device, seed=0)
    return est, module, est._make_optimizer(module), X


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def epoch_timer(est, module, optimizer, X, batch_size, device):
    """A callable that runs one timed training epoch over ``X`` and returns its samples/s (after one warm-up)."""
    reader = _data.BatchReader(X, device)
    order = np.arange(len(X))
    est._train_epoch(module, optimizer, reader, None, order[: 2 * batch_size], batch_size, device)  # warm-up

    def run():
        sync(device)
        start = time.perf_counter()
        est._train_epoch(module, optimizer, reader, None, order, batch_size, device)
        sync(device)
        return len(X) / (time.perf_counter() - start)

    return run


def flops_per_step(est, module, X, batch_size, device):
    x = torch.from_numpy(X[:batch_size]).to(device)
    with FlopCounterMode(display=False) as counter:
        loss = est._batch_loss(module, x)
        loss.backward()
    module.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def matmul_timer(n_in, n_out, batch_size, device, repeats=10):
    """A callable returning the FLOP/s of torch.matmul on a layer's three training matmuls (forward, grad input,
    grad weight) at the given shapes."""
    a = torch.randn(batch_size, n_in, device=device)
    w = torch.randn(n_in, n_out, device=device)
    g = torch.randn(batch_size, n_out, device=device)
    flops = 3 * 2 * batch_size * n_in * n_out

    def once():
        torch.matmul(a, w)
        torch.matmul(g, w.T)
        torch.matmul(a.T, g)

    once()

    def run():
        sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            once()
        sync(device)
        return repeats * flops / (time.perf_counter() - start)

    return run


def per_row_scarf_corrupt(x, rate, generator=None):
    """SCARF corruption the way the reference implementations do it: a Python loop, one randperm per sample."""
    n_rows, n_features = x.shape
    n_corrupt = int(round(rate * n_features))
    corrupted = x.clone()
    mask = torch.zeros_like(x, dtype=torch.bool)
    for i in range(n_rows):
        cols = torch.randperm(n_features, device=x.device)[:n_corrupt]
        donor = (i + torch.randint(1, n_rows, (1,)).item()) % n_rows
        corrupted[i, cols] = x[donor, cols]
        mask[i, cols] = True
    return corrupted, mask


def per_row_vime_mask(x, p, generator=None):
    """VIME masking with a Python loop over rows (each row masked and filled from a random other row)."""
    n_rows, n_features = x.shape
    corrupted = x.clone()
    mask = torch.zeros_like(x)
    for i in range(n_rows):
        row_mask = torch.rand(n_features, device=x.device) < p
        donors = (i + torch.randint(1, n_rows, (n_features,), device=x.device)) % n_rows
        corrupted[i] = torch.where(row_mask, x[donors, torch.arange(n_features)], x[i])
        mask[i] = row_mask.to(x.dtype)
    return corrupted, mask


def corruption_timer(corrupt, x, rate, repeats=5):
    """A callable returning the rows/s of one corruption function alone on batch ``x``."""
    corrupt(x, rate)

    def run():
        sync(x.device)
        start = time.perf_counter()
        for _ in range(repeats):
            corrupt(x, rate)
        sync(x.device)
        return repeats * len(x) / (time.perf_counter() - start)

    return run


PER_ROW_CORRUPTION = {"scarf": per_row_scarf_corrupt, "byol": per_row_scarf_corrupt, "vime": per_row_vime_mask}


def per_row_variant(est, method):
    """The same estimator class with its vectorised corruption swapped for the per-row loop (None for the VAE)."""
    if method not in PER_ROW_CORRUPTION:
        return None
    variant = type(f"PerRow{type(est).__name__}", (type(est),), {"_corrupt": staticmethod(PER_ROW_CORRUPTION[method])})
    return variant(**est.get_params())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genes", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=6, help="batches per timed epoch")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds; medians are reported")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    device = _data.resolve_device(args.device)
    print(
        f"# machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    )
    print(
        f"# batch {args.batch_size}, {args.batches} batches per epoch; medians of {args.rounds} interleaved rounds "
        "(vectorised epoch, per-row epoch, matmul reference, corruptions alone) in one run"
    )
    header = (
        "method",
        "genes",
        "samples/s",
        "step GFLOP",
        "GFLOP/s",
        "matmul GFLOP/s",
        "fraction",
        "naive samples/s",
        "speed-up",
        "corruption alone: speed-up",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for n_genes in args.genes:
        for method in args.methods:
            est, module, optimizer, X = setup(method, n_genes, args.batch_size, args.batches, device)
            timers = {
                "ours": epoch_timer(est, module, optimizer, X, args.batch_size, device),
                "matmul": matmul_timer(n_genes, module.encoder[0].out_features, args.batch_size, device),
            }
            naive_est = per_row_variant(est, method)
            if naive_est is not None:
                timers["naive"] = epoch_timer(naive_est, module, optimizer, X, args.batch_size, device)
                batch = torch.from_numpy(X[: args.batch_size]).to(device)
                rate_param = est.corruption_rate if method in ("scarf", "byol") else est.mask_rate
                timers["corrupt"] = corruption_timer(type(est)._corrupt, batch, rate_param)
                timers["corrupt_naive"] = corruption_timer(PER_ROW_CORRUPTION[method], batch, rate_param)
            # Interleaving the three measurements exposes them to the same machine conditions.
            rates = {name: [] for name in timers}
            for _ in range(args.rounds):
                for name, timer in timers.items():
                    rates[name].append(timer())
            rate, peak = (float(np.median(rates[name])) for name in ("ours", "matmul"))
            step_flops = flops_per_step(est, module, X, args.batch_size, device)
            achieved = step_flops * rate / args.batch_size
            if naive_est is None:
                naive_text = "n/a (no corruption) | n/a | n/a"
            else:
                naive = float(np.median(rates["naive"]))
                alone = np.median(rates["corrupt"]) / np.median(rates["corrupt_naive"])
                naive_text = f"{naive:,.0f} | {rate / naive:.1f}x | {alone:.1f}x"
            print(
                f"| {method} | {n_genes} | {rate:,.0f} | {step_flops / 1e9:.2f} | {achieved / 1e9:.1f} | "
                f"{peak / 1e9:.1f} | {achieved / peak:.0%} | {naive_text} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
