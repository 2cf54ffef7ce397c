"""Label-efficiency benchmark: how well does each method classify as the number of labeled samples shrinks?

Python API: :func:`label_efficiency` (one row per run) and :func:`summarize` (mean ± sd over seeds). Command line:
``skssl-benchmark`` or ``python -m skssl.benchmark`` (see ``skssl-benchmark --help``), which also writes
``results.csv``, ``summary.csv``, a plot and ``report.md``.

The protocols' building blocks are public so that a script measured against them reuses them rather than restating
them: the baselines' :func:`logistic_regression` and :func:`pca_pipeline`, and the transfer run's (``skssl-benchmark
--transfer``) compendium, test fraction and pool PCA (``TRANSFER_COMPENDIUM``, ``TRANSFER_TEST_SIZE``,
:func:`pool_pca`).
"""

from __future__ import annotations

from ._methods import (
    CLASSIFIER_STEP_BUDGET,
    DEFAULT_METHODS,
    EMBEDDER_STEP_BUDGET,
    LOGREG_MAX_ITER,
    METHODS,
    PCA_COMPONENTS,
    logistic_regression,
    pca_pipeline,
)
from ._protocol import (
    DEFAULT_CLASSIFIER_PARAMS,
    DEFAULT_EMBEDDER_PARAMS,
    METRICS,
    RESULT_COLUMNS,
    _check_params,
    check_fractions,
    check_methods,
    check_seeds,
    labeled_subsets,
    run_protocol,
    train_test_indices,
)
from ._report import (
    SUMMARY_COLUMNS,
    as_table,
    summarize_records,
    to_records,
    write_outputs,
)
from ._transfer import POOL_PCA_ROWS, TRANSFER_COMPENDIUM, TRANSFER_TEST_SIZE, pool_pca

__all__ = [
    "CLASSIFIER_STEP_BUDGET",
    "DEFAULT_CLASSIFIER_PARAMS",
    "DEFAULT_EMBEDDER_PARAMS",
    "DEFAULT_FRACTIONS",
    "DEFAULT_METHODS",
    "EMBEDDER_STEP_BUDGET",
    "LOGREG_MAX_ITER",
    "METHODS",
    "METRICS",
    "PCA_COMPONENTS",
    "POOL_PCA_ROWS",
    "TRANSFER_COMPENDIUM",
    "TRANSFER_TEST_SIZE",
    "label_efficiency",
    "labeled_subsets",
    "logistic_regression",
    "pca_pipeline",
    "pool_pca",
    "summarize",
    "train_test_indices",
    "write_outputs",
]

#: Labeled fractions of the train split used by default.
DEFAULT_FRACTIONS = (0.05, 0.1, 0.2, 0.5, 1.0)

#: Seeds used by default.
DEFAULT_SEEDS = (0, 1, 2)


def label_efficiency(
    X,
    y,
    *,
    methods="default",
    fractions=DEFAULT_FRACTIONS,
    seeds=DEFAULT_SEEDS,
    test_size=0.25,
    top_genes=None,
    embedder_params=None,
    classifier_params=None,
    device="auto",
    dataset="data",
    as_frame="auto",
    progress=False,
    callback=None,
):
    """Benchmark classifiers and self-supervised embedders by how few labels they need.

    For each seed: a stratified test split is drawn first (nothing is ever fitted on it). The unsupervised and
    self-supervised parts (PCA, each embedder, the optional gene filter) are fitted once on the whole train split
    with its labels hidden and reused for every fraction. For each labeled fraction, a stratified subset of the
    train split (at least one sample per class; subsets are nested across fractions) trains the supervised parts.
    Each (seed, method, fraction) is one run, scored on the test split.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_genes)
        Expression matrix (log scale, e.g. log-CPM or log1p of normalised values), samples in rows.
    y : array-like of shape (n_samples,)
        Class labels (any type); every class needs at least 2 samples.
    methods : "default", "all", str or list of str, default="default"
        Method names from :data:`METHODS`: ``logreg`` (logistic regression on the standardised input),
        ``pca_logreg`` (PCA on the train split + logistic regression), ``ssl_ensemble`` (``SSLClassifier()``'s
        defaults, the recommended start), ``mlp_scratch`` (the fine-tuning network
        trained from random weights on the labeled rows), ``<embedder>_probe`` (pre-trained embedder + logistic
        regression on the embedding) and ``<embedder>_finetune`` (pre-trained encoder + linear head trained end to
        end), for ``<embedder>`` in ``scarf``, ``byol``, ``vime``, ``vae``. "default" is :data:`DEFAULT_METHODS`
        (sized for the 5-minute default run), "all" every method.
    fractions : sequence of float in (0, 1], default=(0.05, 0.1, 0.2, 0.5, 1.0)
        Labeled fractions of the train split.
    seeds : int or sequence of int, default=(0, 1, 2)
        Seeds of the splits and of every estimator; an int ``n`` means ``range(n)``.
    test_size : float in (0, 1), default=0.25
        Fraction of the samples held out for testing.
    top_genes : int or None, default=None
        Keep only the ``top_genes`` most variable genes
        (:class:`~skssl.preprocessing.HighlyVariableGenes`, fitted on the train split of each seed).
    embedder_params : dict or None, default=None
        Parameters of every embedder, merged over :data:`DEFAULT_EMBEDDER_PARAMS` (empty: the estimators'
        defaults, including their own schedule of about 3 000 optimisation steps with early stopping).
        ``n_components``, ``hidden_dims`` and ``dropout`` also set the encoder of ``mlp_scratch``.
        ``{"max_epochs": 2}`` makes a quick test.
    classifier_params : dict or None, default=None
        Parameters of every :class:`~skssl.supervised.SSLClassifier` (``mlp_scratch``, ``*_finetune``), merged
        over :data:`DEFAULT_CLASSIFIER_PARAMS`. Without ``max_epochs``, each fit gets about
        :data:`CLASSIFIER_STEP_BUDGET` (300) optimisation steps, whatever the number of labeled samples.
    device : str, default="auto"
        Torch device of the embedders and classifiers ("auto", "cpu", "cuda", "cuda:N").
    dataset : str, default="data"
        Name written in the ``dataset`` column.
    as_frame : "auto" or bool, default="auto"
        Return a pandas DataFrame ("auto": when pandas is installed) or a list of dicts (one per run, keys as
        the columns below).
    progress : bool, default=False
        Show a progress line on stderr (``[12/60] scarf_probe frac=0.10 seed=1``).
    callback : callable or None, default=None
        Advanced (used by the leakage tests): called after every run with a dict holding ``record`` (the row),
        ``estimator`` (the fitted supervised model), ``pretrained`` (the fitted PCA pipeline or embedder, or
        None), ``gene_filter`` (the fitted ``HighlyVariableGenes`` or None), ``X_train`` (the train block the
        models were fitted on, after the gene filter), ``train_index``, ``test_index``, ``labeled_index``
        (indices into ``X``) and ``classes``.

    Returns
    -------
    results : pandas.DataFrame or list of dict
        One row per (seed, method, fraction) with columns ``dataset``, ``method``, ``seed``, ``fraction``,
        ``n_labeled``, ``n_train``, ``n_test``, ``n_features``, ``accuracy``, ``balanced_accuracy``,
        ``f1_macro``, ``roc_auc`` (NaN where undefined), ``fit_seconds`` (supervised fit of the run) and
        ``pretrain_seconds`` (the shared unsupervised fit of its seed; NaN for methods without one).

    Raises
    ------
    ValueError
        For unknown method names (the message lists the available ones), fractions outside (0, 1], a class with
        fewer than 2 samples or too few samples for a stratified split, or mismatched ``X`` and ``y``.

    See Also
    --------
    summarize : Mean and standard deviation over seeds.

    Examples
    --------
    >>> from skssl.benchmark import label_efficiency, summarize
    >>> from skssl.datasets import make_expression
    >>> X, y = make_expression(n_samples=80, n_genes=40, random_state=0)
    >>> results = label_efficiency(
    ...     X, y, methods=["logreg", "vime_probe"], fractions=[0.25, 1.0], seeds=[0, 1],
    ...     embedder_params={"max_epochs": 2, "hidden_dims": (16,), "n_components": 4}, as_frame=False)
    >>> len(results)  # 2 methods x 2 fractions x 2 seeds
    8
    >>> results[0]["method"], results[0]["fraction"], results[0]["n_train"], results[0]["n_test"]
    ('logreg', 0.25, 60, 20)
    >>> 0 <= results[0]["f1_macro"] <= 1
    True
    >>> summary = summarize(results, as_frame=False)
    >>> [(row["method"], row["fraction"], row["n_runs"]) for row in summary]
    [('logreg', 0.25, 2), ('logreg', 1.0, 2), ('vime_probe', 0.25, 2), ('vime_probe', 1.0, 2)]
    """
    methods = check_methods(methods)
    fractions = check_fractions(fractions)
    seeds = check_seeds(seeds)
    if top_genes is not None and (isinstance(top_genes, bool) or not isinstance(top_genes, int) or top_genes < 1):
        raise ValueError(f"top_genes must be a positive integer or None; got {top_genes!r}.")
    if as_frame not in ("auto", True, False):
        raise ValueError(f"as_frame must be 'auto', True or False; got {as_frame!r}.")
    records = run_protocol(
        X,
        y,
        methods=methods,
        fractions=fractions,
        seeds=seeds,
        test_size=test_size,
        top_genes=top_genes,
        embedder_params=_check_params(embedder_params, "embedder_params"),
        classifier_params=_check_params(classifier_params, "classifier_params"),
        device=device,
        dataset=dataset,
        progress=progress,
        callback=callback,
    )
    return as_table(records, RESULT_COLUMNS, as_frame)


def summarize(results, *, as_frame="auto"):
    """Mean and standard deviation over seeds of every metric, per method and labeled fraction.

    Parameters
    ----------
    results : pandas.DataFrame or list of dict
        The output of :func:`label_efficiency`.
    as_frame : "auto" or bool, default="auto"
        Return a pandas DataFrame ("auto": when pandas is installed) or a list of dicts.

    Returns
    -------
    summary : pandas.DataFrame or list of dict
        One row per (method, fraction): ``n_labeled`` (mean over seeds), ``n_runs``, ``<metric>_mean`` and
        ``<metric>_sd`` (sample standard deviation, ddof=1; NaN with a single seed) for accuracy,
        balanced_accuracy, f1_macro and roc_auc, ``fit_seconds_mean`` and ``pretrain_seconds_mean``.

    Examples
    --------
    >>> from skssl.benchmark import summarize
    >>> runs = [{"method": "logreg", "fraction": 0.5, "n_labeled": 10, "accuracy": a, "balanced_accuracy": a,
    ...          "f1_macro": a, "roc_auc": a, "fit_seconds": 0.1, "pretrain_seconds": float("nan")}
    ...         for a in (0.8, 0.9)]
    >>> row = summarize(runs, as_frame=False)[0]
    >>> round(row["f1_macro_mean"], 3), round(row["f1_macro_sd"], 3)
    (0.85, 0.071)
    """
    return as_table(summarize_records(to_records(results)), SUMMARY_COLUMNS, as_frame)
