"""Pre-train on a large unlabeled cohort, fine-tune on a small labeled one measured on a different gene list.

The usual situation: a big public compendium (thousands of profiles, no phenotype you care about) and your own
small annotated study, quantified with another pipeline, so the two gene lists overlap only partly and come in a
different order. The recipe:

1. pre-train an embedder on the large cohort (a DataFrame: genes as columns);
2. fit a :class:`~skssl.GeneAligner` on the large cohort: it remembers its gene order and, for every gene, the
   value to fill in when a new data set lacks it (``fill_value="mean"``: the gene's mean in the large cohort);
3. in front of the fine-tuned classifier, the aligner maps any DataFrame onto that gene order by column name
   (extra genes dropped, missing genes filled, a warning when many are missing);
4. :class:`~skssl.SSLClassifier` with ``strategy="finetune", prefit=True`` starts from the pre-trained encoder and
   fine-tunes it with a linear head on the labeled samples of the small study.

Both cohorts are simulated here by one :func:`~skssl.make_expression` call (same gene programs) with three
processing batches: batches 0-1 form the large cohort, batch 2 the small study, which has its own batch effect,
loses 15 % of the large cohort's genes, gains 50 genes the large cohort never measured and comes in shuffled
column order. Baselines, on the same labeled samples: logistic regression on the aligned genes, PCA fitted on the
large cohort + logistic regression, and the same network trained from scratch (``pretrain=False``).

Run: ``python examples/pretrain_finetune_gene_aligner.py`` (under a minute on 2 CPU cores); ``SKSSL_EXAMPLE_QUICK=1``
shrinks it for the test suite.
"""

import os
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skssl import GeneAligner, MaskedAutoencoder, SSLClassifier, make_expression

QUICK = os.environ.get("SKSSL_EXAMPLE_QUICK") == "1"
N_SAMPLES, N_GENES = (240, 120) if QUICK else (1200, 1000)
N_LABELED_PER_CLASS = 5 if QUICK else 10

# ---------------------------------------------------------------------------------------------------------------
# Two cohorts with different gene lists (simulated).
X, y, info = make_expression(n_samples=N_SAMPLES, n_genes=N_GENES, n_batches=3, return_info=True, random_state=0)
genes = info.gene_names
rng = np.random.default_rng(0)
in_large = info.batch < 2
large = pd.DataFrame(X[in_large], columns=genes)  # no labels used from this cohort

small_genes = rng.permutation(genes)[: int(0.85 * N_GENES)]  # 15 % of the genes missing, shuffled order
small = pd.DataFrame(X[~in_large], columns=genes)[small_genes]
extra = pd.DataFrame(rng.normal(5, 1, size=(len(small), 50)), columns=[f"NEWGENE{i}" for i in range(50)])
small = pd.concat([small, extra], axis=1)  # 50 genes the large cohort never measured
y_small = y[~in_large]
print(f"large cohort: {large.shape[0]} profiles x {large.shape[1]} genes (unlabeled)")
print(
    f"small study:  {small.shape[0]} profiles x {small.shape[1]} genes, "
    f"{len(set(small.columns) & set(large.columns))} genes shared"
)

# The small study: a labeled training part and a test part.
train, test = train_test_split(np.arange(len(small)), test_size=0.5, stratify=y_small, random_state=0)
labeled = np.concatenate(
    [rng.choice(train[y_small[train] == c], N_LABELED_PER_CLASS, replace=False) for c in np.unique(y_small)]
)
X_lab, y_lab, X_test, y_test = small.iloc[labeled], y_small[labeled], small.iloc[test], y_small[test]
print(f"{len(labeled)} labeled profiles to fine-tune on, {len(test)} test profiles\n")

# ---------------------------------------------------------------------------------------------------------------
# 1-2. Pre-train on the large cohort, fit the aligner there.
if QUICK:
    embedder = MaskedAutoencoder(n_components=8, hidden_dims=(32,), max_epochs=3, random_state=0)
else:
    embedder = MaskedAutoencoder(random_state=0)  # the defaults size the network and epochs to the data
start = time.perf_counter()
aligner = GeneAligner(fill_value="mean").fit(large)
embedder.fit(aligner.transform(large))
print(f"pre-training on the large cohort: {time.perf_counter() - start:.1f} s")

# What the aligner does to the small study:
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    aligned = aligner.transform(small)
print(f"aligned small study: {aligned.shape} (warning: {caught[0].message if caught else 'none'})\n")

# 3-4. Frozen aligner (it keeps the large cohort's gene order and means) + fine-tuned classifier.
# A fixed number of epochs, no early stopping: with 30 labeled samples the validation split early stopping would
# hold out (3 samples) is too small to pick an epoch reliably.
fine_tune_epochs = {"max_epochs": 5 if QUICK else 100, "early_stopping": False}
models = {
    "logistic regression (aligned genes)": make_pipeline(
        FrozenEstimator(aligner), StandardScaler(), LogisticRegression(max_iter=2000)
    ),
    "PCA on large cohort + logistic reg.": make_pipeline(
        FrozenEstimator(aligner),
        FrozenEstimator(PCA(32, random_state=0).fit(aligner.transform(large))),
        StandardScaler(),
        LogisticRegression(max_iter=2000),
    ),
    "from scratch (pretrain=False)": make_pipeline(
        FrozenEstimator(aligner),
        SSLClassifier(embedder, strategy="finetune", pretrain=False, random_state=0, **fine_tune_epochs),
    ),
    "pre-trained, head only": make_pipeline(
        FrozenEstimator(aligner),
        SSLClassifier(embedder, strategy="finetune", prefit=True, finetune="head", random_state=0, **fine_tune_epochs),
    ),
    "pre-trained, fine-tuned": make_pipeline(
        FrozenEstimator(aligner),
        SSLClassifier(embedder, strategy="finetune", prefit=True, finetune="full", random_state=0, **fine_tune_epochs),
    ),
}
print(f"{'model':<38} {'balanced accuracy':>17} {'fit (s)':>8}")
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*target genes.*missing", category=UserWarning)
    for name, model in models.items():
        start = time.perf_counter()
        model.fit(X_lab, y_lab)
        seconds = time.perf_counter() - start
        score = balanced_accuracy_score(y_test, model.predict(X_test))
        print(f"{name:<38} {score:17.3f} {seconds:8.1f}")
print(f"\n(chance level: {1 / len(np.unique(y_small)):.3f})")
