"""Quickstart: a self-supervised embedder in a scikit-learn Pipeline, and what pre-training on unlabeled samples buys.

The scenario of a typical expression study: many profiles, few of them with a phenotype label. We simulate a cohort
with :func:`skssl.make_expression` (log-CPM values, 3 phenotype classes), keep a quarter of it as a test set and
pretend that only ``N_PER_CLASS`` training samples per class are labeled. We then compare, on the test set:

1. ``raw``: logistic regression on the standardised genes, fitted on the labeled samples;
2. ``pca``: PCA fitted on *all* training samples (labels unused), logistic regression on the labeled ones;
3. ``ssl pipeline``: ``Pipeline([MaskedAutoencoder, LogisticRegression])`` fitted on the labeled samples only -- the
   plain scikit-learn way, with nothing but the labeled rows;
4. ``ssl pre-trained``: the same embedder pre-trained on *all* training samples (labels unused), then frozen
   (:class:`sklearn.frozen.FrozenEstimator`) in front of the logistic regression;
5. ``SSLClassifier finetune``: :class:`skssl.SSLClassifier` with ``strategy="finetune"`` puts a linear head on the
   pre-trained encoder and fine-tunes both on the labeled samples. Unlabeled rows are marked by ``y == -1``; with
   ``prefit=True`` it reuses the embedder pre-trained in 4. (with ``prefit=False`` its ``fit`` would pre-train a
   copy on all rows itself);
6. ``SSLClassifier()``: the recommended start, the default semi-supervised ensemble (linear models on the genes and
   on principal components of all training samples, label spreading over their nearest-neighbour graph), fitted on
   every training sample with ``-1`` for the unlabeled ones.

Run: ``python examples/quickstart_pipeline.py`` (under a minute on 2 CPU cores). ``SKSSL_EXAMPLE_QUICK=1`` shrinks
everything for the test suite. The numbers depend on the data; PCA is a strong baseline on this simulated cohort.
"""

import os
import time

import numpy as np
from sklearn.decomposition import PCA
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from skssl import MaskedAutoencoder, SSLClassifier, make_expression

QUICK = os.environ.get("SKSSL_EXAMPLE_QUICK") == "1"
N_SAMPLES, N_GENES = (150, 100) if QUICK else (800, 1000)
N_PER_CLASS = 5 if QUICK else 10

X, y = make_expression(n_samples=N_SAMPLES, n_genes=N_GENES, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
rng = np.random.default_rng(0)
labeled = np.concatenate([rng.choice(np.flatnonzero(y_train == c), N_PER_CLASS, replace=False) for c in range(3)])
print(
    f"{len(X_train)} training profiles x {N_GENES} genes, {len(labeled)} of them labeled; {len(X_test)} test profiles"
)


def make_embedder():
    if QUICK:
        return MaskedAutoencoder(n_components=8, hidden_dims=(32,), max_epochs=3, random_state=0)
    # The defaults size the network, batch and number of epochs to the data, and stop early on a validation loss.
    return MaskedAutoencoder(random_state=0)


def probe():
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))


models = {}
# 1. Raw genes.
models["raw"] = probe()
# 2. PCA pre-fitted on every training profile (no labels), then frozen.
models["pca"] = make_pipeline(FrozenEstimator(PCA(32, random_state=0).fit(X_train)), probe())
# 3. The plain Pipeline: embedder and classifier both fitted on the labeled rows.
models["ssl pipeline"] = Pipeline([("ssl", make_embedder()), ("clf", probe())])
# 4. Pre-train on every training profile (no labels), freeze, fit the classifier on the labeled rows.
start = time.perf_counter()
embedder = make_embedder().fit(X_train)
print(f"pre-training the MaskedAutoencoder on {len(X_train)} profiles: {time.perf_counter() - start:.1f} s")
models["ssl pre-trained"] = Pipeline([("ssl", FrozenEstimator(embedder)), ("clf", probe())])

print(f"\n{'model':<18} {'accuracy':>9} {'balanced acc.':>14} {'fit (s)':>8}")
for name, model in models.items():
    start = time.perf_counter()
    model.fit(X_train[labeled], y_train[labeled])
    seconds = time.perf_counter() - start
    pred = model.predict(X_test)
    print(f"{name:<18} {np.mean(pred == y_test):9.3f} {balanced_accuracy_score(y_test, pred):14.3f} {seconds:8.1f}")

# 5. Fine-tune the pre-trained encoder with a linear head. -1 marks the unlabeled rows: with prefit=False they would
# pre-train a fresh copy of the embedder inside fit; with prefit=True the embedder of step 4 is reused as is.
y_semi = np.full_like(y_train, -1)
y_semi[labeled] = y_train[labeled]
start = time.perf_counter()
# A fixed number of epochs without early stopping: 3 held-out labels are too few to choose an epoch.
clf = SSLClassifier(
    embedder, strategy="finetune", prefit=True, max_epochs=4 if QUICK else 100, early_stopping=False, random_state=0
)
clf.fit(X_train, y_semi)
seconds = time.perf_counter() - start
pred = clf.predict(X_test)
print(
    f"{'SSLClassifier ft':<18} {np.mean(pred == y_test):9.3f} "
    f"{balanced_accuracy_score(y_test, pred):14.3f} {seconds:8.1f}"
)

# 6. The default ensemble: every training row shapes it, the labeled ones train it.
start = time.perf_counter()
pred = SSLClassifier(random_state=0).fit(X_train, y_semi).predict(X_test)
seconds = time.perf_counter() - start
print(
    f"{'SSLClassifier()':<18} {np.mean(pred == y_test):9.3f} "
    f"{balanced_accuracy_score(y_test, pred):14.3f} {seconds:8.1f}"
)
print("\n(chance level: 0.333)")
