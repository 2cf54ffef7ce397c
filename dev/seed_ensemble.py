"""An ensemble over pre-training seeds as SSLClassifier's embedding member (issue 11, direction 2; not adopted).

Same protocol and cache as ``ensemble_selection.py`` (the benchmark's splits and labeled subsets, top 2 000 genes).
For each task and seed, ``--members`` default ``MaskedAutoencoder`` runs (seeds ``100 * seed + i``, all fitted
afresh with the current code) are pre-trained on the train split; each gives a logistic-regression probe on its
standardised embedding (fitted on the labeled rows), and the probes' class probabilities are averaged (``mae_xN``).
Compared with one run (``mae_x1``), and as the embedding member of the shipped ensemble (``ship+mae_x1``,
``ship+mae_xN``: ``genes + pc8 + ls10`` plus the member, weighted as shipped). The pre-training time per run is
printed: an ensemble of N runs costs N pre-trainings.

Run: ``python dev/seed_ensemble.py --cache /tmp/skssl_selection`` (about 15 minutes on 2 cores for 10 seeds and
3 members).
"""

import argparse
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ensemble_selection as es
import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.metrics import f1_score
from sklearn.preprocessing import StandardScaler

from skssl import MaskedAutoencoder

TASKS = ["tcga", "bladder", "hsmm", "synthetic"]
FRACTIONS = (0.1, 1.0)


def evaluate(path, seed, n_members, fraction, embeddings):
    z = np.load(path)
    X_train, X_test, y_train, y_test = z["Xtr"], z["Xte"], z["ytr"], z["yte"]
    lab = z[f"lab{fraction}"]
    n_classes, n_train = int(max(y_train.max(), y_test.max()) + 1), len(y_train)
    test = np.arange(n_train, n_train + len(y_test))
    scaler = StandardScaler().fit(X_train)
    A, B = scaler.transform(X_train), scaler.transform(X_test)

    def pcs(k, whiten=True):
        pca = PCA(min(k, n_train - 1, A.shape[1]), whiten=whiten, random_state=0).fit(A)
        return np.vstack([pca.transform(A), pca.transform(B)])

    members = {
        "genes": es.linear_member(np.vstack([A, B])),
        "pc8": es.linear_member(pcs(8)),
        "ls10": es.spreading_member(pcs(10, whiten=False), n_train),
    }
    probes = [es.linear_member(E) for E in embeddings]

    def seed_average(count):
        def fit_predict(rows, y_rows, predict_rows, k):
            return np.mean([p(rows, y_rows, predict_rows, k) for p in probes[:count]], axis=0)

        return fit_predict

    members["mae_x1"] = seed_average(1)
    members[f"mae_x{n_members}"] = seed_average(n_members)
    test_proba = {m: f(lab, y_train[lab], test, n_classes) for m, f in members.items()}
    held = {m: es.held_out(f, lab, y_train, n_classes) for m, f in members.items()}
    out = dict(test_proba)
    out.update(es.baselines(X_train, X_test, y_train, lab))

    def shipped_weighting(names):
        return es.shipped_weighting(test_proba, held, names, y_train[lab], n_classes)

    base = ["genes", "pc8", "ls10"]
    out["ship"] = shipped_weighting(base)
    out["ship+mae_x1"] = shipped_weighting([*base, "mae_x1"])
    out[f"ship+mae_x{n_members}"] = shipped_weighting([*base, f"mae_x{n_members}"])
    labels = np.arange(n_classes)
    return {m: f1_score(y_test, p.argmax(1), average="macro", labels=labels, zero_division=0) for m, p in out.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", default="/tmp/skssl_selection")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--members", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    res, seconds = {}, {t: [] for t in TASKS}
    for task in TASKS:
        for seed in range(args.seeds):
            path = os.path.join(args.cache, f"{task}_{seed}.npz")
            z = np.load(path)
            embeddings = []
            for i in range(args.members):
                start = time.perf_counter()
                mae = MaskedAutoencoder(random_state=100 * seed + i).fit(z["Xtr"])
                seconds[task].append(time.perf_counter() - start)
                embeddings.append(np.vstack([mae.transform(z["Xtr"]), mae.transform(z["Xte"])]))
            for fraction in FRACTIONS:
                res[(task, seed, fraction)] = evaluate(path, seed, args.members, fraction, embeddings)
        print(f"{task}: {np.mean(seconds[task]):.1f} s per pre-training (1 torch thread)", flush=True)
    es.print_gap_table(res, TASKS, args.seeds)


if __name__ == "__main__":
    main()
