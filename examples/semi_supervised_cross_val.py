"""Cross-validate a semi-supervised classifier on real data: TCGA adrenocortical carcinoma (ACC) subtypes.

Data: ``tcga_acc.RNASeq2GeneNorm`` from ``../shared/data`` (79 tumours x 198 genes, RSEM-normalised, ``log1p``
applied here) with the ``C1A.C1B`` subtype labels (C1A 43 / C1B 35 / 1 missing). To mimic a study where only
some samples are annotated, the labels of ``HIDDEN`` of the tumours are hidden: their label becomes ``-1``,
scikit-learn's marker of an unlabeled sample (the tumour without a subtype call is unlabeled too).

``cross_val_score`` then works as usual: each training fold holds labeled *and* unlabeled tumours, and every
semi-supervised model uses both. A model can only be scored where the truth is known, so the scorer below ignores
the unlabeled tumours of each test fold. Compared, under the same folds:

- ``SSLClassifier()``: the default semi-supervised ensemble (linear models on the genes and on principal
  components of all training tumours, label spreading over their nearest-neighbour graph);
- ``SSLClassifier(strategy="finetune")``: VIME pre-training on all training tumours, then fine-tuning on the
  labeled ones (the reference study's protocol);
- ``SSLClassifier(strategy="finetune", pretrain=False)``: the same network trained on the labeled tumours only
  (supervised baseline);
- ``SelfTrainingClassifier(LogisticRegression)``: scikit-learn's pseudo-labelling, also semi-supervised.

Run: ``python examples/semi_supervised_cross_val.py`` (under a minute on 2 CPU cores). Needs ``../shared/data``
beside the repository; ``SKSSL_EXAMPLE_QUICK=1`` for fewer folds and epochs.
"""

import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.semi_supervised import SelfTrainingClassifier

from skssl import MaskedAutoencoder, SSLClassifier

QUICK = os.environ.get("SKSSL_EXAMPLE_QUICK") == "1"
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HIDDEN = 0.5  # fraction of the labeled tumours whose label is hidden
N_FOLDS = 3 if QUICK else 5

if not (DATA / "tcga_acc.RNASeq2GeneNorm.expression.csv.gz").is_file():
    sys.exit(f"This example needs the shared data folder ({DATA}); it was not found.")

expression = pd.read_csv(DATA / "tcga_acc.RNASeq2GeneNorm.expression.csv.gz", index_col=0)
samples = pd.read_csv(DATA / "tcga_acc.RNASeq2GeneNorm.samples.csv", index_col=0).loc[expression.index]
X = np.log1p(expression.to_numpy(dtype=np.float32))
subtype = samples["C1A.C1B"]
print(f"{X.shape[0]} tumours x {X.shape[1]} genes; subtypes: {subtype.value_counts(dropna=False).to_dict()}")

# Labels as integer codes, -1 for unlabeled: the missing subtype call, and a random half of the others.
classes = np.array(sorted(subtype.dropna().unique()))
y = np.full(len(subtype), -1)
known = subtype.notna().to_numpy()
y[known] = np.searchsorted(classes, subtype[known].to_numpy())
rng = np.random.default_rng(0)
y[rng.choice(np.flatnonzero(known), int(HIDDEN * known.sum()), replace=False)] = -1
print(f"labeled: {(y >= 0).sum()}, unlabeled: {(y < 0).sum()} (codes 0, 1 = {', '.join(map(str, classes))})\n")


def labeled_balanced_accuracy(model, X_test, y_test):
    """Balanced accuracy on the test tumours with a known label (unlabeled ones cannot be scored)."""
    keep = y_test != -1
    return balanced_accuracy_score(y_test[keep], model.predict(X_test[keep]))


epochs = {"max_epochs": 3 if QUICK else 100}
embedder = MaskedAutoencoder(n_components=16, hidden_dims=(64,), random_state=0, **epochs)
# Fine-tuning for a fixed number of epochs: about 30 labeled tumours per training fold are too few to hold some out
# for early stopping.
fine_tune = {"strategy": "finetune", **epochs, "early_stopping": False, "random_state": 0}
models = {
    "SSLClassifier() (default ensemble)": SSLClassifier(random_state=0),
    "SSLClassifier (VIME fine-tuned)": SSLClassifier(embedder, **fine_tune),
    "SSLClassifier(pretrain=False)": SSLClassifier(embedder, pretrain=False, **fine_tune),
    "SelfTraining(LogisticRegression)": SelfTrainingClassifier(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    ),
}
# Stratifying on y spreads the labeled tumours of each class, and the unlabeled ones, evenly over the folds.
cv = StratifiedKFold(N_FOLDS, shuffle=True, random_state=0)
print(f"{'model':<34} {'balanced accuracy (mean +- sd over folds)':>42} {'time (s)':>9}")
for name, model in models.items():
    start = time.perf_counter()
    scores = cross_val_score(model, X, y, cv=cv, scoring=labeled_balanced_accuracy)
    print(f"{name:<34} {np.mean(scores):>30.3f} +- {np.std(scores):.3f}  {time.perf_counter() - start:9.1f}")
print(
    f"\n({N_FOLDS}-fold cross-validation, about {(y >= 0).sum() // N_FOLDS} labeled tumours per test fold, so the "
    "spread is large; chance level 0.5)"
)
