"""Regenerate the format-2 fixtures: ensembles saved by skssl 0.2.1, whose ``ensemble_`` was the internal object.

Up to skssl 0.2.1 (format version 2), ``SSLClassifier`` / ``SSLRegressor(strategy="ensemble")`` stored as
``ensemble_`` the internal ``skssl._ensemble.SemiSupervisedEnsemble``; since 0.3.0 (format 3) ``ensemble_`` is a
fitted ``SemiSupervisedEnsembleClassifier`` / ``SemiSupervisedEnsembleRegressor``, and ``load_model`` upgrades
format-2 files to that layout. ``tests/test_persistence_compat.py`` checks that these files still load and predict
exactly as the code that wrote them did. The ``.skssl`` files and ``expected.npz`` (inputs and the old code's
outputs) must come from the OLD code::

    git worktree add /tmp/skssl021 be5252f
    PYTHONPATH=/tmp/skssl021 python tests/data/format2/make_format2_fixtures.py
    git worktree remove /tmp/skssl021 --force

(run from the repository root). The script refuses to run on any other skssl than 0.2.1.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import torch

import skssl

HERE = os.path.dirname(os.path.abspath(__file__))
SMALL = {"n_components": 3, "hidden_dims": (8,), "max_epochs": 2, "random_state": 0, "device": "cpu"}


def _check_old_skssl():
    if skssl.__version__ != "0.2.1" or hasattr(skssl, "SemiSupervisedEnsembleClassifier"):
        raise SystemExit(
            f"This is skssl {skssl.__version__} from {skssl.__file__}: run the script with PYTHONPATH pointing at a "
            "checkout of commit be5252f (see the module docstring)."
        )


def main():
    _check_old_skssl()
    torch.set_num_threads(1)
    X, y = skssl.make_expression(n_samples=60, n_genes=15, random_state=0)
    X = pd.DataFrame(np.asarray(X, dtype=np.float32), columns=[f"g{i}" for i in range(X.shape[1])])
    y_few = np.full_like(y, -1)  # 2 labels per class: uniform weights
    for label in np.unique(y):
        y_few[np.flatnonzero(y == label)[:2]] = label
    y_many = np.asarray(y).copy()
    y_many[::4] = -1  # 45 labels: weights from 5-fold held-out predictions
    names = np.array(["basal", "her2", "luminal"], dtype=object)[y_many.clip(0)]
    names[y_many == -1] = None  # string classes, None marking the unlabeled rows
    target = X["g0"].to_numpy(dtype=float) * 2.0 + 1.0
    target[15:] = np.nan  # 15 targets: leave-one-out weights
    embedder = skssl.MaskedAutoencoder(**SMALL).fit(X)
    every = ("genes", "pcs", "graph", "embedding")
    models = {
        "clf_ensemble": skssl.SSLClassifier(random_state=0).fit(X, y_few),
        "clf_ensemble_weighted": skssl.SSLClassifier(class_weight="balanced", random_state=0).fit(X, names),
        "clf_ensemble_prefit": skssl.SSLClassifier(embedder, prefit=True, members=every, random_state=0).fit(X, y_many),
        "clf_ensemble_pretrained": skssl.SSLClassifier(skssl.MaskedAutoencoder(**SMALL), random_state=0).fit(X, y_few),
        "reg_ensemble": skssl.SSLRegressor(random_state=0).fit(X, target),
    }
    expected = {"X": X.to_numpy()}
    for name, model in models.items():
        skssl.save_model(model, os.path.join(HERE, f"{name}.skssl"), metadata={"fixture": name})
        predicted = model.predict(X)
        # String classes are held in an object array, which np.load refuses without pickle: stored as str.
        expected[f"{name}.predict"] = predicted.astype(str) if predicted.dtype == object else predicted
        if name.startswith("clf"):
            expected[f"{name}.predict_proba"] = model.predict_proba(X)
        expected[f"{name}.weights"] = np.array([model.weights_[m] for m in model.members_])
    np.savez_compressed(os.path.join(HERE, "expected.npz"), **expected)


if __name__ == "__main__":
    main()
