"""How SSLClassifier's default ensemble was chosen: candidates scored on four cohorts, then leave-one-dataset-out.

Protocol (the benchmark's own splits and labeled subsets, via ``skssl.benchmark``): for each task and seed, a
stratified 25 % test split; the 2 000 most variable genes of the train split (``HighlyVariableGenes``, fitted on
the train split) when there are more; labeled subsets of 10 % and 100 % of the train split. Unsupervised parts
(scaling, PCA, the kNN graph, the default ``MaskedAutoencoder`` / ``ContrastiveEmbedder``) see every train row;
supervised parts see the labeled rows; macro-F1 on the test split.

Candidates: members (``genes``: logistic regression on the standardised genes; ``pc4``/``pc8``/``pc16``: on the
whitened top 4/8/16 principal components; ``pcad``: on ``clip(n_labeled // 3, 2, 32)`` of them; ``ls10``: label
spreading over the 10-NN graph in the space of the top 10 unwhitened components; ``mae@0``, ``scarf@0``: on the
standardised default embeddings), combinations of members, and ways to weigh them (``avg``: uniform; ``cv0``:
greedy ensemble selection, 20 rounds, on leave-one-out (<= 40 labels) or 5-fold held-out log-loss; ``cv1``: the
same starting from one copy of each member; ``cvN``: three copies of each, ``n_labeled`` rounds; ``sw``: uniform
when a class has fewer than 3 labels, ``cv0`` otherwise; ``swgeo``: as ``sw`` with a geometric mean).

Selection: for each task left out, the candidate with the best criterion on the other three (mean gap closed at
10 % of labels, G = (ours - best baseline) / (best baseline at 100 % - best baseline at 10 %), minus a penalty of
10 per unit that a task's 100 %-label score falls more than 0.02 below the best baseline), scored on the task left
out. The shipped default is the candidate chosen on all four (``sw_g+pc8+ls``).

Run: ``python dev/ensemble_selection.py --data-dir ../shared/data --cache /tmp/skssl_selection``
(about 20 minutes on 2 CPU cores, most of it pre-training the embedders; the cache makes re-runs seconds).
"""

import argparse
import os
import time
import warnings

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skssl import ContrastiveEmbedder, MaskedAutoencoder
from skssl.benchmark import labeled_subsets, train_test_indices
from skssl.benchmark._datasets import load_benchmark_data
from skssl.benchmark._protocol import encode_labels
from skssl.preprocessing import HighlyVariableGenes

TASKS = {
    "tcga": ("tcga_acc.RNASeq2GeneNorm", "C1A.C1B"),
    "bladder": ("bladderbatch", "cancer"),
    "hsmm": ("hsmm_myoblast", "Hours"),
    "synthetic": (None, None),
}
EMBEDDERS = {"mae@0": MaskedAutoencoder, "scarf@0": ContrastiveEmbedder}
FRACTIONS = (0.1, 1.0)


def build_cache(task, seeds, data_dir, cache, embedders=EMBEDDERS):
    """Write the benchmark's split, labeled subsets, top 2 000 genes and ``embedders``' outputs of each seed."""
    data, column = TASKS[task]
    loaded = load_benchmark_data(data, label_column=column, data_dir=data_dir)
    X = loaded["X"]
    _, y = encode_labels(loaded["y"])
    for seed in seeds:
        path = os.path.join(cache, f"{task}_{seed}.npz")
        if os.path.exists(path):
            continue
        train, test = train_test_indices(y, random_state=seed)
        X_train, X_test = X[train], X[test]
        if X_train.shape[1] > 2000:
            hvg = HighlyVariableGenes(n_top_genes=2000).fit(X_train)
            X_train, X_test = hvg.transform(X_train), hvg.transform(X_test)
        subsets = labeled_subsets(y[train], FRACTIONS, random_state=seed)
        out = dict(Xtr=X_train, Xte=X_test, ytr=y[train], yte=y[test], **{f"lab{f}": s for f, s in subsets.items()})
        for name, cls in embedders.items():
            start = time.perf_counter()
            embedder = cls(random_state=seed * 100).fit(X_train)
            out[f"Ztr_{name}"], out[f"Zte_{name}"] = embedder.transform(X_train), embedder.transform(X_test)
            print(f"{task} seed {seed} {name}: {time.perf_counter() - start:.1f} s", flush=True)
        np.savez(path, **out)


def linear_member(features, standardise=True, max_iter=2000):
    """Logistic regression on ``features`` (standardised, or as given when the view's scale is the point)."""
    if standardise:
        features = StandardScaler().fit_transform(features)

    def fit_predict(rows, y_rows, predict_rows, n_classes):
        model = LogisticRegression(max_iter=max_iter).fit(features[rows], y_rows)
        proba = np.full((len(predict_rows), n_classes), 1e-9)
        proba[:, model.classes_] = model.predict_proba(features[predict_rows])
        return proba / proba.sum(axis=1, keepdims=True)

    return fit_predict


def spreading_member(points, n_train, k=10, alpha=0.8):
    """Graph over the train rows; a test row takes the mean spread scores of its k nearest train rows."""
    train = points[:n_train]
    kk = min(k, n_train - 1)
    neighbours = NearestNeighbors(n_neighbors=kk + 1).fit(train)
    _, idx = neighbours.kneighbors(train)
    _, test_idx = neighbours.kneighbors(points[n_train:], n_neighbors=kk)
    W = np.zeros((n_train, n_train))
    for i in range(n_train):
        W[i, idx[i, 1:]] = 1
    W = np.maximum(W, W.T)
    d = 1 / np.sqrt(W.sum(axis=1))
    M = np.linalg.inv(np.eye(n_train) - alpha * d[:, None] * W * d[None, :])

    def fit_predict(rows, y_rows, predict_rows, n_classes):
        seeds = np.zeros((n_train, n_classes))
        seeds[rows, y_rows] = 1
        seeds[rows] /= np.bincount(y_rows, minlength=n_classes)[y_rows][:, None]
        scores = np.maximum(M @ seeds, 0) + 1e-9
        scores /= scores.sum(axis=1, keepdims=True)
        return np.vstack([scores, scores[test_idx].mean(axis=1)])[predict_rows]

    return fit_predict


def held_out(member, lab, y, n_classes):
    proba = np.zeros((len(lab), n_classes))
    if len(lab) <= 40:
        folds = [(np.delete(np.arange(len(lab)), i), np.array([i])) for i in range(len(lab))]
    else:
        folds = StratifiedKFold(5, shuffle=True, random_state=0).split(lab, y[lab])
    for a, b in folds:
        if len(np.unique(y[lab[a]])) < 2:
            proba[b] = 1 / n_classes
        else:
            proba[b] = member(lab[a], y[lab[a]], lab[b], n_classes)
    return proba


def greedy(held, y, rounds=20, prior=0):
    names = list(held)
    counts = dict.fromkeys(names, prior)

    def log_lik(c):
        p = sum(c[n] * held[n] for n in names) / sum(c.values())
        return np.mean(np.log(p[np.arange(len(y)), y] + 1e-9))

    for _ in range(rounds):
        best = max(names, key=lambda n: log_lik({**counts, n: counts[n] + 1}))
        counts[best] += 1
    return counts


class Split:
    """One cached split at one labeled fraction, and the views the candidate members are built on."""

    def __init__(self, path, fraction):
        z = self.cache = np.load(path)
        self.X_train, self.X_test, self.y_train, self.y_test = z["Xtr"], z["Xte"], z["ytr"], z["yte"]
        self.lab = z[f"lab{fraction}"]
        self.n_classes = int(max(self.y_train.max(), self.y_test.max()) + 1)
        self.n_train = len(self.y_train)
        self.test = np.arange(self.n_train, self.n_train + len(self.y_test))
        scaler = StandardScaler().fit(self.X_train)
        self.A, self.B = scaler.transform(self.X_train), scaler.transform(self.X_test)

    def genes(self):
        """The standardised genes (scaler fitted on the train rows), train rows then test rows."""
        return np.vstack([self.A, self.B])

    def pcs(self, k, whiten=True, scaled=True):
        """The top ``k`` principal components of the train rows' standardised (or, not ``scaled``, centred)
        genes, train rows then test rows."""
        if scaled:
            a, b = self.A, self.B
        else:
            centre = self.X_train.mean(0)
            a, b = self.X_train - centre, self.X_test - centre
        pca = PCA(min(k, self.n_train - 1, a.shape[1]), whiten=whiten, random_state=0).fit(a)
        return np.vstack([pca.transform(a), pca.transform(b)])

    def test_predictions(self, members):
        """Each member fitted on the labeled rows: its class probabilities of the test rows."""
        labeled = self.y_train[self.lab]
        return {m: f(self.lab, labeled, self.test, self.n_classes) for m, f in members.items()}

    def held_out_predictions(self, members):
        """Each member's held-out class probabilities of the labeled rows (what the greedy weights are chosen on)."""
        return {m: held_out(f, self.lab, self.y_train, self.n_classes) for m, f in members.items()}

    def baselines(self):
        return baselines(self.X_train, self.X_test, self.y_train, self.lab)

    def shipped_weighting(self, test_proba, held, names):
        return shipped_weighting(test_proba, held, names, self.y_train[self.lab], self.n_classes)

    def macro_f1(self, predictions):
        """Macro-F1 on the test rows of each entry of ``predictions`` (class probabilities)."""
        labels = np.arange(self.n_classes)
        return {
            m: f1_score(self.y_test, p.argmax(1), average="macro", labels=labels, zero_division=0)
            for m, p in predictions.items()
        }


def evaluate(path, fraction):
    split = Split(path, fraction)
    z, lab, y_train, n_train = split.cache, split.lab, split.y_train, split.n_train
    pcs = split.pcs

    members = {
        "genes": linear_member(split.genes()),
        "pc8": linear_member(pcs(8)),
        "pc4": linear_member(pcs(4)),
        "pc16": linear_member(pcs(16)),
        "ls10": spreading_member(pcs(10, whiten=False), n_train),
        "pcad": linear_member(pcs(int(np.clip(len(lab) // 3, 2, 32)))),
    }
    embeddings = list(EMBEDDERS)
    for name in embeddings:
        members[name] = linear_member(np.vstack([z["Ztr_" + name], z["Zte_" + name]]))
    test_proba, held = split.test_predictions(members), split.held_out_predictions(members)
    out = {**test_proba, **split.baselines()}
    combos = {
        "g+pc8+ls": ["genes", "pc8", "ls10"],
        "g+pc8+ls+emb": ["genes", "pc8", "ls10", *embeddings],
        "g+pcad+ls": ["genes", "pcad", "ls10"],
        "g+pcad+ls+emb": ["genes", "pcad", "ls10", *embeddings],
        "g+pc8+pcad+ls+emb": ["genes", "pc8", "pcad", "ls10", *embeddings],
        "all": list(members),
    }
    fewest = np.bincount(y_train[lab]).min()
    for combo, names in combos.items():
        out["avg_" + combo] = np.mean([test_proba[m] for m in names], axis=0)
        for prior in (0, 1):
            w = greedy({m: held[m] for m in names}, y_train[lab], prior=prior)
            out[f"cv{prior}_{combo}"] = sum(w[m] * test_proba[m] for m in names) / sum(w.values())
        w = greedy({m: held[m] for m in names}, y_train[lab], rounds=len(lab), prior=3)
        out["cvN_" + combo] = sum(w[m] * test_proba[m] for m in names) / sum(w.values())
        out["sw_" + combo] = out["avg_" + combo] if fewest < 3 else out["cv0_" + combo]
        # Geometric instead of arithmetic mean below 3 labels per class (less swayed by one confident member).
        log_mean = np.mean([np.log(np.clip(test_proba[m], 1e-9, None)) for m in names], axis=0)
        geo = np.exp(log_mean - log_mean.max(axis=1, keepdims=True))
        out["swgeo_" + combo] = geo / geo.sum(axis=1, keepdims=True) if fewest < 3 else out["cv0_" + combo]
    return split.macro_f1(out)


def baselines(X_train, X_test, y_train, lab):
    """Test-split class probabilities of the benchmark's two baselines: ``logreg`` (standardised genes of the
    labeled rows) and ``pca_logreg`` (32 principal components of every train row, logistic regression on the
    labeled ones)."""
    logreg = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X_train[lab], y_train[lab])
    pca = make_pipeline(StandardScaler(), PCA(min(32, len(X_train) - 1), random_state=0)).fit(X_train)
    on_pcs = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    on_pcs.fit(pca.transform(X_train)[lab], y_train[lab])
    return {"logreg": logreg.predict_proba(X_test), "pca_logreg": on_pcs.predict_proba(pca.transform(X_test))}


def shipped_weighting(test_proba, held, names, y_labeled, n_classes):
    """The shipped ensemble's average of the members ``names``: uniform when a class has fewer than 3 labels,
    otherwise weighted by greedy selection on their held-out predictions of the labeled rows."""
    if np.bincount(y_labeled, minlength=n_classes).min() < 3:
        return np.mean([test_proba[m] for m in names], axis=0)
    weights = greedy({m: held[m] for m in names}, y_labeled)
    return sum(weights[m] * test_proba[m] for m in names) / sum(weights.values())


def score_splits(evaluate, cache, seeds, tasks=tuple(TASKS)):
    """``evaluate(path, fraction)`` on the cached split of each task and seed, at each fraction; keyed
    ``(task, seed index, fraction)`` as ``print_gap_table`` and ``criterion`` read it."""
    return {
        (task, i, fraction): evaluate(os.path.join(cache, f"{task}_{seed}.npz"), fraction)
        for task in tasks
        for i, seed in enumerate(seeds)
        for fraction in FRACTIONS
    }


def print_gap_table(res, tasks, n_seeds):
    """Mean macro-F1 per task and fraction, G per task, mean G and the seeds above the better baseline at 10 %."""
    methods = list(next(iter(res.values())))
    print(f"mean macro-F1 over {n_seeds} seeds; G at 10 %; seeds above the better baseline at 10 %")
    header = "".join(f"{t[:7] + '@' + format(f, 'g'):>12s}" for t in tasks for f in FRACTIONS)
    print(f"{'candidate':16s}{header}  {'G per task':>23s}  mean G  wins")
    for m in methods:
        cells = [np.mean([res[(t, s, f)][m] for s in range(n_seeds)]) for t in tasks for f in FRACTIONS]
        gaps = [gap_stats(res, t, m)[0] for t in tasks]
        wins = [
            sum(
                res[(t, s, 0.1)][m] > max(res[(t, s, 0.1)]["logreg"], res[(t, s, 0.1)]["pca_logreg"])
                for s in range(n_seeds)
            )
            for t in tasks
        ]
        cells_text = "".join(f"{c:12.3f}" for c in cells)
        print(f"{m:16s}{cells_text}  " + " ".join(f"{g:+.2f}" for g in gaps) + f"  {np.mean(gaps):+.3f}  {wins}")


def gap_stats(res, task, method):
    def mean(fraction, m):
        return np.mean([v[m] for (t, _, f), v in res.items() if t == task and f == fraction])

    best10 = max(mean(0.1, "logreg"), mean(0.1, "pca_logreg"))
    best100 = max(mean(1.0, "logreg"), mean(1.0, "pca_logreg"))
    return (mean(0.1, method) - best10) / (best100 - best10), mean(0.1, method) - best10, mean(1.0, method) - best100


def criterion(res, tasks, method):
    stats = [gap_stats(res, t, method) for t in tasks]
    return np.mean([g for g, _, _ in stats]) - 10 * sum(max(0.0, -0.02 - d100) for _, _, d100 in stats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--cache", default="/tmp/skssl_selection")
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    os.makedirs(args.cache, exist_ok=True)
    tasks = list(TASKS)
    for task in tasks:
        build_cache(task, range(args.seeds), args.data_dir, args.cache)
    res = score_splits(evaluate, args.cache, range(args.seeds), tasks)
    methods = list(next(iter(res.values())))
    print(f"\nmean macro-F1 over {args.seeds} seeds")
    print(f"{'candidate':22s}" + "".join(f"{t + '@' + format(f, 'g'):>14s}" for t in tasks for f in FRACTIONS))
    for m in methods:
        cells = [
            np.mean([v[m] for (t, _, f), v in res.items() if t == task and f == fr])
            for task in tasks
            for fr in FRACTIONS
        ]
        print(f"{m:22s}" + "".join(f"{c:14.3f}" for c in cells))
    candidates = [m for m in methods if m not in ("logreg", "pca_logreg")]
    print("\nleave-one-dataset-out: chosen on the other three, scored on the one left out")
    print(f"{'left out':10s} {'chosen':22s} {'G':>6s} {'d@10%':>7s} {'d@100%':>7s}")
    for task in tasks:
        others = [t for t in tasks if t != task]
        chosen = max(candidates, key=lambda m: criterion(res, others, m))
        g, d10, d100 = gap_stats(res, task, chosen)
        print(f"{task:10s} {chosen:22s} {g:+6.2f} {d10:+7.3f} {d100:+7.3f}")
    chosen = max(candidates, key=lambda m: criterion(res, tasks, m))
    print(f"\nchosen on all four: {chosen}")
    for m in sorted(candidates, key=lambda m: -criterion(res, tasks, m))[:8]:
        print(f"  {m:22s} criterion {criterion(res, tasks, m):+.3f}")


if __name__ == "__main__":
    main()
