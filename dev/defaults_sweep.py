"""Sweep of embedder settings for the defaults: embedder + logistic-regression probe against logistic regression
and PCA + logistic regression, on the synthetic cohort and the data sets of ``../shared/data``.

For each data set and seed: a stratified 25 % test split (``skssl.benchmark.train_test_indices``), the 2 000 most
variable genes of the train split for the wide data sets, the embedder fitted on the whole train split (labels
hidden) with the estimator's default schedule, then ``StandardScaler + LogisticRegression`` on the labeled subset
(5, 20 and 100 % of the train split, ``skssl.benchmark.labeled_subsets``); macro-F1 on the test split. PCA here is
32 components on the unscaled train split. One torch thread.

Usage::

    python dev/defaults_sweep.py \
        '{"lr": ["raw", {}], "pca": ["pca", {}], "mae128": ["mae", {"n_components": 128}]}' \
        synthetic,hsmm 0,1,2 results.json

Configurations map a name to ``[kind, params]`` with kind ``raw``, ``pca``, ``mae``, ``scarf`` or ``vae``; the
results (one row per data set, seed, fraction and configuration) go to the JSON file and a table of means to stdout.
Data sets are read from ``$SKSSL_DATA_DIR`` (default ``../shared/data``).
"""

import collections
import json
import os
import sys
import time

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skssl import ContrastiveEmbedder, MaskedAutoencoder, VAEEmbedder
from skssl.benchmark import labeled_subsets, train_test_indices
from skssl.benchmark._datasets import load_benchmark_data
from skssl.benchmark._protocol import encode_labels
from skssl.preprocessing import HighlyVariableGenes

DATASETS = {
    "synthetic": {"data": None},
    "tcga": {"data": "tcga_acc.RNASeq2GeneNorm", "label_column": "C1A.C1B"},
    "bladder": {"data": "bladderbatch", "label_column": "cancer", "top": 2000},
    "hsmm": {"data": "hsmm_myoblast", "label_column": "Hours", "top": 2000},
}
EMBEDDERS = {"mae": MaskedAutoencoder, "scarf": ContrastiveEmbedder, "vae": VAEEmbedder}
FRACTIONS = (0.05, 0.2, 1.0)
PCA_COMPONENTS = 32


def load(name):
    spec = dict(DATASETS[name])
    top = spec.pop("top", None)
    if spec["data"] is None:
        loaded = load_benchmark_data()
    else:
        loaded = load_benchmark_data(data_dir=os.environ.get("SKSSL_DATA_DIR", "../shared/data"), **spec)
    return loaded["X"], encode_labels(loaded["y"])[1], top


def features(kind, params, X_train, X_test, seed):
    """Train and test features of one configuration, and the seconds its fit took."""
    start = time.perf_counter()
    if kind == "raw":
        return X_train, X_test, 0.0
    if kind == "pca":
        model = PCA(n_components=min(PCA_COMPONENTS, len(X_train) - 1), random_state=seed).fit(X_train)
    else:
        model = EMBEDDERS[kind](random_state=seed, device="cpu", **params).fit(X_train)
    return (
        model.transform(X_train),
        model.transform(X_test),
        time.perf_counter() - start,
    )


def run(datasets, configs, seeds):
    rows = []
    for name in datasets:
        X, y, top = load(name)
        for seed in seeds:
            train, test = train_test_indices(y, random_state=seed)
            X_train, X_test = X[train], X[test]
            if top and X.shape[1] > top:
                genes = HighlyVariableGenes(n_top_genes=top).fit(X_train)
                X_train, X_test = genes.transform(X_train), genes.transform(X_test)
            subsets = labeled_subsets(y[train], FRACTIONS, random_state=seed)
            for config, (kind, params) in configs.items():
                F_train, F_test, seconds = features(kind, params, X_train, X_test, seed)
                for fraction, labeled in subsets.items():
                    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
                    probe.fit(F_train[labeled], y[train][labeled])
                    f1 = f1_score(y[test], probe.predict(F_test), average="macro")
                    rows.append(
                        {
                            "data": name,
                            "seed": seed,
                            "frac": fraction,
                            "config": config,
                            "f1": f1,
                            "secs": seconds,
                        }
                    )
    return rows


def main(argv):
    configs, datasets, seeds, out = (
        json.loads(argv[0]),
        argv[1].split(","),
        [int(s) for s in argv[2].split(",")],
        argv[3],
    )
    torch.set_num_threads(1)
    rows = run(datasets, configs, seeds)
    with open(out, "w") as handle:
        json.dump(rows, handle)
    scores, seconds = collections.defaultdict(list), collections.defaultdict(list)
    for row in rows:
        scores[row["data"], row["config"], row["frac"]].append(row["f1"])
        seconds[row["data"], row["config"]].append(row["secs"])
    print(f"# macro-F1 means over seeds {seeds} at labeled fractions {FRACTIONS}")
    for name in datasets:
        print(f"== {name}")
        for config in configs:
            means = " ".join(f"{np.mean(scores[name, config, f]):.3f}" for f in FRACTIONS)
            print(f"{config:28s} {means}   fit {np.mean(seconds[name, config]):.1f}s")


if __name__ == "__main__":
    main(sys.argv[1:])
