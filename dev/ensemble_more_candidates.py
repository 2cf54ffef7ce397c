"""More candidate members for SSLClassifier's default ensemble, tried after the shipped one was chosen (not adopted).

Same protocol and cache as ``ensemble_selection.py`` (run that first: it writes the per-split cache with the
benchmark's splits, labeled subsets, top-2 000 genes and default embeddings). Candidates added here:
``genesC.1``/``genesC.01``: logistic regression on the standardised genes with stronger L2 (C = 0.1, 0.01);
``nc_*``: nearest centroid (softmax of minus the mean squared distance) on the whitened top 8/16 components, the
unwhitened top 16, or the standardised genes; ``lda_pc16``/``lda_pc32``: shrinkage LDA (Ledoit-Wolf) on the whitened
top 16/32 components; ``ls20``, ``ls10_k5``, ``ls10_a.95``: label spreading with 20 components, 5 neighbours, or
alpha 0.95; ``mae`` / ``ls_mae``: logistic regression on / label spreading over the default MaskedAutoencoder
embedding. Combinations: the shipped ``genes + pc8 + ls10`` ("base") with one extra member, weighted as shipped
(``sw_``: uniform below 3 labels per class, greedy selection on held-out log-loss otherwise) or uniformly (``avg_``).

Result (2026-11-28, 10 seeds, see docs/benchmarks.md): no candidate raises the mean gap closed at 10 % of labels by
more than 0.01 over the shipped ensemble, and none changes bladderbatch.

Run: ``python dev/ensemble_more_candidates.py --cache /tmp/skssl_selection`` (about 15 minutes on 2 idle
cores).
"""

import argparse
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ensemble_selection as es
import numpy as np
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

warnings.filterwarnings("ignore")
TASKS = ["tcga", "bladder", "hsmm", "synthetic"]


def lr_member(features, C=1.0):
    features = StandardScaler().fit_transform(features)

    def fp(rows, y_rows, pred, n_classes):
        m = LogisticRegression(max_iter=2000, C=C).fit(features[rows], y_rows)
        p = np.full((len(pred), n_classes), 1e-9)
        p[:, m.classes_] = m.predict_proba(features[pred])
        return p / p.sum(1, keepdims=True)

    return fp


def centroid_member(features, temp=1.0):
    def fp(rows, y_rows, pred, n_classes):
        cents = np.full((n_classes, features.shape[1]), np.nan)
        for c in np.unique(y_rows):
            cents[c] = features[rows][y_rows == c].mean(0)
        d = ((features[pred][:, None, :] - cents[None]) ** 2).sum(-1) / features.shape[1]
        d = np.where(np.isnan(d), np.inf, d)
        s = -d / temp
        s -= s.max(1, keepdims=True)
        p = np.exp(s) + 1e-9
        return p / p.sum(1, keepdims=True)

    return fp


def lda_member(features):
    def fp(rows, y_rows, pred, n_classes):
        if np.bincount(y_rows).max() < 2 or len(rows) <= len(np.unique(y_rows)):
            return centroid_member(features)(rows, y_rows, pred, n_classes)
        m = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(features[rows], y_rows)
        p = np.full((len(pred), n_classes), 1e-9)
        p[:, m.classes_] = m.predict_proba(features[pred])
        return p / p.sum(1, keepdims=True)

    return fp


def evaluate(path, fraction):
    split = es.Split(path, fraction)
    z, lab, ytr, n, K, pcs = split.cache, split.lab, split.y_train, split.n_train, split.n_classes, split.pcs

    G = split.genes()
    M = {
        "genes": es.linear_member(G),
        "pc8": es.linear_member(pcs(8)),
        "ls10": es.spreading_member(pcs(10, False), n),
        "genesC.1": lr_member(G, 0.1),
        "genesC.01": lr_member(G, 0.01),
        "nc_pc8": centroid_member(pcs(8)),
        "nc_pc16": centroid_member(pcs(16)),
        "nc_genes": centroid_member(G),
        "nc_pc16u": centroid_member(pcs(16, False)),
        "lda_pc16": lda_member(pcs(16)),
        "lda_pc32": lda_member(pcs(32)),
        "ls20": es.spreading_member(pcs(20, False), n),
        "ls10_k5": es.spreading_member(pcs(10, False), n, k=5),
        "ls10_a.95": es.spreading_member(pcs(10, False), n, alpha=0.95),
        "mae": es.linear_member(np.vstack([z["Ztr_mae@0"], z["Zte_mae@0"]])),
        "ls_mae": es.spreading_member(np.vstack([z["Ztr_mae@0"], z["Zte_mae@0"]]), n),
    }
    P = split.test_predictions(M)
    out = {**P, **split.baselines()}
    fewest = np.bincount(ytr[lab], minlength=K).min()
    combos = {
        "base": ["genes", "pc8", "ls10"],
        "base+nc16": ["genes", "pc8", "ls10", "nc_pc16"],
        "base+lda16": ["genes", "pc8", "ls10", "lda_pc16"],
        "C.1": ["genesC.1", "pc8", "ls10"],
        "base+ncg": ["genes", "pc8", "ls10", "nc_genes"],
        "base+ls20": ["genes", "pc8", "ls10", "ls20"],
        "g+nc16+ls": ["genes", "nc_pc16", "ls10"],
        "base+lsmae": ["genes", "pc8", "ls10", "ls_mae"],
        "base+a95": ["genes", "pc8", "ls10_a.95"],
    }
    held = None
    for c, names in combos.items():
        avg = np.mean([P[m] for m in names], 0)
        if fewest < 3:
            out["sw_" + c] = avg
        else:
            if held is None:
                held = {}
            for m in names:
                if m not in held:
                    held[m] = es.held_out(M[m], lab, ytr, K)
            w = es.greedy({m: held[m] for m in names}, ytr[lab])
            out["sw_" + c] = sum(w[m] * P[m] for m in names) / sum(w.values())
        out["avg_" + c] = avg
    return split.macro_f1(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", default="/tmp/skssl_selection")
    args = parser.parse_args()
    es.print_gap_table(es.score_splits(evaluate, args.cache, range(10), TASKS), TASKS, 10)


if __name__ == "__main__":
    main()
