"""How fast read_archs4 streams an ARCHS4-sized gene axis: samples/s and peak memory, on a synthetic file.

Writes a gzip-compressed, chunked ``data/expression`` with the human v2 gene count (67 186 rows) and ``--samples``
columns of negative-binomial counts (``make_expression(output="counts")``, 8 distinct sample blocks tiled to save
generation time), then times ``read_archs4(genes=<--genes random rows>, transform=LogCPM().fit_transform,
out=<.npy>)`` for each chunk shape given, in a fresh process (wall and CPU time, peak RSS). Public API only. Not
part of the test suite. Used for docs/transfer_compendium.md.

    OMP_NUM_THREADS=1 python benchmarks/archs4_read_speed.py --samples 2000 --dir /tmp
    python benchmarks/archs4_read_speed.py --quick     # 250 samples, 2 000 genes, one chunk shape: a smoke run
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from skssl import LogCPM, make_expression
from skssl.io import read_archs4

N_GENES = 67_186


def write_file(path, n_samples, chunks):
    block, _ = make_expression(n_samples=250, n_genes=N_GENES, n_batches=1, output="counts", random_state=0)
    block = block.T.astype(np.uint32)  # genes x samples
    with h5py.File(path, "w") as f:
        dataset = f.create_dataset(
            "data/expression",
            shape=(N_GENES, n_samples),
            dtype=np.uint32,
            chunks=chunks,
            compression="gzip",
            compression_opts=4,
        )
        for start in range(0, n_samples, block.shape[1]):
            stop = min(start + block.shape[1], n_samples)
            dataset[:, start:stop] = block[:, : stop - start]
        strings = h5py.string_dtype()
        f.create_dataset(
            "meta/genes/symbol", data=np.array([f"G{i}" for i in range(N_GENES)], dtype=object), dtype=strings
        )
        f.create_dataset(
            "meta/samples/geo_accession",
            data=np.array([f"GSM{j}" for j in range(n_samples)], dtype=object),
            dtype=strings,
        )
        f.create_dataset(
            "meta/samples/series_id",
            data=np.array([f"GSE{j // 50}" for j in range(n_samples)], dtype=object),
            dtype=strings,
        )


def read(path, n_genes):
    """Time the streamed read in this (fresh) process; report its peak RSS above the RSS after the imports."""
    rng = np.random.default_rng(0)
    genes = [f"G{i}" for i in np.sort(rng.choice(N_GENES, size=n_genes, replace=False))]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start, cpu_start = time.perf_counter(), time.process_time()
    data = read_archs4(path, genes=genes, transform=LogCPM().fit_transform, out=Path(path).with_suffix(".npy"))
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"read {data.n_samples} samples x {data.n_genes} genes in {seconds:.1f} s ({cpu_seconds:.1f} s CPU) = "
        f"{data.n_samples / seconds:.0f} samples/s; peak RSS {rss_before:.0f} MiB after imports, "
        f"{rss_after:.0f} MiB after the read"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--genes", type=int, default=20_000, help="genes read (random rows)")
    parser.add_argument("--chunks", nargs="+", default=["67186x8", "2048x256"], help="chunk shapes, GENESxSAMPLES")
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--quick", action="store_true", help="250 samples, 2 000 genes, chunks 67186x8 only")
    parser.add_argument("--read", help=argparse.SUPPRESS)  # internal: the timed read, in a fresh process
    args = parser.parse_args()
    if args.quick:
        args.samples, args.genes, args.chunks = 250, 2000, ["67186x8"]
    if args.read:
        read(args.read, args.genes)
        return
    print(f"# load average {os.getloadavg()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    for spec in args.chunks:
        chunks = tuple(int(v) for v in spec.split("x"))
        path = Path(args.dir) / f"archs4_speed_{spec}.h5"
        start = time.perf_counter()
        write_file(path, args.samples, chunks)
        print(
            f"chunks {spec}: file {path.stat().st_size / 2**20:.0f} MiB, written in {time.perf_counter() - start:.0f} s"
        )
        subprocess.run([sys.executable, __file__, "--read", str(path), "--genes", str(args.genes)], check=True)
        path.unlink()
        path.with_suffix(".npy").unlink()


if __name__ == "__main__":
    main()
