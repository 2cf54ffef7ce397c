"""Does ``Pipeline([("ssl", Embedder()), ("clf", LogisticRegression())])`` need a StandardScaler in between?

For each embedder with its default parameters (``random_state=0``), on ``make_expression(n_samples=500,
n_genes=2000, random_state=0)``, reports the 5-fold ``cross_val_score`` accuracy of the literal pipeline and of the
same pipeline with a ``StandardScaler`` between the two steps, and how many ``ConvergenceWarning`` each raised
(``LogisticRegression()`` keeps its defaults, ``max_iter=100``). Both pipelines share a joblib cache, so each fold's
embedder is fitted once and the two classifiers see the same embedding.

Usage: ``python dev/pipeline_scaling.py [--folds 5] [--threads 1]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

import torch
from joblib import Memory
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from skssl import ContrastiveEmbedder, MaskedAutoencoder, VAEEmbedder, make_expression

EMBEDDERS = (ContrastiveEmbedder, MaskedAutoencoder, VAEEmbedder)


def cv_accuracy(pipeline, X, y, folds):
    """Mean and standard deviation of the fold accuracies, and the number of ConvergenceWarnings raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        scores = cross_val_score(pipeline, X, y, cv=StratifiedKFold(folds, shuffle=True, random_state=0))
    n_warnings = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    return scores.mean(), scores.std(), n_warnings


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    X, y = make_expression(n_samples=500, n_genes=2000, random_state=0)
    print(
        f"make_expression(500 x 2000), {args.folds}-fold CV, LogisticRegression() defaults, "
        f"torch threads {args.threads}"
    )
    print(f"{'embedder':<22}{'pipeline':<28}{'accuracy':>16}{'ConvergenceWarnings':>22}")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        memory = Memory(cache, verbose=0)
        for cls in EMBEDDERS:
            pipelines = {
                "ssl -> logreg": Pipeline([("ssl", cls(random_state=0)), ("clf", LogisticRegression())], memory=memory),
                "ssl -> scaler -> logreg": Pipeline(
                    [("ssl", cls(random_state=0)), ("scale", StandardScaler()), ("clf", LogisticRegression())],
                    memory=memory,
                ),
            }
            for name, pipeline in pipelines.items():
                mean, std, n_warnings = cv_accuracy(pipeline, X, y, args.folds)
                print(f"{cls.__name__:<22}{name:<28}{mean:>10.3f} ± {std:.3f}{n_warnings:>22}", flush=True)
    print(f"wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
