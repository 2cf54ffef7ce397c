"""Peak resident memory of ``fit`` + ``transform`` on a matrix that lives on disk (``np.memmap``).

Creates (once) a float32 memmap of ``--rows`` x ``--genes`` (default 1 000 000 x 2 000 = 8 GB) under ``--dir``,
then in a fresh child process fits an embedder on it and embeds it, and reports the child's peak RSS
(``VmHWM``), wall and CPU time and the size of the file: the data never has to fit in memory. Public API only.

Usage::

    python benchmarks/memmap_memory.py [--rows 1000000] [--genes 2000] [--dir /tmp] [--epochs 1]
    python benchmarks/memmap_memory.py --quick       # 5 000 x 100 (2 MB): checks the script runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CHUNK = 50_000


def create(path, rows, genes, seed=0):
    """Low-rank structure plus noise, written chunk by chunk (never whole in memory)."""
    if path.exists() and path.stat().st_size == rows * genes * 4:
        return
    rng = np.random.default_rng(seed)
    loadings = rng.normal(size=(8, genes)).astype(np.float32)
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=(rows, genes))
    for start in range(0, rows, CHUNK):
        stop = min(start + CHUNK, rows)
        factors = rng.normal(size=(stop - start, 8)).astype(np.float32)
        mm[start:stop] = factors @ loadings + rng.standard_normal((stop - start, genes), dtype=np.float32)
    mm.flush()
    del mm


def peak_rss_mb(resource):
    """Peak RSS of this process: VmHWM on Linux (ru_maxrss would also count the parent's pages at fork time)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(path, rows, genes, epochs, method, hidden):
    import resource

    import skssl

    X = np.memmap(path, dtype=np.float32, mode="r", shape=(rows, genes))
    estimator = getattr(skssl, method)(max_epochs=epochs, random_state=0, device="cpu")
    if hidden:
        estimator.set_params(hidden_dims=tuple(hidden))
    start, cpu_start = time.perf_counter(), time.process_time()
    estimator.fit(X)
    fit_s, fit_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    start, cpu_start = time.perf_counter(), time.process_time()
    Z = estimator.transform(X)
    transform_s, transform_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    print(
        json.dumps(
            {
                "peak_rss_mb": peak_rss_mb(resource),
                "fit_s": fit_s,
                "fit_cpu_s": fit_cpu_s,
                "transform_s": transform_s,
                "transform_cpu_s": transform_cpu_s,
                "embedding_shape": list(Z.shape),
                "epochs": estimator.n_iter_,
                "batch_size": estimator.batch_size_,
                "finite": bool(np.isfinite(Z).all()),
            }
        )
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--genes", type=int, default=2_000)
    parser.add_argument("--dir", default="/tmp")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--method", default="MaskedAutoencoder")
    parser.add_argument(
        "--hidden-dims", type=int, nargs="*", default=None, help="encoder widths (default: the estimator's auto sizing)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the memmap file afterwards")
    parser.add_argument("--quick", action="store_true", help="5 000 x 100 rows x genes: checks that the script runs")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.genes = 5_000, 100
    path = Path(args.dir) / f"skssl_memmap_{args.rows}x{args.genes}.f32"
    if args.child:
        child(path, args.rows, args.genes, args.epochs, args.method, args.hidden_dims)
        return
    start = time.perf_counter()
    create(path, args.rows, args.genes)
    print(
        f"# machine: {platform.platform()}, {os.cpu_count()} CPUs; file {path} "
        f"{path.stat().st_size / 1e9:.1f} GB (created/checked in {time.perf_counter() - start:.0f} s)"
    )
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            "--rows",
            str(args.rows),
            "--genes",
            str(args.genes),
            "--dir",
            args.dir,
            "--epochs",
            str(args.epochs),
            "--method",
            args.method,
        ]
        + (["--hidden-dims", *map(str, args.hidden_dims)] if args.hidden_dims else []),
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    hidden = args.hidden_dims or "auto"
    print(
        f"{args.method} (hidden_dims={hidden}) fit ({result['epochs']} epoch(s), batch {result['batch_size']}) + "
        f"transform on "
        f"{args.rows} x {args.genes} memmap: peak RSS {result['peak_rss_mb']:.0f} MB, fit {result['fit_s']:.1f} s "
        f"({result['fit_cpu_s']:.1f} s CPU), transform {result['transform_s']:.1f} s "
        f"({result['transform_cpu_s']:.1f} s CPU), embedding {result['embedding_shape']}, finite {result['finite']}"
    )
    if not args.keep:
        path.unlink()


if __name__ == "__main__":
    main()
