"""Wall time of a GridSearchCV over the classifier after a self-supervised embedder: refit vs cache vs freeze.

Data: ``bladderbatch`` from the shared data folder (57 samples x 22 283 probes, RMA log2; label ``cancer``), read
with :func:`skssl.io.read_table` and its sample table (public API only). Model: ``MaskedAutoencoder()`` with
its defaults (``random_state=0`` so that runs repeat) followed by ``LogisticRegression(max_iter=1000)``. Search:
``GridSearchCV`` over ``clf__C`` in {0.1, 1}, the same ``StratifiedKFold(5, shuffle=True, random_state=0)`` folds
for every idiom, ``n_jobs=1``, default ``refit=True`` (the best candidate is refitted on all rows, as a user
would get it). Three idioms:

- ``naive`` ("before"): ``Pipeline([("ssl", MaskedAutoencoder()), ("clf", LogisticRegression())])``. Each
  candidate refits the embedder on each fold: 2 candidates x 5 folds + 1 refit = 11 embedder fits.
- ``memory``: the same Pipeline with ``memory=<cache dir>``: the fitted embedder is cached by (parameters, data),
  so candidates that differ only in ``clf__C`` reuse it: 5 folds + 1 refit = 6 embedder fits. Same computation,
  so the same CV scores as ``naive`` (bit for bit on CPU with a fixed seed).
- ``frozen`` ("after"): the embedder is fitted once on all 57 rows (it never sees a label), then
  ``Pipeline([("ssl", FrozenEstimator(embedder)), ("clf", LogisticRegression())])`` is searched: 1 embedder fit.
  The time includes that fit. The scores differ from the other two: here the embedder has also seen the held-out
  fold's profiles (not their labels) -- the transductive, semi-supervised setting where all profiles are available
  for pre-training. They are the right numbers when that is how the model will be used.
- ``frozen_top2000``: as ``frozen``, with ``HighlyVariableGenes(n_top_genes=2000)`` (fitted on all rows, no labels)
  in front of the embedder, as ``skssl-benchmark --top-genes 2000`` does: a smaller network, a faster fit.

Run: ``python benchmarks/grid_search_time.py`` from the repository root, with skssl installed. The four idioms make
19 embedder fits in all (1 + 1 + 6 + 11), each about 40 s on an idle 2-core machine (the naive search took 428 s,
the memory one 265 s, at commit 27a18e1) and several times that on a busy one; ``--idioms frozen`` runs one idiom.
``--threads`` sets ``torch.set_num_threads`` (default 2, the machine's cores). Each idiom's line gives wall time
and the process's CPU time (all threads), and the load average, since other processes on the machine lengthen the
wall time. ``--quick`` (3 folds, ``max_epochs=2``, the 2 000 first probes) checks that the script runs; its times
mean nothing.
"""

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline

import skssl
from skssl import HighlyVariableGenes, MaskedAutoencoder
from skssl.io import read_table

IDIOMS = ("frozen", "frozen_top2000", "memory", "naive")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--idioms", nargs="+", choices=IDIOMS, default=list(IDIOMS))
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="3 folds, max_epochs=2, 2 000 probes: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.folds = 3

    torch.set_num_threads(args.threads)
    data_dir = Path(args.data_dir)
    data = read_table(data_dir / "bladderbatch.expression.csv.gz", sample_table=data_dir / "bladderbatch.samples.csv")
    X, y = data.X.astype(np.float32), np.asarray(data.metadata["cancer"]).astype(str)
    if args.quick:
        X = X[:, :2000]
    print(
        f"# {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs; torch {torch.__version__}, "
        f"torch.set_num_threads({args.threads}); skssl {skssl.__version__}"
    )
    classes, counts = np.unique(y, return_counts=True)
    counts_text = dict(zip(classes.tolist(), counts.tolist()))
    print(f"# bladderbatch {X.shape[0]} samples x {X.shape[1]} probes; cancer: {counts_text}")
    print(
        f"# GridSearchCV over clf__C in {{0.1, 1}}, StratifiedKFold({args.folds}, shuffle=True, random_state=0), "
        "n_jobs=1, refit=True"
    )
    print(f"# load average before: {os.getloadavg()}", flush=True)

    grid = {"clf__C": [0.1, 1.0]}
    cv = StratifiedKFold(args.folds, shuffle=True, random_state=0)

    def embedder():
        return MaskedAutoencoder(random_state=0, max_epochs=2 if args.quick else "auto")

    def classifier():
        return LogisticRegression(max_iter=1000)

    rows = []
    for idiom in args.idioms:
        cache = None
        start, cpu_start = time.perf_counter(), time.process_time()
        if idiom in ("frozen", "frozen_top2000"):
            unsupervised = embedder()
            if idiom == "frozen_top2000":  # the 2 000 most variable probes first, as skssl-benchmark --top-genes 2000
                unsupervised = Pipeline([("hvg", HighlyVariableGenes(n_top_genes=2000)), ("ssl", unsupervised)])
            fitted = unsupervised.fit(X)  # all rows, no labels
            fit_once = time.perf_counter() - start
            pipe = Pipeline([("ssl", FrozenEstimator(fitted)), ("clf", classifier())])
            n_fits = "1"
        elif idiom == "memory":
            cache = tempfile.mkdtemp(prefix="skssl_grid_cache_")
            pipe = Pipeline([("ssl", embedder()), ("clf", classifier())], memory=cache)
            n_fits = f"{args.folds} + 1"
        else:
            pipe = Pipeline([("ssl", embedder()), ("clf", classifier())])
            n_fits = f"{len(grid['clf__C'])} x {args.folds} + 1"
        search = GridSearchCV(pipe, grid, cv=cv, n_jobs=1).fit(X, y)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        if cache is not None:
            shutil.rmtree(cache, ignore_errors=True)
        scores = search.cv_results_["mean_test_score"]
        extra = f" (of which the one embedder fit: {fit_once:.1f} s)" if idiom.startswith("frozen") else ""
        print(
            f"{idiom}: {wall:.1f} s wall, {cpu:.1f} s CPU{extra}; embedder fits: {n_fits}; mean CV accuracy per C "
            f"{dict(zip(grid['clf__C'], np.round(scores, 3).tolist()))}; best C={search.best_params_['clf__C']} "
            f"({search.best_score_:.3f}); load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        rows.append((idiom, wall, cpu, n_fits, search.best_params_["clf__C"], search.best_score_, os.getloadavg()[1]))

    print("\n| idiom | embedder fits | wall (s) | CPU (s) | 5-min load avg at end | best C | best mean CV accuracy |")
    print("|---|---|---|---|---|---|---|")
    for idiom, wall, cpu, n_fits, best_c, best, load in rows:
        print(f"| {idiom} | {n_fits} | {wall:.1f} | {cpu:.1f} | {load:.1f} | {best_c} | {best:.3f} |")
    print(f"# load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
