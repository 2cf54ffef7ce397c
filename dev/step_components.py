"""Cost of the parts of a training step that are not matrix products, old way against new way, in one run.

``docs/performance.md`` explains the training-step speed-ups by three changes; this script measures each of them
on a batch of 256 rows x 5 000 genes (medians of interleaved rounds, one process, the threads torch is given):

- the AdamW update of the default 5 000-gene network: torch's default per-tensor update against ``fused=True``;
- per-entry random numbers for a Bernoulli mask: ``torch.rand`` against 16-bit draws cut from 64-bit words;
- the marginal draws' gather: across the rows of the row-major batch against a column-major copy;
- and, for reference, a whole SCARF and VIME corruption as skssl does it.

Usage: ``python dev/step_components.py [--rows 256] [--genes 5000] [--rounds 7]``. Run it again with
``MALLOC_MMAP_THRESHOLD_=1000000000 MALLOC_TRIM_THRESHOLD_=2000000000`` in the environment to see how much of these
costs is the allocator returning batch-sized blocks to the kernel.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from skssl import MaskedAutoencoder, _data
from skssl._corruption import bernoulli_mask, marginal_sample, scarf_corrupt, vime_mask


def median_ms(functions, rounds, repeats=5):
    """Median milliseconds per call of each function, timed in interleaved rounds."""
    times = {name: [] for name in functions}
    for function in functions.values():
        function()  # warm-up
    for _ in range(rounds):
        for name, function in functions.items():
            start = time.perf_counter()
            for _ in range(repeats):
                function()
            times[name].append((time.perf_counter() - start) / repeats * 1e3)
    return {name: float(np.median(values)) for name, values in times.items()}


def adamw_steps(n_genes):
    est = MaskedAutoencoder(random_state=0, device="cpu")
    X = np.random.default_rng(0).normal(size=(8, n_genes)).astype(np.float32)
    module, _ = est._new_module(n_genes, _data.column_statistics(X), torch.device("cpu"), seed=0)
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p)
    n_params = sum(p.numel() for p in params)
    default = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-5)
    fused = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-5, fused=True)
    return n_params, {
        "AdamW step, default (per-tensor)": default.step,
        "AdamW step, fused": fused.step,
    }


def row_major_gather(x):
    """The previous marginal draws: a donor row per entry, gathered across the rows of the row-major batch."""
    n_rows = x.shape[0]
    offset = torch.randint(1, n_rows, x.shape)
    donor = (torch.arange(n_rows).unsqueeze(1) + offset) % n_rows
    return torch.gather(x, 0, donor)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--genes", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    malloc = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
    print(
        f"# machine: {platform.platform()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"batch {args.rows} x {args.genes}, medians of {args.rounds} interleaved rounds; "
        f"allocator env: {malloc or 'none'}"
    )
    x = torch.randn(args.rows, args.genes)
    shape = x.shape
    n_params, optimizers = adamw_steps(args.genes)
    functions = {
        **optimizers,
        "Bernoulli mask from torch.rand": lambda: torch.rand(shape) < 0.3,
        "Bernoulli mask from 16-bit draws": lambda: bernoulli_mask(shape, 0.3),
        "marginal draws, row-major gather": lambda: row_major_gather(x),
        "marginal draws, column-major gather": lambda: marginal_sample(x),
        "whole SCARF corruption (rate 0.6)": lambda: scarf_corrupt(x, 0.6),
        "whole VIME corruption (p 0.3)": lambda: vime_mask(x, 0.3),
    }
    print(f"| operation | ms per call |  (AdamW over {n_params:,} parameters)")
    print("|---|---|")
    for name, ms in median_ms(functions, args.rounds).items():
        print(f"| {name} | {ms:.2f} |")


if __name__ == "__main__":
    main()
