"""The benchmark's methods: one small object per method, in :data:`METHODS`, found by name.

A method has a ``name``, a ``description`` (for ``--help`` and the report), the shared unsupervised part it reads
(``pretrained``: None, ``"pca"`` or an embedder's short name, see :data:`PRETRAINED`; the protocol fits it once per
seed on the whole train split and reuses it for every fraction) and ``fit_predict(run, pretrained)``, which fits
the method on the labeled rows of one :class:`Run` and predicts its test block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .. import ContrastiveEmbedder, MaskedAutoencoder, SSLClassifier, VAEEmbedder
from .._training import resolve_schedule, validation_size

#: Unless ``max_epochs`` is given in ``embedder_params`` / ``classifier_params``, each fit gets the number of
#: epochs that makes about this many optimisation steps (:func:`skssl._training.resolve_schedule`'s rule: at least
#: 3 and at most 500 epochs; early stopping still applies); None keeps the estimators' own schedule (about 3 000
#: steps). Embedders are pre-trained once per seed and keep their default schedule. Classifiers are fitted once per
#: (seed, fraction): a budget in steps, not epochs, gives a 3-sample labeled subset as many updates as the full
#: train split, and keeps the default run within its time budget.
EMBEDDER_STEP_BUDGET = None
CLASSIFIER_STEP_BUDGET = 300

#: Principal components of every PCA of the benchmarks (``pca_logreg``, ``pool_pca_logreg``), at most.
PCA_COMPONENTS = 32
#: ``max_iter`` of the benchmarks' logistic regression.
LOGREG_MAX_ITER = 2000

#: The encoder parameters of the embedders that ``mlp_scratch`` also takes from ``embedder_params``.
ARCHITECTURE_PARAMS = ("n_components", "hidden_dims", "dropout")


def epochs_for_steps(n_rows, steps, params):
    """Epochs giving about ``steps`` optimisation steps on ``n_rows`` rows under the estimators' batching rules."""
    n_train = n_rows - validation_size(
        n_rows, params.get("validation_fraction", 0.1), params.get("early_stopping", True)
    )
    return resolve_schedule(n_train, batch_size=params.get("batch_size", "auto"), steps=steps).max_epochs


def with_budget(params, n_rows, steps):
    """``params`` with ``max_epochs`` set to about ``steps`` steps on ``n_rows`` rows, unless given or no budget."""
    if "max_epochs" in params or steps is None:
        return params
    return {**params, "max_epochs": epochs_for_steps(n_rows, steps, params)}


# ---------------------------------------------------------------------------------------------------------------
# The shared unsupervised parts, by key: a factory (seed, device, embedder_params, n_rows, n_features) -> estimator
# ---------------------------------------------------------------------------------------------------------------


def pca_pipeline(n_rows, n_features, seed):
    """The benchmarks' PCA (``pca_logreg``, and ``pool_pca_logreg`` of the transfer run), unfitted.

    Standardised features, then ``min(PCA_COMPONENTS, n_rows - 1, n_features)`` principal components.

    Parameters
    ----------
    n_rows, n_features : int
        Shape of the data it will be fitted on.
    seed : int
        ``random_state`` of the PCA.

    Returns
    -------
    pipeline : sklearn.pipeline.Pipeline
        ``StandardScaler`` followed by ``PCA``.

    Examples
    --------
    >>> from skssl.benchmark import pca_pipeline
    >>> pca_pipeline(100, 2000, seed=0)[-1].n_components
    32
    """
    n_comp = min(PCA_COMPONENTS, n_rows - 1, n_features)
    return make_pipeline(StandardScaler(), PCA(n_components=n_comp, random_state=seed))


def _pca(seed, device, params, n_rows, n_features):
    return pca_pipeline(n_rows, n_features, seed)


def _embedder(cls, **fixed):
    def make(seed, device, params, n_rows, n_features):
        params = with_budget(params, n_rows, EMBEDDER_STEP_BUDGET)
        return cls(**fixed, **{"random_state": seed, "device": device, **params})

    return make


#: The self-supervised embedders, by the short name used in method names.
EMBEDDERS = {
    "scarf": _embedder(ContrastiveEmbedder, objective="scarf"),
    "byol": _embedder(ContrastiveEmbedder, objective="byol"),
    "vime": _embedder(MaskedAutoencoder),
    "vae": _embedder(VAEEmbedder, likelihood="gaussian"),
}

#: Every shared unsupervised part: PCA (standardised input) and the embedders.
PRETRAINED = {"pca": _pca, **EMBEDDERS}


def pretrain(key, X_train, *, seed, device, embedder_params):
    """Fit the shared part ``key`` on the whole train split; return it and the embedding of the train split."""
    model = PRETRAINED[key](seed, device, embedder_params, *X_train.shape).fit(X_train)
    return model, model.transform(X_train)


# ---------------------------------------------------------------------------------------------------------------
# One run and the methods
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """What a method sees of one (seed, fraction) run.

    ``X_train`` / ``y_train``: the train block (after the optional gene filter) and its integer labels;
    ``labeled``: positions in the train block of the labeled rows; ``X_test``: the test block, which only ever
    reaches ``transform`` / ``predict`` / ``predict_proba``.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    labeled: np.ndarray
    X_test: np.ndarray
    seed: int
    device: Any
    embedder_params: dict
    classifier_params: dict

    @property
    def y_labeled(self):
        return self.y_train[self.labeled]


def _predict(model, X):
    proba = model.predict_proba(X) if hasattr(model, "predict_proba") else None
    pred = model.predict(X) if proba is None else np.asarray(model.classes_)[np.argmax(proba, axis=1)]
    return pred, proba


def logistic_regression(seed):
    """The benchmarks' logistic regression (``logreg``, and the head of ``pca_logreg`` and of every probe), unfitted.

    Standardised features, then scikit-learn's ``LogisticRegression`` with its defaults but
    ``max_iter=LOGREG_MAX_ITER``.

    Parameters
    ----------
    seed : int
        ``random_state`` of the logistic regression.

    Returns
    -------
    pipeline : sklearn.pipeline.Pipeline
        ``StandardScaler`` followed by ``LogisticRegression``.

    Examples
    --------
    >>> from skssl.benchmark import logistic_regression
    >>> logistic_regression(seed=0)[-1].max_iter
    2000
    """
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=LOGREG_MAX_ITER, random_state=seed))


@dataclass(frozen=True)
class Method:
    """A method of the benchmark: its name, what it is, and the shared part it reads (None: none)."""

    name: str
    description: str
    pretrained: str | None = None

    def fit_predict(self, run, pretrained):
        """Fit on the labeled rows of ``run`` (``pretrained``: the fitted shared part and its train embedding, or
        None); return the fitted model and its predictions and class probabilities on ``run.X_test``."""
        raise NotImplementedError


class LogReg(Method):
    """Standardised logistic regression on the labeled rows' input."""

    def fit_predict(self, run, pretrained):
        model = logistic_regression(run.seed).fit(run.X_train[run.labeled], run.y_labeled)
        return (model, *_predict(model, run.X_test))


class Probe(Method):
    """Standardised logistic regression on the shared part's embedding of the labeled rows."""

    def fit_predict(self, run, pretrained):
        pre_model, embedding = pretrained
        model = logistic_regression(run.seed).fit(embedding[run.labeled], run.y_labeled)
        return (model, *_predict(model, pre_model.transform(run.X_test)))


class Ensemble(Method):
    """``SSLClassifier()``'s defaults on every train row, the labels of the unlabeled rows hidden (-1)."""

    def fit_predict(self, run, pretrained):
        y_semi = np.full(len(run.y_train), -1, dtype=np.int64)
        y_semi[run.labeled] = run.y_labeled
        model = SSLClassifier(random_state=run.seed, device=run.device).fit(run.X_train, y_semi)
        return (model, *_predict(model, run.X_test))


class Finetune(Method):
    """``SSLClassifier(strategy="finetune")`` on the labeled rows: from the shared pre-trained embedder
    (``prefit=True, finetune="full"``), or from random weights when ``pretrained`` is None."""

    def fit_predict(self, run, pretrained):
        if pretrained is None:  # mlp_scratch: the encoder architecture of the embedders, random init
            arch = {k: v for k, v in run.embedder_params.items() if k in ARCHITECTURE_PARAMS}
            kind = {"embedder": MaskedAutoencoder(**arch), "pretrain": False}
        else:
            kind = {"embedder": pretrained[0], "prefit": True, "finetune": "full"}
        model = SSLClassifier(
            **kind,
            strategy="finetune",
            random_state=run.seed,
            device=run.device,
            **with_budget(run.classifier_params, len(run.labeled), CLASSIFIER_STEP_BUDGET),
        ).fit(run.X_train[run.labeled], run.y_labeled)
        return (model, *_predict(model, run.X_test))


_PROBE = {
    "scarf": "SCARF (ContrastiveEmbedder) pre-trained on the train split + logistic-regression probe",
    "byol": "BYOL (ContrastiveEmbedder(objective='byol')) pre-trained on the train split + probe",
    "vime": "VIME (MaskedAutoencoder) pre-trained on the train split + probe",
    "vae": "VAEEmbedder (Gaussian) pre-trained on the train split + probe (posterior mean)",
}
_FINETUNE = {
    "scarf": "SCARF encoder + linear head, fine-tuned on the labeled rows",
    "byol": "BYOL encoder + linear head, fine-tuned on the labeled rows",
    "vime": "VIME encoder + linear head, fine-tuned on the labeled rows",
    "vae": "VAE encoder (posterior mean) + linear head, fine-tuned on the labeled rows",
}

#: Every method by name, in display order. ``<embedder>_probe``: the embedder is pre-trained on the whole train
#: split (labels hidden), then a standardised logistic regression is fitted on the embeddings of the labeled rows.
#: ``<embedder>_finetune``: the same pre-trained encoder plus a linear head, trained end to end on the labeled rows
#: (``SSLClassifier(prefit=True, finetune="full")``).
METHODS = {
    method.name: method
    for method in (
        LogReg("logreg", "logistic regression on the standardised input (labeled rows)"),
        Probe("pca_logreg", "PCA fitted on the whole train split, then logistic regression (labeled rows)", "pca"),
        Ensemble(
            "ssl_ensemble",
            "SSLClassifier() with its defaults, the recommended start: linear models on the standardised genes and "
            "on the whitened top principal components, and label spreading over a nearest-neighbour graph, all "
            "fitted on the whole train split (labels of the unlabeled rows hidden), weighted by held-out "
            "predictions of the labeled rows",
        ),
        Finetune("mlp_scratch", "the fine-tuning network (same encoder + linear head), random init, labeled rows only"),
        *(Probe(f"{key}_probe", text, key) for key, text in _PROBE.items()),
        *(Finetune(f"{key}_finetune", text, key) for key, text in _FINETUNE.items()),
    )
}

#: What each method is, for the report (derived from :data:`METHODS`).
METHOD_DESCRIPTIONS = {name: method.description for name, method in METHODS.items()}

_PLAIN_NAMES = {
    "logreg": "logistic regression on the genes",
    "pca_logreg": "PCA + logistic regression",
    "pool_pca_logreg": "PCA of the pool + logistic regression",
    "ssl_ensemble": "SSLClassifier()",
    "mlp_scratch": "network from scratch",
}
_EMBEDDER_NAMES = {"scarf": "SCARF", "byol": "BYOL", "vime": "VIME", "vae": "VAE"}
_KIND_NAMES = {
    "probe": "{} embedding + logistic regression",
    "prefit": "SSLClassifier on the {} embedding",
    "finetune": "{} fine-tuned",
}


def embedder_method_parts(method):
    """``(embedder, study_aware, kind)`` of a pre-trained method's name, ``<embedder>[_study]_<kind>`` (e.g.
    ``("vime", True, "prefit")`` for ``vime_study_prefit``); None for any other method.

    >>> embedder_method_parts("scarf_probe"), embedder_method_parts("logreg")
    (('scarf', False, 'probe'), None)
    """
    family, _, kind = method.rpartition("_")
    study_aware = family.endswith("_study")
    family = family.removesuffix("_study")
    if family in _EMBEDDER_NAMES and kind in _KIND_NAMES:
        return family, study_aware, kind
    return None


def plain_name(method):
    """A name a reader without the code understands, for reports and plot legends (the code name stays the key).

    >>> plain_name("vime_probe"), plain_name("pca_logreg")
    ('VIME embedding + logistic regression', 'PCA + logistic regression')
    >>> plain_name("vime_study_prefit")
    'SSLClassifier on the study-aware VIME embedding'
    """
    if method in _PLAIN_NAMES:
        return _PLAIN_NAMES[method]
    parts = embedder_method_parts(method)
    if parts is None:
        return method
    embedder, study_aware, kind = parts
    return _KIND_NAMES[kind].format(("study-aware " if study_aware else "") + _EMBEDDER_NAMES[embedder])


def named(method):
    """``plain name (`code name`)`` for markdown reports."""
    plain = plain_name(method)
    return f"`{method}`" if plain == method else f"{plain} (`{method}`)"


#: The methods run by default: the three baselines, a probe on each kind of embedder (contrastive, masked,
#: generative) and one fine-tuning, so that the default (synthetic) benchmark stays well under 5 minutes on 2 CPU
#: cores (about 190 s of CPU time). ``methods="all"`` runs every method of :data:`METHODS`.
DEFAULT_METHODS = (
    "logreg",
    "pca_logreg",
    "ssl_ensemble",
    "mlp_scratch",
    "scarf_probe",
    "vime_probe",
    "vae_probe",
    "vime_finetune",
)

#: The method that stands for "what skssl recommends"; the report's verdict compares it with the baselines.
RECOMMENDED_METHOD = "ssl_ensemble"
BASELINE_METHODS = ("logreg", "pca_logreg")
