"""Study-aware pre-training on bladderbatch: does ``fit(X, batch=...)`` mix the processing batches in the embedding,
and what does it cost (or bring) a classifier of the cancer label?

bladderbatch (57 samples x 22 283 probes, RMA log2; 5 processing batches; label ``cancer``: Cancer / Biopsy /
Normal) from ``../shared/data`` (or ``--data-dir``). The 2 000 most variable probes (``HighlyVariableGenes``) of all
57 samples are kept. For every embedder (SCARF, BYOL, VIME, VAE) and seed, two pre-trainings on all 57 samples
(labels hidden), without and with ``batch``, identical otherwise (same seed, same epochs); then on each embedding:

- the silhouette of the batch labels (``sklearn.metrics.silhouette_score``, Euclidean): near 0 when the batches are
  mixed, towards 1 when each batch forms its own cluster;
- the macro-F1 on a held-out test split (30 %, stratified by ``cancer``) of ``LogisticRegression()`` fitted on the
  embedding of 10 % or 100 % of the remaining samples (at least one per class). Paired: per seed, both arms use the
  same test split and the same labeled subset.

Pre-training is capped at ``--max-epochs`` (default 100) epochs to keep the run cheap (the estimators' "auto" budget
would allow 500 on 57 samples; early stopping on the held-out validation loss applies in both arms). Public API only.

    python benchmarks/batch_aware_bladderbatch.py [--seeds 10] [--max-epochs 100] [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, silhouette_score
from sklearn.model_selection import train_test_split

from skssl import ContrastiveEmbedder, HighlyVariableGenes, MaskedAutoencoder, VAEEmbedder
from skssl.io import read_table

EMBEDDERS = {
    "SCARF": lambda **kw: ContrastiveEmbedder(**kw),
    "BYOL": lambda **kw: ContrastiveEmbedder(objective="byol", **kw),
    "VIME": lambda **kw: MaskedAutoencoder(**kw),
    "VAE": lambda **kw: VAEEmbedder(**kw),
}
FRACTIONS = (0.1, 1.0)


def load(data_dir):
    data = read_table(
        Path(data_dir) / "bladderbatch.expression.csv.gz", sample_table=Path(data_dir) / "bladderbatch.samples.csv"
    )
    X = HighlyVariableGenes(n_top_genes=2000).fit_transform(data.X)
    return X, np.asarray(data.metadata["cancer"]), np.asarray(data.metadata["batch"])


def labeled_subset(y_train, fraction, rng):
    """Indices of ``fraction`` of the training rows (at least one per class), drawn with ``rng``."""
    n = max(int(round(fraction * len(y_train))), len(np.unique(y_train)))
    first = [rng.choice(np.flatnonzero(y_train == c)) for c in np.unique(y_train)]
    rest = rng.permutation(np.setdiff1d(np.arange(len(y_train)), first))[: n - len(first)]
    return np.sort(np.concatenate([first, rest]))


def evaluate(Z, y, batch, seed):
    """Silhouette of the batches and macro-F1 per label fraction, on one seed's split."""
    train, test = train_test_split(np.arange(len(y)), test_size=0.3, stratify=y, random_state=seed)
    scores = {"silhouette": silhouette_score(Z, batch)}
    for fraction in FRACTIONS:
        rows = train[labeled_subset(y[train], fraction, np.random.RandomState(seed))]
        clf = LogisticRegression().fit(Z[rows], y[rows])
        scores[f"f1@{fraction:.0%}"] = f1_score(y[test], clf.predict(Z[test]), average="macro")
    return scores


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.path.join("..", "shared", "data"))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--max-epochs", type=int, default=100)
    args = parser.parse_args(argv)
    start, load_before = time.perf_counter(), os.getloadavg()[0]
    X, y, batch = load(args.data_dir)
    sizes = dict(zip(*(v.tolist() for v in np.unique(batch, return_counts=True))))
    print(f"bladderbatch: {X.shape[0]} samples x {X.shape[1]} genes, samples per batch {sizes}")
    rows = []
    for name, make in EMBEDDERS.items():
        results = {"without batch": [], "with batch": []}
        for seed in range(args.seeds):
            for arm, fit_params in (("without batch", {}), ("with batch", {"batch": batch})):
                embedder = make(max_epochs=args.max_epochs, random_state=seed)
                Z = embedder.fit(X, **fit_params).transform(X)
                results[arm].append(evaluate(Z, y, batch, seed))
        for arm, scores in results.items():
            mean = {key: np.mean([s[key] for s in scores]) for key in scores[0]}
            std = {key: np.std([s[key] for s in scores]) for key in scores[0]}
            rows.append((name, arm, mean, std))
        print(f"{name} done ({time.perf_counter() - start:.0f} s)", flush=True)
    keys = ["silhouette", *(f"f1@{f:.0%}" for f in FRACTIONS)]
    print(f"\n| embedder | pre-training | {' | '.join(f'{k} (mean ± sd)' for k in keys)} |")
    print("|---|---|" + "---|" * len(keys))
    for name, arm, mean, std in rows:
        print(f"| {name} | {arm} | " + " | ".join(f"{mean[k]:.3f} ± {std[k]:.3f}" for k in keys) + " |")
    print(
        f"\n{args.seeds} seeds, max_epochs={args.max_epochs}; wall time {time.perf_counter() - start:.0f} s; "
        f"load average {load_before:.1f} at start, {os.getloadavg()[0]:.1f} at end ({os.cpu_count()} CPUs)."
    )


if __name__ == "__main__":
    main()
