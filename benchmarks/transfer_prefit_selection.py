"""How to use a pre-trained embedder on a small cohort (issue 23, item 5): candidate ways, scored on a compendium
the shipped transfer benchmark does not use (make_compendium(random_state=1); the benchmark reports random_state=0).

Pre-trains a default MaskedAutoencoder once on the pool (plain, and with the pool's studies as ``batch``), saves
them with skssl.save_model, then scores on every held-out cohort study, paired over seeds (same split and labeled
rows for every candidate), macro-F1 at 1-100 % of the labels:

- ``probe``: StandardScaler + LogisticRegression on the embedding, both fitted on the labeled rows (a Pipeline);
- ``probe_cohort_scaled``: LogisticRegression on the embedding standardised with all the cohort's train rows;
- ``prefit``: SSLClassifier(FrozenEstimator(embedder)) with its defaults (genes, pcs, graph, embedding);
- ``prefit_embedding_only``: SSLClassifier(..., members=("embedding",));
- ``prefit_embedding_graph``: SSLClassifier(..., members=("embedding", "graph"));
- ``logreg``: the cohort-genes baseline.

Public API only. Usage: ``python benchmarks/transfer_prefit_selection.py --out /tmp/sel [--seeds 10]``.
"""

import argparse
import json
import os
import time

import numpy as np
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skssl import MaskedAutoencoder, SSLClassifier, load_model, make_compendium, save_model
from skssl.benchmark import labeled_subsets, train_test_indices

FRACTIONS = (0.01, 0.05, 0.1, 0.2, 1.0)


def candidates(embedder, X_train, y_semi, labeled, y_lab, X_test, seed):
    out = {}
    Z_train, Z_test = embedder.transform(X_train), embedder.transform(X_test)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(Z_train[labeled], y_lab)
    out["probe"] = probe.predict(Z_test)
    scaler = StandardScaler().fit(Z_train)
    lr = LogisticRegression(max_iter=2000).fit(scaler.transform(Z_train[labeled]), y_lab)
    out["probe_cohort_scaled"] = lr.predict(scaler.transform(Z_test))
    frozen = FrozenEstimator(embedder)
    for name, members in (
        ("prefit", None),
        ("prefit_embedding_only", ("embedding",)),
        ("prefit_embedding_graph", ("embedding", "graph")),
    ):
        out[name] = SSLClassifier(frozen, members=members, random_state=seed).fit(X_train, y_semi).predict(X_test)
    genes = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X_train[labeled], y_lab)
    out["logreg"] = genes.predict(X_test)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--random-state", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    data = make_compendium(
        n_studies=100,
        samples_per_study=200,
        n_genes=2000,
        n_cohort_samples=1000,
        n_cohort_studies=5,
        random_state=args.random_state,
        pool_path=os.path.join(args.out, "pool.npy"),
    )
    embedders = {}
    for name, batch in (("plain", None), ("study", data.study_pool)):
        path = os.path.join(args.out, f"vime_{name}.skssl")
        if not os.path.exists(path):
            start = time.perf_counter()
            model = MaskedAutoencoder(random_state=0)
            model.fit(data.X_pool) if batch is None else model.fit(data.X_pool, batch=batch)
            save_model(model, path)
            print(f"pre-trained {name} in {time.perf_counter() - start:.0f} s", flush=True)
        embedders[name] = load_model(path)
    scores = {}
    for seed in range(args.seeds):
        cohort = seed % 5
        X, y = data.X_cohort[data.study_cohort == cohort], data.y_cohort[data.study_cohort == cohort]
        train, test = train_test_indices(y, test_size=0.3, random_state=seed)
        subsets = labeled_subsets(y[train], FRACTIONS, random_state=seed)
        for fraction, labeled in subsets.items():
            y_semi = np.full(len(train), -1)
            y_semi[labeled] = y[train][labeled]
            for emb_name, embedder in embedders.items():
                preds = candidates(embedder, X[train], y_semi, labeled, y[train][labeled], X[test], seed)
                for name, pred in preds.items():
                    key = f"{emb_name}:{name}" if name != "logreg" else "logreg"
                    f1 = f1_score(y[test], pred, average="macro")
                    scores.setdefault(f"{key}@{fraction:g}", {})[seed] = f1
        print(f"seed {seed} done", flush=True)
    with open(os.path.join(args.out, "scores.json"), "w") as f:
        json.dump(scores, f, indent=1)
    names = sorted({k.split("@")[0] for k in scores})
    print("candidate".ljust(40) + "".join(f"{f:>8g}" for f in FRACTIONS))
    for name in names:
        row = [np.mean(list(scores[f"{name}@{f:g}"].values())) for f in FRACTIONS]
        print(name.ljust(40) + "".join(f"{v:8.3f}" for v in row))


if __name__ == "__main__":
    main()
