"""The transfer protocol: pre-train once on a pool of other studies, score held-out cohorts by how few labels they need.

This is the setting of the reference study (pre-training on a large public compendium, fine-tuning on a small
cohort) and the one where self-supervised pre-training is expected to pay. Each embedder is pre-trained ONCE on the
pool (read batch by batch: a ``np.memmap`` pool is never loaded whole) and then reused, frozen, on every cohort. For
each seed, one held-out cohort (seed ``s`` takes cohort ``s mod n_cohorts``) is split into a stratified test block
and a train block; nested labeled subsets of the train block (one per fraction) train the supervised parts. Every
method sees the same test block and the same labeled rows for a (seed, fraction): the comparison is paired.

Leakage rule: the pool never holds a cohort row; within a cohort, ``X_test`` only reaches ``transform`` /
``predict``. Cohort-side unsupervised parts (cohort PCA, ``SSLClassifier()``'s scaler, PCA and graph) see the
train block with its labels hidden.

Baselines (no pre-trained network): ``logreg`` and ``pca_logreg`` on the cohort, ``pool_pca_logreg`` (PCA fitted on
a sample of the pool: the linear answer to "learn the representation elsewhere"), and ``ssl_ensemble``
(``SSLClassifier()`` on the cohort alone). Pre-trained methods, for each embedder ``<e>``: ``<e>_probe`` (logistic
regression on the embedding), ``<e>_prefit`` (``SSLClassifier(FrozenEstimator(embedder))``, the route the docs
recommend to a user who brings a pre-trained embedder), ``<e>_finetune`` (encoder + head fine-tuned on the labeled
rows), and the same with ``study_`` (``<e>_study_probe`` ...) for the embedder pre-trained with the pool's study
labels as a batch covariate (``fit(X, batch=study)``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.preprocessing import StandardScaler

from .. import ContrastiveEmbedder, MaskedAutoencoder, SSLClassifier, VAEEmbedder
from ._methods import CLASSIFIER_STEP_BUDGET, _predict, logistic_regression, named, pca_pipeline, with_budget
from ._protocol import (
    _as_dense_float32,
    _Progress,
    check_fractions,
    check_seeds,
    encode_labels,
    labeled_subsets,
    resolve_method_names,
    score,
    train_test_indices,
)

#: Labeled fractions of each cohort's train block scored by default (1 % of a 140-row train block is one label per
#: class: the smallest subset the protocol draws).
TRANSFER_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 1.0)

#: Rows of the pool (a random sample, read in sorted order) that fit ``pool_pca_logreg``'s PCA.
POOL_PCA_ROWS = 10_000

#: Fraction of each held-out cohort in its test block.
TRANSFER_TEST_SIZE = 0.3

#: The simulated compendium of the default run (``skssl-benchmark --transfer``), as ``make_compendium`` parameters:
#: 100 pool studies of 200 rows (20 000 rows, 100x one cohort study) and 5 held-out cohort studies of 200 rows over
#: 2 000 genes; everything else is make_compendium's defaults (docs/compendium.md says how they were chosen, before
#: any transfer run).
TRANSFER_COMPENDIUM = {
    "n_studies": 100,
    "samples_per_study": 200,
    "n_genes": 2000,
    "n_cohort_studies": 5,
    "n_cohort_samples": 1000,
}

#: The seed of every pre-training: the embedders are pre-trained once, and the cohorts' seeds vary the rest.
PRETRAIN_SEED = 0

BASELINES = ("logreg", "pca_logreg", "pool_pca_logreg", "ssl_ensemble")

#: The route the docs recommend to a user who brings a pre-trained embedder, named in advance: the report gives its
#: own gap closed and seeds won next to the best pre-trained method's (a best-of-several pick flatters itself).
RECOMMENDED_TRANSFER = "vime_prefit"

_EMBEDDERS = {
    "vime": (MaskedAutoencoder, {}, "VIME (MaskedAutoencoder)"),
    "scarf": (ContrastiveEmbedder, {"objective": "scarf"}, "SCARF (ContrastiveEmbedder)"),
    "vae": (VAEEmbedder, {"likelihood": "gaussian"}, "VAEEmbedder (Gaussian)"),
}
_KINDS = {
    "probe": "logistic regression on the embedding of the labeled rows",
    "prefit": "SSLClassifier(FrozenEstimator(embedder)) with its defaults (for a prefit embedder: logistic regression "
    "on the embedding standardised with every cohort train row, labeled or not)",
    "finetune": "encoder + linear head fine-tuned on the labeled rows (SSLClassifier(strategy='finetune'))",
}


@dataclass(frozen=True)
class TransferMethod:
    """A method of the transfer protocol: ``embedder`` (None for a baseline), ``study_aware`` (pre-trained with the
    pool's studies as ``batch``) and ``kind`` (``probe``, ``prefit``, ``finetune``, or the baseline's name)."""

    name: str
    description: str
    kind: str
    embedder: str | None = None
    study_aware: bool = False

    @property
    def pretrained_key(self):
        """Which pre-trained part the method reads: ``"pool_pca"``, ``("vime", False)`` ..., or None."""
        if self.embedder is not None:
            return (self.embedder, self.study_aware)
        return "pool_pca" if self.kind == "pool_pca_logreg" else None


def _methods():
    out = {
        "logreg": TransferMethod("logreg", "logistic regression on the cohort's standardised genes", "logreg"),
        "pca_logreg": TransferMethod(
            "pca_logreg", "PCA fitted on the cohort's train block (labels hidden) + logistic regression", "pca_logreg"
        ),
        "pool_pca_logreg": TransferMethod(
            "pool_pca_logreg",
            f"PCA fitted on {POOL_PCA_ROWS:,} random pool rows (standardised with the pool's gene statistics) + "
            "logistic regression",
            "pool_pca_logreg",
        ),
        "ssl_ensemble": TransferMethod(
            "ssl_ensemble",
            "SSLClassifier() on the cohort alone (no pre-training): the single-cohort default",
            "ssl_ensemble",
        ),
    }
    for study_aware in (False, True):
        for key, (_, _, label) in _EMBEDDERS.items():
            for kind, text in _KINDS.items():
                name = f"{key}_{'study_' if study_aware else ''}{kind}"
                pool = "the pool with its studies as batch covariate" if study_aware else "the pool"
                out[name] = TransferMethod(name, f"{label} pre-trained on {pool}; {text}", kind, key, study_aware)
    return out


#: Every transfer method by name.
TRANSFER_METHODS = _methods()

#: The methods of the default run (sized for <= 15 minutes on 2 CPU cores): the four baselines and VIME (the
#: fastest embedder to pre-train on the pool) as a probe and inside SSLClassifier, with and without the study
#: covariate. ``methods="all"`` adds SCARF and the VAE and the fine-tuned networks.
DEFAULT_TRANSFER_METHODS = (
    *BASELINES,
    "vime_probe",
    "vime_prefit",
    "vime_study_probe",
    "vime_study_prefit",
)


def check_transfer_methods(methods):
    """Resolve ``methods`` ("default", "all", a comma-separated str or a list of names) to known names."""
    return resolve_method_names(methods, TRANSFER_METHODS, DEFAULT_TRANSFER_METHODS, noun="transfer method")


# ---------------------------------------------------------------------------------------------------------------
# Pre-training on the pool (once)
# ---------------------------------------------------------------------------------------------------------------


def _pool_sample(X_pool, n_rows, seed):
    """A random sample of ``n_rows`` pool rows as a dense float32 array, read in increasing row order."""
    n = X_pool.shape[0]
    if n <= n_rows:
        return np.asarray(X_pool, dtype=np.float32)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=n_rows, replace=False))
    return np.asarray(X_pool[rows], dtype=np.float32)


def pretrain_on_pool(key, X_pool, *, pool_study=None, device="auto", embedder_params=None):
    """Fit the pre-trained part ``key`` (see :attr:`TransferMethod.pretrained_key`) on the pool; return the fitted
    part and the wall time in seconds."""
    start = time.perf_counter()
    if key == "pool_pca":
        return pool_pca(X_pool), time.perf_counter() - start
    name, study_aware = key
    cls, fixed, _ = _EMBEDDERS[name]
    params = {"random_state": PRETRAIN_SEED, "device": device, **fixed, **(embedder_params or {})}
    model = cls(**params)
    if study_aware:
        if pool_study is None:
            raise ValueError("Study-aware methods need the pool's study labels (pool_study=...).")
        model.fit(X_pool, batch=np.asarray(pool_study))
    else:
        model.fit(X_pool)
    return model, time.perf_counter() - start


def pool_pca(X_pool):
    """The transfer run's ``pool_pca_logreg`` PCA, fitted on a pool.

    :func:`pca_pipeline` fitted on ``POOL_PCA_ROWS`` (10 000) random rows of ``X_pool`` (all of them when there
    are fewer), drawn with seed 0 and read in increasing row order as float32, so that a memory-mapped pool is
    never loaded whole.

    Parameters
    ----------
    X_pool : array-like or np.memmap of shape (n_samples, n_genes)
        The pool of other studies.

    Returns
    -------
    pipeline : sklearn.pipeline.Pipeline
        The fitted ``StandardScaler`` + ``PCA``; ``transform`` maps a cohort into the pool's principal components.

    Examples
    --------
    >>> from skssl import make_compendium
    >>> from skssl.benchmark import pool_pca
    >>> data = make_compendium(n_studies=6, samples_per_study=40, n_genes=60, random_state=0)
    >>> pool_pca(data.X_pool).transform(data.X_cohort[:3]).shape
    (3, 32)
    """
    sample = _pool_sample(X_pool, POOL_PCA_ROWS, PRETRAIN_SEED)
    return pca_pipeline(sample.shape[0], sample.shape[1], PRETRAIN_SEED).fit(sample)


#: Rows of the pool (a random sample) and of each held-out cohort on which the study-mixing scores are computed.
MIXING_ROWS = 2_000


def _key_name(key):
    if key == "pool_pca":
        return "pool PCA"
    name, study_aware = key
    return f"{name} (study-aware)" if study_aware else name


def mixing_samples(X_pool, pool_study, X_cohorts):
    """The rows :func:`study_mixing` scores, read once for every representation: ``(rows, labels)`` of a random
    sample of ``MIXING_ROWS`` pool rows by pool study (None without study labels, or with one study), and of the
    first ``MIXING_ROWS`` rows of each held-out cohort by cohort (None with one cohort)."""
    pool = cohorts = None
    if pool_study is not None and len(np.unique(pool_study)) > 1:
        rows = np.sort(np.random.default_rng(PRETRAIN_SEED).permutation(X_pool.shape[0])[:MIXING_ROWS])
        labels = np.asarray(pool_study)[rows]
        if len(np.unique(labels)) > 1:
            pool = (np.asarray(X_pool[rows]), labels)
    if len(X_cohorts) > 1:
        blocks = [X[:MIXING_ROWS] for X in X_cohorts]
        cohorts = (np.vstack(blocks), np.concatenate([np.full(len(b), i) for i, b in enumerate(blocks)]))
    return pool, cohorts


def study_mixing(transform, samples):
    """How much study identity a representation keeps: the silhouette of the study labels (Euclidean) on
    ``transform`` of the pool sample, and of the cohort labels on the held-out cohorts stacked (``samples``: what
    :func:`mixing_samples` returned; NaN where it holds None).

    Near 0 or below: studies are mixed; near 1: each study is a cluster of its own. Lower is better for transfer
    (less study, more biology), as long as the phenotype survives, which the macro-F1 columns say.
    """
    from sklearn.metrics import silhouette_score

    scores = [math.nan if part is None else float(silhouette_score(transform(part[0]), part[1])) for part in samples]
    return {"pool_silhouette": scores[0], "cohort_silhouette": scores[1]}


# ---------------------------------------------------------------------------------------------------------------
# One method on one (seed, fraction)
# ---------------------------------------------------------------------------------------------------------------


def _semi_labels(n_train, labeled, y_labeled):
    y_semi = np.full(n_train, -1, dtype=np.int64)
    y_semi[labeled] = y_labeled
    return y_semi


def _cached(cache, key, compute):
    if cache is None:
        return compute()
    if key not in cache:
        cache[key] = compute()
    return cache[key]


def _label_free_views(kind, pretrained, X_train, X_test, seed):
    """The train and test blocks in the space a linear method reads: the cohort's PCA (fitted on the whole train
    block, labels hidden) for ``pca_logreg``, the pre-trained part's ``transform`` otherwise."""
    if kind == "pca_logreg":
        pretrained = pca_pipeline(X_train.shape[0], X_train.shape[1], seed).fit(X_train)
    return pretrained.transform(X_train), pretrained.transform(X_test)


def fit_predict(method, pretrained, X_train, y_train, labeled, X_test, *, seed, device, classifier_params, cache=None):
    """Fit ``method`` on the cohort's labeled rows (and, where it uses them, its unlabeled train rows); return
    predictions and class probabilities on ``X_test``. ``cache`` (a dict, one per seed) keeps what does not depend
    on the labels (the cohort PCA, the embeddings of the train and test blocks) across fractions."""
    y_lab = y_train[labeled]
    kind = method.kind
    if kind == "logreg":
        model = logistic_regression(seed).fit(X_train[labeled], y_lab)
        return _predict(model, X_test)
    if kind in ("pca_logreg", "pool_pca_logreg", "probe"):
        Z_train, Z_test = _cached(
            cache, method.pretrained_key or kind, lambda: _label_free_views(kind, pretrained, X_train, X_test, seed)
        )
        model = logistic_regression(seed).fit(Z_train[labeled], y_lab)
        return _predict(model, Z_test)
    if kind == "ssl_ensemble":
        model = SSLClassifier(random_state=seed, device=device).fit(X_train, _semi_labels(len(X_train), labeled, y_lab))
        return _predict(model, X_test)
    if kind == "prefit":
        model = SSLClassifier(FrozenEstimator(pretrained), random_state=seed, device=device)
        model.fit(X_train, _semi_labels(len(X_train), labeled, y_lab))
        return _predict(model, X_test)
    if kind == "finetune":
        params = with_budget(classifier_params, len(labeled), CLASSIFIER_STEP_BUDGET)
        model = SSLClassifier(
            pretrained, strategy="finetune", prefit=True, finetune="full", random_state=seed, device=device, **params
        ).fit(X_train[labeled], y_lab)
        return _predict(model, X_test)
    raise ValueError(f"Unknown kind of transfer method: {kind!r}.")  # pragma: no cover - the registry is closed


# ---------------------------------------------------------------------------------------------------------------
# The protocol
# ---------------------------------------------------------------------------------------------------------------


def _check_cohorts(X_cohorts, y_cohorts, n_genes):
    if len(X_cohorts) != len(y_cohorts) or not len(X_cohorts):
        raise ValueError(
            f"Give one label vector per cohort: {len(X_cohorts)} cohort matrices and {len(y_cohorts)} label vectors."
        )
    cohorts = []
    for i, (X, y) in enumerate(zip(X_cohorts, y_cohorts, strict=True)):
        X = _as_dense_float32(X)
        classes, codes = encode_labels(y)
        if X.shape[0] != len(codes):
            raise ValueError(f"Cohort {i}: X has {X.shape[0]} samples but y has {len(codes)} labels.")
        if X.shape[1] != n_genes:
            raise ValueError(
                f"Cohort {i} has {X.shape[1]} genes but the pool has {n_genes}: align the genes first "
                "(skssl.GeneAligner)."
            )
        cohorts.append((X, classes, codes))
    return cohorts


def transfer_benchmark(
    X_pool,
    X_cohorts,
    y_cohorts,
    *,
    pool_study=None,
    methods="default",
    fractions=TRANSFER_FRACTIONS,
    seeds=5,
    test_size=TRANSFER_TEST_SIZE,
    embedder_params=None,
    classifier_params=None,
    device="auto",
    dataset="compendium",
    pretrained=None,
    mixing=None,
    progress=False,
    callback=None,
):
    """Pre-train once on a pool of studies, then score held-out cohorts at several fractions of their labels.

    Parameters
    ----------
    X_pool : {ndarray, np.memmap} of shape (n_pool, n_genes)
        The unlabeled pool (log-expression, e.g. log-CPM). A memmap is read batch by batch, never whole.
    X_cohorts : list of array-like of shape (n_i, n_genes)
        The held-out cohorts (studies absent from the pool), same genes in the same order as the pool.
    y_cohorts : list of array-like of shape (n_i,)
        Class labels of each cohort.
    pool_study : array-like of shape (n_pool,) or None, default=None
        Study of each pool row; needed by the ``*_study_*`` methods.
    methods : "default", "all", str or list of str, default="default"
        Names from :data:`TRANSFER_METHODS`.
    fractions : sequence of float in (0, 1], default=TRANSFER_FRACTIONS
        Labeled fractions of each cohort's train block.
    seeds : int or sequence of int, default=5
        Seed ``s`` scores cohort ``s mod len(X_cohorts)`` with the split and labeled subsets of seed ``s``.
    test_size : float, default=0.3
        Fraction of each cohort in its test block.
    embedder_params, classifier_params : dict or None
        Parameters of every pre-trained embedder / fine-tuning classifier (default: the estimators' defaults).
    device : str, default="auto"
    dataset : str, default="compendium"
        Name written in the ``dataset`` column.
    pretrained : dict or None, default=None
        Already fitted pre-trained parts by key (``"pool_pca"``, ``("vime", False)`` ...) and their pre-training
        seconds, ``{key: (model, seconds)}``: curves over cohorts reuse one pre-training. Filled in place.
    mixing : dict or None, default=None
        When a dict, filled with the study-mixing scores (:func:`study_mixing`) of the standardised genes and of
        every pre-trained part, by display name.
    progress : bool, default=False
        Show a progress line on stderr.
    callback : callable or None
        Called with each result dict as it is finished.

    Returns
    -------
    records : list of dict
        One per (seed, method, fraction): ``dataset``, ``method``, ``seed``, ``cohort``, ``fraction``,
        ``n_labeled``, ``n_train``, ``n_test``, the metrics, ``fit_seconds``, ``pretrain_seconds``.
    """
    n_genes = X_pool.shape[1]
    cohorts = _check_cohorts(X_cohorts, y_cohorts, n_genes)
    methods = check_transfer_methods(methods)
    fractions = check_fractions(fractions)
    seeds = check_seeds(seeds)
    pretrained = {} if pretrained is None else pretrained
    bar = _Progress(len(seeds) * len(methods) * len(fractions), progress)
    records = []
    try:
        for name in methods:  # pre-train first: each part once, on the pool, whatever the seeds
            key = TRANSFER_METHODS[name].pretrained_key
            if key is not None and key not in pretrained:
                bar.show(f"pre-training {name.rsplit('_', 1)[0]} on the pool ({X_pool.shape[0]:,} rows)")
                pretrained[key] = pretrain_on_pool(
                    key, X_pool, pool_study=pool_study, device=device, embedder_params=embedder_params
                )
        if mixing is not None:
            bar.show("study mixing of each representation")
            sample = _pool_sample(X_pool, MIXING_ROWS, PRETRAIN_SEED)
            genes = StandardScaler().fit(sample)
            parts = {"genes (standardised)": genes.transform}
            parts.update({_key_name(k): model.transform for k, (model, _) in pretrained.items()})
            samples = mixing_samples(X_pool, pool_study, [c[0] for c in cohorts])
            for label, transform in parts.items():
                mixing[label] = study_mixing(transform, samples)
        for seed in seeds:
            cohort = seed % len(cohorts)
            X, classes, codes = cohorts[cohort]
            train, test = train_test_indices(codes, test_size=test_size, random_state=seed)
            X_train, X_test, y_train, y_test = X[train], X[test], codes[train], codes[test]
            subsets = labeled_subsets(y_train, fractions, random_state=seed)
            cache = {}  # what does not depend on the labels, for this seed's split
            for name in methods:
                method = TRANSFER_METHODS[name]
                model, pre_seconds = pretrained.get(method.pretrained_key, (None, math.nan))
                for fraction in fractions:
                    bar.show(f"{name} frac={fraction:.2f} seed={seed}")
                    labeled = subsets[fraction]
                    start = time.perf_counter()
                    pred, proba = fit_predict(
                        method,
                        model,
                        X_train,
                        y_train,
                        labeled,
                        X_test,
                        seed=seed,
                        device=device,
                        classifier_params=classifier_params or {},
                        cache=cache,
                    )
                    record = {
                        "dataset": dataset,
                        "method": name,
                        "seed": seed,
                        "cohort": cohort,
                        "fraction": fraction,
                        "n_labeled": len(labeled),
                        "n_train": len(train),
                        "n_test": len(test),
                        "n_pool": int(X_pool.shape[0]),
                        **score(y_test, pred, proba, len(classes)),
                        "fit_seconds": time.perf_counter() - start,
                        "pretrain_seconds": pre_seconds,
                    }
                    records.append(record)
                    if callback is not None:
                        callback(dict(record))
                    bar.step()
    finally:
        bar.close()
    return records


# ---------------------------------------------------------------------------------------------------------------
# What the numbers say
# ---------------------------------------------------------------------------------------------------------------


def _scores(records, method, fraction, metric="f1_macro"):
    return {r["seed"]: r[metric] for r in records if r["method"] == method and r["fraction"] == fraction}


def gap_table(records, metric="f1_macro"):
    """Per fraction: the best baseline, the best pre-trained method (by mean), the gap they close and the seeds won.

    The gap closed at fraction ``f`` is ``(pre(f) - base(f)) / (base(1.0) - base(f))``: ``base(f)`` the best
    baseline's mean at ``f`` (the best of :data:`BASELINES` run), ``base(1.0)`` the best baseline's mean with all
    labels, ``pre(f)`` the best pre-trained method's mean at ``f``. Seeds won: seeds where the pre-trained method
    scores above that best baseline (paired: same cohort, split and labeled rows). Returns a list of dicts.
    """
    methods = list(dict.fromkeys(r["method"] for r in records))
    fractions = sorted({r["fraction"] for r in records})
    baselines = [m for m in methods if m in BASELINES]
    pretrained = [m for m in methods if m not in BASELINES]

    def mean(method, fraction):
        values = list(_scores(records, method, fraction, metric).values())
        return float(np.mean(values)) if values else math.nan

    full = max((mean(m, 1.0) for m in baselines), default=math.nan) if 1.0 in fractions else math.nan
    rows = []
    for f in fractions:
        row = {"fraction": f, "n_labeled": float(np.mean([r["n_labeled"] for r in records if r["fraction"] == f]))}
        if baselines:
            base = max(baselines, key=lambda m: mean(m, f))
            row.update(best_baseline=base, baseline_score=mean(base, f))
        if pretrained:
            pre = max(pretrained, key=lambda m: mean(m, f))
            row.update(best_pretrained=pre, pretrained_score=mean(pre, f))
        if baselines and pretrained:
            room = full - row["baseline_score"]
            compared = [("", pre)] + (
                [("recommended_", RECOMMENDED_TRANSFER)] if RECOMMENDED_TRANSFER in methods else []
            )
            for prefix, method in compared:
                ours, theirs = _scores(records, method, f, metric), _scores(records, base, f, metric)
                seeds = sorted(set(ours) & set(theirs))
                gain = mean(method, f) - row["baseline_score"]
                if prefix:  # the best pre-trained method's score is already pretrained_score
                    row[f"{prefix}score"] = mean(method, f)
                row[f"{prefix}seeds"] = len(seeds)
                row[f"{prefix}seeds_won"] = sum(ours[s] > theirs[s] for s in seeds)
                row[f"{prefix}seeds_tied"] = sum(ours[s] == theirs[s] for s in seeds)
                row[f"{prefix}gap_closed"] = gain / room if room > 1e-12 else math.nan
        rows.append(row)
    return rows


def transfer_verdict(records, metric="f1_macro"):
    """Two or three sentences for report.md: whether pre-training on the pool beat the baselines, where, by how
    much, on how many seeds."""
    rows = gap_table(records, metric)
    parts, wins, losses = [], [], []
    for row in rows:
        if "gap_closed" not in row:
            continue
        f, diff = row["fraction"], row["pretrained_score"] - row["baseline_score"]
        gap = "" if math.isnan(row["gap_closed"]) else f", {row['gap_closed']:+.0%} of the gap to all labels"
        parts.append(
            f"{f:g}: {named(row['best_pretrained'])} {diff:+.3f} against {named(row['best_baseline'])}{gap}, higher on "
            f"{row['seeds_won']} of {row['seeds']} seeds"
        )
        (wins if diff > 0 and row["seeds_won"] * 2 > row["seeds"] else losses).append(f"{f:g}")
    if not parts:
        return "**Verdict.** No pre-trained method or no baseline was run, so there is nothing to compare."
    recommended = [
        f"{row['fraction']:g}: {row['recommended_score'] - row['baseline_score']:+.3f}, higher on "
        f"{row['recommended_seeds_won']} of {row['recommended_seeds']} seeds"
        for row in rows
        if "recommended_score" in row
    ]
    if wins and not losses:
        head = "Pre-training on the pool beat every baseline at every labeled fraction (mean and most seeds)."
    elif wins:
        head = (
            f"Pre-training on the pool beat every baseline at fractions {', '.join(wins)} (mean and most seeds), "
            f"but not at {', '.join(losses)}."
        )
    else:
        head = "Pre-training on the pool did not beat the best baseline at any labeled fraction."
    text = f"**Verdict.** {head} Best pre-trained method against the best baseline at each fraction — "
    text += "; ".join(parts) + "."
    if recommended:
        text += (
            f" The recommended route named in advance, {named(RECOMMENDED_TRANSFER)}, against the same baseline — "
            + "; ".join(recommended)
            + "."
        )
    return text
