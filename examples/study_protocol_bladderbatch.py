"""The reference study's protocol on real data: pre-train without labels, fine-tune on few, compare from scratch.

Data: ``bladderbatch`` from ``../shared/data`` (57 bladder samples x 22 283 Affymetrix probes, RMA log2) with the
``cancer`` label (Cancer 40 / Biopsy 9 / Normal 8). For each seed:

1. a stratified split holds out 30 % of the samples for testing;
2. the 2 000 most variable probes *of the training samples* are kept (the test samples play no part);
3. a masked autoencoder (VIME) is pre-trained once on all training samples, without their labels;
4. for each label fraction from 10 % to 100 % (at least one labeled sample per class), the training samples
   outside the fraction are marked unlabeled (a missing label, as pandas' ``Series.where`` gives) and three models
   are fitted:

   - ``SSL + fine-tune``: ``SSLClassifier(strategy="finetune", prefit=True)`` starts from the pre-trained encoder and
     fine-tunes it, with a linear head, on the labeled samples;
   - ``from scratch``: ``SSLClassifier(strategy="finetune", pretrain=False)``, the same network from random weights,
     labeled samples only;
   - ``logistic regression``: standardised probes, labeled samples only.

The table gives the macro-F1 on the held-out samples, mean +- standard deviation over the seeds. What it showed when
written (torch 2.13, CPU): the pre-trained network beats the same network from scratch at every fraction (0.60 vs
0.57 at 10 %, 0.79 vs 0.71 at 100 %), but logistic regression beats both (0.74 at 10 %, 0.92 at 100 %). With 40
training samples there is little to pre-train on, and Cancer vs Normal vs Biopsy is close to linearly separable:
an honest reminder to keep the linear baseline in every comparison.

Run: ``python examples/study_protocol_bladderbatch.py`` (under a minute on 2 CPU cores); needs
``../shared/data`` beside the repository. ``SKSSL_EXAMPLE_QUICK=1`` runs one seed with fewer epochs.
"""

import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skssl import MaskedAutoencoder
from skssl.supervised import SSLClassifier

QUICK = os.environ.get("SKSSL_EXAMPLE_QUICK") == "1"
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
N_GENES = 2000
FRACTIONS = (0.1, 0.25, 0.5, 1.0)
SEEDS = (0,) if QUICK else (0, 1, 2)
PRETRAIN_EPOCHS = 20 if QUICK else 100
FINETUNE_EPOCHS = 20 if QUICK else 100

if not (DATA / "bladderbatch.expression.csv.gz").is_file():
    sys.exit(f"This example needs the shared data folder with bladderbatch ({DATA}); it was not found.")

start = time.perf_counter()
expression = pd.read_csv(DATA / "bladderbatch.expression.csv.gz", index_col=0)
samples = pd.read_csv(DATA / "bladderbatch.samples.csv", index_col=0).loc[expression.index]
X_all = expression.to_numpy(dtype=np.float32)
labels = samples["cancer"].to_numpy()
print(f"{X_all.shape[0]} samples x {X_all.shape[1]} probes; {pd.Series(labels).value_counts().to_dict()}")


def labeled_subset(y, fraction, rng):
    """A random ``fraction`` of each class (at least one sample per class)."""
    keep = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        n_keep = max(1, round(fraction * len(members)))
        keep[rng.choice(members, n_keep, replace=False)] = True
    return keep


# Sizes of the networks; the from-scratch baseline gets the very same architecture from the same embedder.
embedder = MaskedAutoencoder(n_components=16, hidden_dims=(128,), max_epochs=PRETRAIN_EPOCHS, device="cpu")
finetune = dict(strategy="finetune", max_epochs=FINETUNE_EPOCHS, learning_rate=1e-2, device="cpu")

scores = {}  # (fraction, method) -> list of macro-F1, one per seed
n_labeled = {}
for seed in SEEDS:
    train, test = train_test_split(np.arange(len(labels)), test_size=0.3, stratify=labels, random_state=seed)
    # Probe selection on the training samples only, so nothing about the test samples leaks into the features.
    genes = np.argsort(X_all[train].var(axis=0))[-N_GENES:]
    X_train, X_test = X_all[np.ix_(train, genes)], X_all[np.ix_(test, genes)]
    y_train, y_test = labels[train], labels[test]

    pretrained = embedder.set_params(random_state=seed).fit(X_train)  # all training samples, no labels
    rng = np.random.default_rng(seed)
    for fraction in FRACTIONS:
        keep = labeled_subset(y_train, fraction, rng)
        y_semi = pd.Series(y_train).where(keep)  # unlabeled samples: a missing label
        n_labeled.setdefault(fraction, []).append(int(keep.sum()))
        models = {
            "SSL + fine-tune": SSLClassifier(pretrained, prefit=True, random_state=seed, **finetune),
            "from scratch": SSLClassifier(embedder, pretrain=False, random_state=seed, **finetune),
            "logistic regression": make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
        }
        for method, model in models.items():
            if method == "logistic regression":
                model.fit(X_train[keep], y_train[keep])
            else:
                model.fit(X_train, y_semi)
            score = f1_score(y_test, model.predict(X_test), average="macro")
            scores.setdefault((fraction, method), []).append(score)

methods = ["SSL + fine-tune", "from scratch", "logistic regression"]
print(f"\nHeld-out macro-F1 (mean +- sd over {len(SEEDS)} seed(s); {len(test)} test samples per seed)\n")
print(f"{'labels':>8} {'n':>5} " + " ".join(f"{m:>21}" for m in methods))
for fraction in FRACTIONS:
    cells = []
    for method in methods:
        values = np.array(scores[(fraction, method)])
        cells.append(f"{values.mean():>14.3f} +- {values.std():.3f}")
    print(f"{fraction:>8.0%} {np.mean(n_labeled[fraction]):>5.1f} " + " ".join(cells))
print(f"\n({time.perf_counter() - start:.0f} s)")
