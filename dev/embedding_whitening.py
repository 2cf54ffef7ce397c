"""Which linear post-processing of the embedding lets ``ssl -> LogisticRegression()`` (all defaults) converge?

For each embedder with its default parameters (``random_state=0``) and each data set, every fold of a stratified
5-fold split fits the embedder once on the training rows and takes the raw encoder output (``module_.embed``) of
the training and test rows. Each candidate post-processing is then fitted on the training rows' embedding only
and applied to both, and ``LogisticRegression()`` (defaults, ``max_iter=100``) is fitted on the result:

- ``standardise``: per-component centring and scaling (what ``transform`` did before the decorrelation);
- ``shrink s=F``: standardise, then the shrinkage (ZCA) whitening ``W = V diag(1 / sqrt(lambda + s)) V^T`` of the
  standardised components' covariance ``V diag(lambda) V^T``, ``s = F * mean(lambda)``;
- ``cap c=C``: standardise, then ``W = V diag(sqrt(C / max(lambda, C))) V^T``: principal directions with variance
  above ``C`` scaled down to ``C``, the others unchanged (``C = 1`` is what ``transform`` does now,
  :func:`skssl._base.variance_cap`);
- ``pca-whiten``: full PCA whitening (rotation to the principal axes, each divided by its standard deviation;
  ``s`` = 1e-6 of the mean eigenvalue only for safety);
- ``transform``: the embedder's own ``transform`` (with ``--cache``: as the code was when the cache was written).

Reported per remedy: mean 5-fold accuracy of the literal ``remedy -> LogisticRegression()``, of ``remedy ->
StandardScaler -> LogisticRegression()``, the number of ConvergenceWarnings (literal / with scaler, out of 5
folds), the mean lbfgs iterations of the literal one and the median condition number of the training features'
covariance; ``converged ref`` is ``standardise -> LogisticRegression(max_iter=10000)``, the accuracy not to lose.

Data sets: ``synthetic`` (``make_expression(500, 2000, random_state=0)``), ``tcga_acc`` (RNASeq2GeneNorm, log1p,
label ``C1A.C1B``), ``hsmm`` (hsmm_myoblast, log1p, label ``Hours``, top-2000 variable genes of the training rows)
and ``bladderbatch`` (label ``cancer``, top-2000 variable genes of the training rows); real data are read from
``../shared/data`` (or ``$SKSSL_DATA_DIR``).

Usage: ``python dev/embedding_whitening.py [--datasets synthetic tcga_acc hsmm bladderbatch]
[--embedders ...] [--cache DIR] [--threads 1]``. ``--cache`` keeps each fold's embeddings (``.npz``) so that a
rerun only refits what is missing.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from skssl import ContrastiveEmbedder, HighlyVariableGenes, MaskedAutoencoder, VAEEmbedder, make_expression

EMBEDDERS = {cls.__name__: cls for cls in (MaskedAutoencoder, ContrastiveEmbedder, VAEEmbedder)}
CACHE_KEYS = ("tr", "te", "ztr", "zte", "ttr", "tte")
SHRINKAGES = (0.1, 1.0)
CAPS = (1.0, 3.0)


def load(name, data_dir):
    """``X`` (float32), ``y`` and the number of top-variance genes to keep per fold (None: all)."""
    if name == "synthetic":
        X, y = make_expression(n_samples=500, n_genes=2000, random_state=0)
        return X, y, None
    from skssl.io import read_table

    table, label, log1p, top = {
        "tcga_acc": ("tcga_acc.RNASeq2GeneNorm", "C1A.C1B", True, None),
        "hsmm": ("hsmm_myoblast", "Hours", True, 2000),
        "bladderbatch": ("bladderbatch", "cancer", False, 2000),
    }[name]
    data = read_table(data_dir / f"{table}.expression.csv.gz", sample_table=data_dir / f"{table}.samples.csv")
    labels = data.metadata[label]
    keep = np.array([v is not None and v == v for v in labels])
    X = np.asarray(data.X[keep], dtype=np.float32)
    return (np.log1p(X) if log1p else X), np.asarray(labels[keep]).astype(str), top


def fold_embeddings(cls, X, y, top, folds, cache_file):
    """Per fold: (train rows, test rows, raw train embedding, raw test embedding, transform of both)."""
    if cache_file is not None and cache_file.exists():
        saved = np.load(cache_file)
        return [tuple(saved[f"{k}{i}"] for k in CACHE_KEYS) for i in range(folds)], 0.0
    out, start = [], time.perf_counter()
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=0).split(X, y):
        X_train, X_test = X[train], X[test]
        if top is not None:
            hvg = HighlyVariableGenes(n_top_genes=top).fit(X_train)
            X_train, X_test = hvg.transform(X_train), hvg.transform(X_test)
        model = cls(random_state=0).fit(X_train)
        raw = [model._map_batches(x, model.module_.embed, model.n_components_) for x in (X_train, X_test)]
        out.append((train, test, *raw, model.transform(X_train), model.transform(X_test)))
        print(f"  fold {len(out)}: {cls.__name__} fitted in {model.n_iter_} epochs", flush=True)
    seconds = time.perf_counter() - start
    if cache_file is not None:
        np.savez(cache_file, **{f"{k}{i}": v for i, fold in enumerate(out) for k, v in zip(CACHE_KEYS, fold)})
    return out, seconds


def shrinkage_whitening(Z, fraction):
    """Standardise with ``Z``'s statistics, then ZCA-whiten with the shrunk covariance; return a function."""
    Z = Z.astype(np.float64)
    mean, scale = Z.mean(axis=0), Z.std(axis=0)
    scale[scale == 0] = 1.0
    S = (Z - mean) / scale
    cov = S.T @ S / len(S)
    eigenvalues, vectors = np.linalg.eigh(cov)
    eigenvalues = np.clip(eigenvalues, 0.0, None)
    s = max(fraction * eigenvalues.mean(), 1e-12)
    W = (vectors / np.sqrt(eigenvalues + s)) @ vectors.T
    return lambda A: ((A - mean) / scale) @ W


def capped(Z, cap):
    """Standardise, then scale each principal direction with variance above ``cap`` down to ``cap`` (ZCA form)."""
    Z = Z.astype(np.float64)
    mean, scale = Z.mean(axis=0), Z.std(axis=0)
    scale[scale == 0] = 1.0
    S = (Z - mean) / scale
    eigenvalues, vectors = np.linalg.eigh(S.T @ S / len(S))
    factor = np.sqrt(np.minimum(1.0, cap / np.clip(eigenvalues, 1e-300, None)))
    W = (vectors * factor) @ vectors.T
    return lambda A: ((A - mean) / scale) @ W


def standardisation(Z):
    mean, scale = Z.mean(axis=0), Z.std(axis=0)
    scale[scale == 0] = 1.0
    return lambda A: (A - mean) / scale


def evaluate(features_train, y_train, features_test, y_test, **params):
    """Accuracy, whether a ConvergenceWarning was raised and lbfgs iterations of LogisticRegression(**params)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf = LogisticRegression(**params).fit(features_train, y_train)
    warned = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return clf.score(features_test, y_test), warned, int(np.max(clf.n_iter_))


def condition_number(F):
    eigenvalues = np.linalg.eigvalsh(np.cov(F.astype(np.float64), rowvar=False))
    return eigenvalues.max() / max(eigenvalues.min(), 1e-12 * eigenvalues.max())


def remedies():
    """``{name: function(train embedding) -> map}``; None: the embedder's own ``transform``."""
    out = {"standardise": standardisation}
    out.update({f"shrink s={f:g}": (lambda f: lambda Z: shrinkage_whitening(Z, f))(f) for f in SHRINKAGES})  # noqa: B023 (bound by the outer lambda)
    out.update({f"cap c={c:g}": (lambda c: lambda Z: capped(Z, c))(c) for c in CAPS})  # noqa: B023 (bound by the outer lambda)
    out["pca-whiten"] = lambda Z: shrinkage_whitening(Z, 1e-6)
    out["transform"] = None
    return out


def fold_results(make, folds, y, reference=False):
    """Per fold: literal accuracy, accuracy with a StandardScaler, both warning flags, lbfgs iterations, condition."""
    results = []
    for train, test, ztr, zte, ttr, tte in folds:
        if make is None:
            ftr, fte = ttr, tte
        else:
            f = make(ztr)
            ftr, fte = f(ztr), f(zte)
        y_train, y_test = y[train], y[test]
        if reference:
            acc, warned, n_iter = evaluate(ftr, y_train, fte, y_test, max_iter=10000)
            results.append((acc, np.nan, warned, 0, n_iter, condition_number(ftr)))
            continue
        acc, warned, n_iter = evaluate(ftr, y_train, fte, y_test)
        scaler = StandardScaler().fit(ftr)
        acc_s, warned_s, _ = evaluate(scaler.transform(ftr), y_train, scaler.transform(fte), y_test)
        results.append((acc, acc_s, warned, warned_s, n_iter, condition_number(ftr)))
    return np.array(results, dtype=np.float64)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["synthetic", "tcga_acc", "hsmm", "bladderbatch"])
    parser.add_argument("--embedders", nargs="+", default=list(EMBEDDERS))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--cache", type=Path, default=None, help="folder for per-fold embeddings")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("SKSSL_DATA_DIR", "../shared/data")))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.cache is not None:
        args.cache.mkdir(parents=True, exist_ok=True)
    print(f"{platform.processor() or platform.machine()}, torch threads {args.threads}, {args.folds}-fold CV")
    start = time.perf_counter()
    for dataset in args.datasets:
        X, y, top = load(dataset, args.data_dir)
        selection = f" (top {top} variable genes per fold)" if top else ""
        print(f"\n## {dataset}: {X.shape[0]} samples x {X.shape[1]} features{selection}")
        for name in args.embedders:
            cache_file = None if args.cache is None else args.cache / f"{dataset}-{name}.npz"
            folds, seconds = fold_embeddings(EMBEDDERS[name], X, y, top, args.folds, cache_file)
            rows = {remedy: fold_results(make, folds, y) for remedy, make in remedies().items()}
            rows["converged ref"] = fold_results(standardisation, folds, y, reference=True)
            print(f"\n{name} ({'cached' if not seconds else f'{seconds:.0f} s to fit {args.folds} folds'})")
            print(f"{'remedy':<16}{'literal acc':>12}{'+scaler acc':>12}{'warnings':>10}{'lbfgs iter':>11}{'cond':>9}")
            for remedy, r in rows.items():
                scaled = "" if np.isnan(r[:, 1]).all() else f"{r[:, 1].mean():.3f}"
                warns = f"{int(r[:, 2].sum())}" + ("" if remedy == "converged ref" else f"/{int(r[:, 3].sum())}")
                print(
                    f"{remedy:<16}{r[:, 0].mean():>12.3f}{scaled:>12}{warns:>10}{r[:, 4].mean():>11.0f}"
                    f"{np.median(r[:, 5]):>9.3g}"
                )
    print(f"\nwall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
