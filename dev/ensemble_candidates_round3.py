"""A third round of candidates for SSLClassifier's default ensemble (2026-11-28, not adopted).

Same protocol and cache as ``ensemble_selection.py`` (run that first: it writes the per-split cache with the
benchmark's splits, labeled subsets and top-2 000 genes). Candidates, each scored alone and added to the shipped
``genes + pc8 + ls10`` ensemble (weighted as shipped: uniform below 3 labels per class, greedy selection on held-out
log-loss otherwise):

- ``em4``/``em8``/``em16``: semi-supervised EM (Nigam et al. 2000) with one Gaussian per class and a shared spherical
  variance on the whitened top 4/8/16 principal components; the labeled rows keep their labels, the unlabeled rows
  get responsibilities, class priors are re-estimated. The classic "unlabeled rows move the class means" method.
- ``*_bal``: the ensemble's probabilities divided by the labeled class frequencies before the argmax (a balanced
  decision, which macro-F1 rewards in principle).
- ``pc8u``/``pc16u``/``ls10u``: the PCA and graph members on centred but unscaled data (log expression as is, the
  usual PCA of microarray and single-cell analyses) instead of standardised genes; ``ship_u`` swaps them in,
  ``ship+u`` adds them.
- ``gs3``/``gs5``: logistic regression on kNN-smoothed genes (each row averaged with its 3 or 5 nearest train rows in
  the space of the top 10 components, as single-cell "imputation" does); ``ship+gs3``/``ship+gs5`` add it.

Run: ``python dev/ensemble_candidates_round3.py --cache /tmp/skssl_selection`` (about 10 minutes on the loaded
2-core machine). The table it prints is in docs/benchmarks.md.
"""

import argparse
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ensemble_selection as es
import numpy as np
from sklearn.neighbors import NearestNeighbors

TASKS = ["tcga", "bladder", "hsmm", "synthetic"]
FRACTIONS = (0.1, 1.0)


def em_member(points, n_train, iters=30):
    """Semi-supervised EM with Gaussian classes of one shared spherical variance; fitted on the train rows."""
    train = points[:n_train]

    def fit_predict(rows, y_rows, predict_rows, n_classes):
        clamped = np.zeros((len(rows), n_classes))
        clamped[np.arange(len(rows)), y_rows] = 1

        def m_step(resp):
            weight = resp.sum(0) + 1e-9
            means = resp.T @ train / weight[:, None]
            sq = ((train[:, None, :] - means[None]) ** 2).sum(-1)
            return means, (resp * sq).sum() / (weight.sum() * train.shape[1]), weight / weight.sum()

        def log_post(P, means, var, prior):
            s = -0.5 * ((P[:, None, :] - means[None]) ** 2).sum(-1) / var + np.log(prior + 1e-9)
            s -= s.max(1, keepdims=True)
            p = np.exp(s)
            return p / p.sum(1, keepdims=True)

        resp = np.zeros((n_train, n_classes))
        resp[rows] = clamped
        means, var, _ = m_step(resp)  # start: class means of the labeled rows
        prior = np.full(n_classes, 1.0 / n_classes)
        for _ in range(iters):
            resp = log_post(train, means, var, prior)
            resp[rows] = clamped
            means, var, prior = m_step(resp)
        return log_post(points[predict_rows], means, var, prior) + 1e-9

    return fit_predict


def smoothed(A, B, points, n_train, k):
    """Rows of ``A`` (train) and ``B`` (test) averaged with their ``k`` nearest train rows in ``points``."""
    neighbours = NearestNeighbors(n_neighbors=k + 1).fit(points[:n_train])
    _, idx = neighbours.kneighbors(points[:n_train])  # the row itself first
    _, test_idx = neighbours.kneighbors(points[n_train:], n_neighbors=k)
    return A[idx].mean(1), (B + A[test_idx].sum(1)) / (k + 1)


def evaluate(path, fraction):
    split = es.Split(path, fraction)
    pcs, n_train = split.pcs, split.n_train
    members = {
        "genes": es.linear_member(split.genes()),
        "pc8": es.linear_member(pcs(8)),
        "ls10": es.spreading_member(pcs(10, whiten=False), n_train),
        "pc8u": es.linear_member(pcs(8, scaled=False)),
        "pc16u": es.linear_member(pcs(16, scaled=False)),
        "ls10u": es.spreading_member(pcs(10, whiten=False, scaled=False), n_train),
        **{f"em{k}": em_member(pcs(k), n_train) for k in (4, 8, 16)},
    }
    for k in (3, 5):
        members[f"gs{k}"] = es.linear_member(np.vstack(smoothed(split.A, split.B, pcs(10, whiten=False), n_train, k)))
    test_proba, held = split.test_predictions(members), split.held_out_predictions(members)
    out = {**test_proba, **split.baselines()}
    counts = np.bincount(split.y_train[split.lab], minlength=split.n_classes)

    def shipped_weighting(names):
        return split.shipped_weighting(test_proba, held, names)

    base = ["genes", "pc8", "ls10"]
    out["ship"] = shipped_weighting(base)
    out["ship_bal"] = out["ship"] / counts
    out["genes_bal"] = test_proba["genes"] / counts
    for k in (4, 8, 16):
        out[f"ship+em{k}"] = shipped_weighting([*base, f"em{k}"])
        out[f"ship+em{k}_bal"] = out[f"ship+em{k}"] / counts
    out["ship_u"] = shipped_weighting(["genes", "pc8u", "ls10u"])
    out["ship+u"] = shipped_weighting([*base, "pc8u", "ls10u"])
    for k in (3, 5):
        out[f"ship+gs{k}"] = shipped_weighting([*base, f"gs{k}"])
    return split.macro_f1(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", default="/tmp/skssl_selection")
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    res = es.score_splits(evaluate, args.cache, range(args.seeds), TASKS)
    es.print_gap_table(res, TASKS, args.seeds)


if __name__ == "__main__":
    main()
