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

from skssl import MaskedAutoencoder

TASKS = ["tcga", "bladder", "hsmm", "synthetic"]
FRACTIONS = (0.1, 1.0)


def evaluate(path, seed, n_members, fraction, embeddings):
    split = es.Split(path, fraction)
    members = {
        "genes": es.linear_member(split.genes()),
        "pc8": es.linear_member(split.pcs(8)),
        "ls10": es.spreading_member(split.pcs(10, whiten=False), split.n_train),
    }
    probes = [es.linear_member(E) for E in embeddings]

    def seed_average(count):
        def fit_predict(rows, y_rows, predict_rows, k):
            return np.mean([p(rows, y_rows, predict_rows, k) for p in probes[:count]], axis=0)

        return fit_predict

    members["mae_x1"] = seed_average(1)
    members[f"mae_x{n_members}"] = seed_average(n_members)
    test_proba, held = split.test_predictions(members), split.held_out_predictions(members)
    out = {**test_proba, **split.baselines()}
    base = ["genes", "pc8", "ls10"]
    out["ship"] = split.shipped_weighting(test_proba, held, base)
    out["ship+mae_x1"] = split.shipped_weighting(test_proba, held, [*base, "mae_x1"])
    out[f"ship+mae_x{n_members}"] = split.shipped_weighting(test_proba, held, [*base, f"mae_x{n_members}"])
    return split.macro_f1(out)


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
