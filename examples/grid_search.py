"""Tune an embedder and a classifier together with GridSearchCV.

An skssl embedder is an ordinary scikit-learn transformer, so ``GridSearchCV`` can search over its parameters
(``ssl__n_components``, ``ssl__mask_rate``...) and those of the classifier after it (``clf__C``), and even over
*which* embedder to use: a step of a Pipeline is itself a parameter, so one grid can compare PCA, VIME
(:class:`~skssl.MaskedAutoencoder`) and SCARF (:class:`~skssl.ContrastiveEmbedder`) under the same
cross-validation folds. ``n_jobs=2`` fits candidates in two processes; skssl then caps torch at the
``OMP_NUM_THREADS`` that joblib gives each worker, so the two workers do not fight over the cores. The Pipeline's
``memory`` caches each fitted embedder, so candidates that differ only in ``clf__C`` do not train it again (without
it, every value of ``C`` would retrain the embedder on every fold). Once the embedder is chosen, the last part tunes
the classifier alone on a pre-fitted, frozen embedder (``sklearn.frozen.FrozenEstimator``): no embedder training at
all. ``benchmarks/grid_search_time.py`` measures what the two idioms save on real data (README, "Tuning without
refitting the embedder").

Here every model is fitted on labeled profiles only (a fully supervised search); see
``semi_supervised_cross_val.py`` for unlabeled rows and ``quickstart_pipeline.py`` for pre-training on them. To keep
the example under a minute the embedders get a fixed budget of 30 epochs, which on about 140 profiles per training
fold is only some 120 optimisation steps (the default ``max_epochs="auto"`` aims for about 3 000): this grid shows
the mechanics of ``GridSearchCV``, it is not a fair contest between the methods -- the label-efficiency benchmark
(``skssl-benchmark``) is the place for that.

Run: ``python examples/grid_search.py`` (under a minute on 2 CPU cores); ``SKSSL_EXAMPLE_QUICK=1`` for a tiny grid.
"""

import os
import tempfile
import time

import numpy as np
from sklearn.decomposition import PCA
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from skssl import ContrastiveEmbedder, MaskedAutoencoder, make_expression

QUICK = os.environ.get("SKSSL_EXAMPLE_QUICK") == "1"
N_SAMPLES, N_GENES = (90, 60) if QUICK else (300, 1000)
EPOCHS = 2 if QUICK else 30

X, y = make_expression(n_samples=N_SAMPLES, n_genes=N_GENES, random_state=1)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)

common = {"hidden_dims": (128,), "max_epochs": EPOCHS, "random_state": 0}
cache = tempfile.TemporaryDirectory()
pipe = Pipeline(
    [
        ("ssl", MaskedAutoencoder(**common)),
        ("scale", StandardScaler()),
        ("clf", LogisticRegression(max_iter=2000)),
    ],
    memory=cache.name,
)
C_values = [0.1] if QUICK else [0.1, 1.0]
if QUICK:
    grid = [
        {"ssl": [PCA(random_state=0)], "ssl__n_components": [8], "clf__C": C_values},
        {"ssl": [MaskedAutoencoder(**common)], "ssl__n_components": [8], "clf__C": C_values},
    ]
else:
    grid = [
        {"ssl": [PCA(random_state=0)], "ssl__n_components": [8, 32], "clf__C": C_values},
        {"ssl": [MaskedAutoencoder(**common)], "ssl__n_components": [8, 32], "clf__C": C_values},
        {"ssl": [MaskedAutoencoder(**common)], "ssl__n_components": [32], "ssl__mask_rate": [0.5], "clf__C": C_values},
        {"ssl": [ContrastiveEmbedder(**common)], "ssl__n_components": [32], "clf__C": C_values},
    ]

# Two worker processes (one in quick mode, where starting them would cost more than the tiny grid).
search = GridSearchCV(pipe, grid, cv=StratifiedKFold(3, shuffle=True, random_state=0), n_jobs=1 if QUICK else 2)
start = time.perf_counter()
search.fit(X_train, y_train)
cache.cleanup()
n_candidates = len(search.cv_results_["params"])
print(f"{n_candidates} candidates x 3 folds on {len(X_train)} labeled profiles: {time.perf_counter() - start:.1f} s\n")

print(f"{'rank':>4} {'mean CV acc.':>12} {'sd':>6}  candidate")
results = search.cv_results_
for i in np.argsort(results["rank_test_score"], kind="stable"):
    params = results["params"][i]
    name = type(params["ssl"]).__name__
    rest = ", ".join(f"{k.split('__', 1)[1]}={v}" for k, v in params.items() if k != "ssl")
    print(
        f"{results['rank_test_score'][i]:>4} {results['mean_test_score'][i]:12.3f} "
        f"{results['std_test_score'][i]:6.3f}  {name}({rest})"
    )

print(f"\nbest: {type(search.best_params_['ssl']).__name__}, refitted on all {len(X_train)} training profiles")
print(f"test accuracy of the best candidate: {search.score(X_test, y_test):.3f} ({len(X_test)} test profiles)")

# The embedder is chosen; to tune the classifier further, freeze the fitted one (the best candidate's, refitted on
# the training profiles) so that no candidate trains it again. It has seen every training profile (not the labels),
# held-out folds included, so read the test accuracy rather than the CV score.
frozen = Pipeline(
    [
        ("ssl", FrozenEstimator(search.best_estimator_.named_steps["ssl"])),
        ("scale", StandardScaler()),
        ("clf", LogisticRegression(max_iter=2000)),
    ]
)
C_fine = [0.1, 1.0] if QUICK else [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]
start = time.perf_counter()
tuned = GridSearchCV(frozen, {"clf__C": C_fine}, cv=StratifiedKFold(3, shuffle=True, random_state=0)).fit(
    X_train, y_train
)
print(
    f"\n{len(C_fine)} values of C on the frozen embedder: {time.perf_counter() - start:.1f} s; best C "
    f"{tuned.best_params_['clf__C']} (mean CV acc. {tuned.best_score_:.3f}), test accuracy "
    f"{tuned.score(X_test, y_test):.3f}"
)
