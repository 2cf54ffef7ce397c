"""Regenerate the format-1 fixtures: models saved by skssl 0.1.0, whose VAE had the pre-package layout.

skssl 0.1.0 (commit aaccde5) wrote its VAE networks with other state-dict keys than the VAEModule of
``skssl/vae/`` (commit 278a9e0), and kept the library-size statistics of a single-view negative-binomial model on
the estimator only; ``tests/test_persistence_compat.py`` checks that such files still load and predict as they did.
The ``.skssl`` files and ``expected.npz`` (the inputs and the outputs of the old code) must come from the OLD code::

    git worktree add /tmp/oldskssl aaccde5
    PYTHONPATH=/tmp/oldskssl python tests/data/format1/make_fixtures.py
    git worktree remove /tmp/oldskssl --force

(run from the repository root). The script refuses to run on any other skssl than the single-module VAE of 0.1.0.
"""

from __future__ import annotations

import os

import numpy as np
import torch

import skssl

HERE = os.path.dirname(os.path.abspath(__file__))
N_ROWS, N_GENES = 30, 12
SMALL = {"n_components": 2, "hidden_dims": (8,), "max_epochs": 2, "random_state": 0, "device": "cpu"}


def _check_old_skssl():
    vae_path = skssl.vae.__file__
    if skssl.__version__ != "0.1.0" or os.path.basename(vae_path) != "vae.py":
        raise SystemExit(
            f"This is skssl {skssl.__version__} from {skssl.__file__} (VAE in {vae_path}): run the script with "
            "PYTHONPATH pointing at a checkout of commit aaccde5 (see the module docstring)."
        )


def _data():
    counts, y = skssl.make_expression(n_samples=N_ROWS, n_genes=N_GENES, output="counts", random_state=0)
    counts = counts.astype(np.float32)
    log_data = np.log1p(counts).astype(np.float32)
    # Three views: log-expression (gaussian), counts (nb) and 0/1 calls (bernoulli); for the embedder some rows
    # lack a view (the classifiers of 0.1.0 refuse NaN).
    complete_views = np.hstack(
        [log_data[:, :5], counts[:, 5:9], (counts[:, 9:] > np.median(counts[:, 9:])).astype(np.float32)]
    )
    views_data = complete_views.copy()
    views_data[:4, 5:9] = np.nan
    views_data[4:7, 9:] = np.nan
    return counts, log_data, views_data, complete_views, y


def _embedder_outputs(name, model, X, expected):
    expected[f"{name}.X"] = X
    Z = model.transform(X)
    expected[f"{name}.transform"] = Z
    expected[f"{name}.inverse_transform"] = model.inverse_transform(Z)
    expected[f"{name}.score_samples"] = model.score_samples(X)
    expected[f"{name}.sample"] = model.sample(3, random_state=0)


def _classifier_outputs(name, model, X, expected):
    expected[f"{name}.X"] = X
    expected[f"{name}.predict"] = model.predict(X)
    expected[f"{name}.predict_proba"] = model.predict_proba(X)


def _regressor_outputs(name, model, X, expected):
    expected[f"{name}.X"] = X
    expected[f"{name}.predict"] = model.predict(X)


def main():
    _check_old_skssl()
    torch.set_num_threads(1)
    counts, log_data, views_data, complete_views, y = _data()
    views = {
        "rna": slice(0, 5),
        "counts": {"columns": slice(5, 9), "likelihood": "nb"},
        "calls": {"columns": slice(9, 12), "likelihood": "bernoulli"},
    }
    y_partial = y.copy()
    y_partial[::3] = -1  # unlabeled rows, as semi-supervised fits have
    models = {
        "vae_gaussian": (skssl.VAEEmbedder(**SMALL).fit(log_data), log_data, _embedder_outputs),
        "vae_nb": (skssl.VAEEmbedder(likelihood="nb", **SMALL).fit(counts), counts, _embedder_outputs),
        "vae_views": (skssl.VAEEmbedder(views=views, **SMALL).fit(views_data), views_data, _embedder_outputs),
        "clf_finetune_vae": (
            skssl.SSLClassifier(
                skssl.VAEEmbedder(**SMALL), strategy="finetune", max_epochs=2, random_state=0, device="cpu"
            ).fit(log_data, y_partial),
            log_data,
            _classifier_outputs,
        ),
        "clf_finetune_vae_views": (
            skssl.SSLClassifier(
                skssl.VAEEmbedder(views=views, **SMALL), strategy="finetune", max_epochs=2, random_state=0, device="cpu"
            ).fit(complete_views, y_partial),
            complete_views,
            _classifier_outputs,
        ),
        "clf_finetune_vae_nb_scratch": (
            skssl.SSLClassifier(
                skssl.VAEEmbedder(likelihood="nb", **SMALL),
                strategy="finetune",
                pretrain=False,
                max_epochs=2,
                random_state=0,
                device="cpu",
            ).fit(counts, y),
            counts,
            _classifier_outputs,
        ),
        "reg_finetune_vae": (
            skssl.SSLRegressor(
                skssl.VAEEmbedder(**SMALL), strategy="finetune", max_epochs=2, random_state=0, device="cpu"
            ).fit(log_data, log_data[:, 0] + log_data[:, 1]),
            log_data,
            _regressor_outputs,
        ),
        "clf_ensemble_vae": (
            skssl.SSLClassifier(skssl.VAEEmbedder(**SMALL), random_state=0).fit(log_data, y_partial),
            log_data,
            _classifier_outputs,
        ),
    }
    expected = {}
    for name, (model, X, outputs) in models.items():
        skssl.save_model(model, os.path.join(HERE, f"{name}.skssl"), metadata={"fixture": name})
        outputs(name, model, X, expected)
    np.savez_compressed(os.path.join(HERE, "expected.npz"), **expected)


if __name__ == "__main__":
    main()
