"""Which genes? Gene-level interpretation of skssl's predictors and embedders.

- :func:`explain`: per-sample attributions of a fitted :class:`~skssl.SSLClassifier` or
  :class:`~skssl.SSLRegressor` (any strategy), or of a semi-supervised ensemble of :mod:`skssl.semi_supervised`, to
  the genes: how much each gene moves each output (class probability, or prediction) from its value at a baseline
  profile.
- :func:`gene_importances`: global importances, the mean absolute attribution over the rows of ``X`` (per class
  for a classifier).
- :func:`embedding_loadings`: gene loadings of each dimension of a fitted embedder (per view for a multi-view
  :class:`~skssl.VAEEmbedder`), so that a dimension can be named by its top genes.
- :func:`top_genes`: the top genes of one column of a loading or importance table.

How each model is mapped back to the genes (``strategy="ensemble"``: each member separately, then the members'
weighted sum, as the ensemble averages their outputs):

- ``"genes"`` and ``"pcs"`` (linear models on the standardised genes, or on whitened principal components of the
  standardised genes): the view is an affine map of the genes, so the model's logits (or prediction) are an exact
  linear function of the genes, with coefficients mapped back through both standardisations and the PCA loadings.
  A class probability is the softmax of those logits: its integrated gradients from the baseline to a sample
  reduce to a one-dimensional integral along the logits, computed by Gauss-Legendre quadrature (exact to
  about 1e-12). The attributions of a sample sum to its prediction minus the baseline's prediction.
- ``"graph"`` (label spreading, a new row takes the mean score of its nearest fit rows): piecewise constant in
  the genes, so it has no gradient. It is replaced by a stated approximation, its *linear surrogate*: the
  least-squares fit of its spread scores on the fit rows' coordinates in the space where its neighbours are found
  (the top 10 principal components), mapped back to the genes through the PCA loadings. Its attributions do not
  sum to its prediction differences (``complete`` is False when it has weight).
- ``"embedding"`` and ``strategy="finetune"`` (networks): integrated gradients (Sundararajan et al., 2017) of
  the class probabilities (or prediction) along the straight line from the baseline to the sample, by the
  midpoint rule with ``n_steps`` points; their sum approaches the prediction difference as ``n_steps`` grows
  (``completeness_gap`` says how close it is).

The baseline is one expression profile, by default the mean of the rows of ``X``: attributions then say what
moves a sample away from the average sample of ``X``. Pass the fit data (or a reference cohort) as ``X``, or a
``baseline`` profile explicitly, when explaining a few samples.
"""

# License: BSD-3-Clause

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch
from scipy.special import softmax
from sklearn.frozen import FrozenEstimator
from sklearn.utils import Bunch
from sklearn.utils.validation import check_is_fitted

from . import _reading, _validation

__all__ = ["embedding_loadings", "explain", "gene_importances", "top_genes"]

#: Gauss-Legendre nodes for the softmax path integral of the linear members (smooth: 64 nodes reach ~1e-12).
_LINEAR_NODES = 64
#: Path points (rows x genes) held at once by the integrated gradients of a network.
_PATH_CELLS = 2**24
#: Attributions (rows x genes x outputs) held at once by gene_importances.
_ATTRIBUTION_CELLS = 2**22


# ---------------------------------------------------------------------------------------------------------------
# Input handling
# ---------------------------------------------------------------------------------------------------------------


def _predictor_task(estimator):
    """ "classification" or "regression" for a fitted SSLClassifier / SSLRegressor or semi-supervised ensemble;
    TypeError otherwise."""
    from .semi_supervised import SemiSupervisedEnsembleClassifier, SemiSupervisedEnsembleRegressor
    from .supervised import SSLClassifier, SSLRegressor

    classifiers, regressors = (
        (SSLClassifier, SemiSupervisedEnsembleClassifier),
        (SSLRegressor, SemiSupervisedEnsembleRegressor),
    )
    if not isinstance(estimator, classifiers + regressors):
        raise TypeError(
            "explain and gene_importances take a fitted SSLClassifier, SSLRegressor, SemiSupervisedEnsembleClassifier "
            f"or SemiSupervisedEnsembleRegressor, got {type(estimator).__name__}. For an embedder "
            "(ContrastiveEmbedder, MaskedAutoencoder, VAEEmbedder) use embedding_loadings."
        )
    check_is_fitted(estimator)
    return "classification" if isinstance(estimator, classifiers) else "regression"


def _strategy(estimator):
    """ "ensemble" or "finetune" (a semi-supervised ensemble estimator has no ``strategy``: it is the ensemble)."""
    return getattr(estimator, "strategy", "ensemble")


def _weighted_members(estimator):
    """The fitted members and their weights (``skssl._ensemble.WeightedMembers``) of an ensemble: the
    ``ensemble_`` of a SemiSupervisedEnsembleClassifier / Regressor, the ``ensemble_.ensemble_`` of an
    SSLClassifier / SSLRegressor."""
    ensemble = estimator.ensemble_
    return getattr(ensemble, "ensemble_", ensemble)


def _dense(X, allow_nan=False):
    """Validated ``X`` (array, sparse, memmap) as one dense float64 array."""
    blocks = [
        block for _, block in _reading.iter_batches(X, _reading.CHUNK_ROWS, check_finite=True, allow_nan=allow_nan)
    ]
    return np.vstack(blocks).astype(np.float64)


def _feature_names(estimator, n_features):
    names = getattr(estimator, "feature_names_in_", None)
    if names is None:
        return np.array([f"x{i}" for i in range(n_features)], dtype=object)
    return np.asarray(names, dtype=object)


def _resolve_baseline(baseline, X_dense, name="X"):
    """The baseline profile: the mean of the rows of ``X_dense`` (None), or the given profile, checked."""
    n_features = X_dense.shape[1]
    if baseline is None:
        if X_dense.shape[0] < 2:
            raise ValueError(
                f"The default baseline is the mean of the rows of {name}, which has only {X_dense.shape[0]} row: "
                "every attribution would be 0. Pass baseline=<a reference profile> (e.g. the mean of the fit data, "
                "X_fit.mean(axis=0)), or explain several samples at once."
            )
        return np.nanmean(X_dense, axis=0) if np.isnan(X_dense).any() else X_dense.mean(axis=0)
    baseline = np.asarray(baseline, dtype=np.float64)
    if baseline.shape != (n_features,):
        raise ValueError(
            f"baseline must be one expression profile of shape ({n_features},) (one value per gene); got shape "
            f"{baseline.shape}."
        )
    if not np.isfinite(baseline).all():
        raise ValueError("baseline contains NaN or infinity; pass a finite profile (e.g. X.mean(axis=0)).")
    return baseline


def _check_n_steps(n_steps):
    if not _validation.is_integer(n_steps) or isinstance(n_steps, bool) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer (points of the integral), got {n_steps!r}.")
    return int(n_steps)


def _pandas(what):
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"{what} needs pandas, which is not installed: pip install pandas (or 'skssl[io]'), or use "
            "as_frame=False for numpy arrays."
        ) from exc
    return pd


# ---------------------------------------------------------------------------------------------------------------
# Linear pieces: exact gene coefficients and the softmax path integral
# ---------------------------------------------------------------------------------------------------------------


def _pcs_to_genes(ensemble):
    """``A`` (n_genes, n_pcs) with the "pcs" member's standardised features ``= x @ A + constant`` for raw genes
    ``x``: the gene standardisation, the PCA loadings, the whitening and the member's own standardisation."""
    from . import _ensemble

    genes, member = ensemble.genes_, ensemble.members_["pcs"]
    inv_scale = 1.0 / np.asarray(genes.scale_, dtype=np.float64)
    loadings = np.asarray(genes.pca_.components_[: _ensemble.N_PCS], dtype=np.float64)
    pc_scale = np.asarray(genes.pc_scale_[: _ensemble.N_PCS], dtype=np.float64)
    member_scale = np.asarray(member.scale_, dtype=np.float64)
    return (loadings * inv_scale).T / (pc_scale * member_scale)


def _member_coefficients(ensemble, name):
    """Coefficients of the "genes" / "pcs" member's linear output on the raw genes: (n_logits, n_genes).

    The rows are the logits a softmax turns into the member's class probabilities (a binary logistic regression:
    a zero logit for its first class, then its decision function), or the one standardised prediction of a ridge
    regression. None when the member predicts one class for certain (no gene moves it).
    """
    member = ensemble.members_[name]
    model = member.model_
    if model is None:
        return None
    coef = np.atleast_2d(np.asarray(model.coef_, dtype=np.float64))
    if name == "genes":
        gene_scale = np.asarray(ensemble.genes_.scale_, dtype=np.float64) * np.asarray(member.scale_, np.float64)
        beta = coef / gene_scale
    else:
        beta = coef @ _pcs_to_genes(ensemble).T
    if ensemble.task == "classification" and beta.shape[0] == 1:  # binary: softmax over (0, decision function)
        beta = np.vstack([np.zeros_like(beta[0]), beta[0]])
    return beta


def _softmax_path_integral(start, delta):
    """``∫_0^1 J(start + t * delta) dt`` for the softmax Jacobian ``J = diag(p) - p p^T``, per row.

    ``start``, ``delta``: (n, K) logits. Returns (n, K, K). Gauss-Legendre quadrature: the integrand is smooth.
    """
    nodes, weights = np.polynomial.legendre.leggauss(_LINEAR_NODES)
    nodes, weights = (nodes + 1.0) / 2.0, weights / 2.0
    total = np.zeros((start.shape[0], start.shape[1], start.shape[1]))
    for t, w in zip(nodes, weights):
        p = softmax(start + t * delta, axis=1)
        total += w * (p[:, :, None] * np.eye(p.shape[1]) - p[:, :, None] * p[:, None, :])
    return total


def _linear_attributions(beta, X, baseline, task, logits_of):
    """Attributions (n, n_genes, n_outputs) of a linear-logit member.

    ``beta``: (n_logits, n_genes); ``logits_of(rows)``: the member's logits of raw rows (float64).
    """
    diff = X - baseline
    if task == "regression":
        return (diff * beta[0])[:, :, None]
    start = np.repeat(logits_of(baseline[None, :]), X.shape[0], axis=0)
    delta = diff @ beta.T
    integral = _softmax_path_integral(start, delta)  # (n, K_out, K_logits)
    # φ[i, g, c] = diff[i, g] * Σ_k integral[i, c, k] beta[k, g]
    return diff[:, :, None] * np.einsum("ick,kg->igc", integral, beta)


# ---------------------------------------------------------------------------------------------------------------
# Integrated gradients of a torch function
# ---------------------------------------------------------------------------------------------------------------


def _integrated_gradients(fn, X, baseline, n_outputs, n_steps, first_layer=None):
    """Integrated gradients of ``fn`` (float64 tensor rows -> (rows, n_outputs)) from ``baseline`` to each row of
    ``X``, by the midpoint rule with ``n_steps`` points. Returns (n, n_genes, n_outputs) float64.

    With ``first_layer=(A, c)``, ``fn`` takes ``x @ A.T + c`` instead of ``x``: the path is walked in that space
    and the mean gradient mapped back to the genes through ``A``.
    """
    n, n_genes = X.shape
    out = np.empty((n, n_genes, n_outputs))
    alphas = torch.arange(n_steps, dtype=torch.float64).add_(0.5).div_(n_steps)
    base = torch.as_tensor(baseline, dtype=torch.float64)
    width = n_genes if first_layer is None else first_layer[0].shape[0]
    chunk = max(1, _PATH_CELLS // (n_steps * width))
    for start in range(0, n, chunk):
        x = torch.as_tensor(X[start : start + chunk], dtype=torch.float64)
        diff = x - base
        if first_layer is None:
            origin, step = base, diff
        else:
            A, c = first_layer
            origin, step = base @ A.T + c, diff @ A.T
        path = (origin + alphas[:, None, None] * step[None]).reshape(-1, width).requires_grad_(True)
        values = fn(path)
        for k in range(n_outputs):
            (grad,) = torch.autograd.grad(values[:, k].sum(), path, retain_graph=k < n_outputs - 1)
            mean_grad = grad.reshape(n_steps, -1, width).mean(dim=0)
            if first_layer is not None:
                mean_grad = mean_grad @ first_layer[0]
            out[start : start + chunk, :, k] = (mean_grad * diff).numpy()
    return out


def _double_copy(module):
    """A float64 CPU copy of ``module`` in eval mode, without gradients on its weights."""
    return copy.deepcopy(module).to("cpu").double().eval().requires_grad_(False)


def _torch_embedding(embedder):
    """``x -> embedder.transform(x)`` as a float64 torch function (the encoder, then the fitted standardisation)."""
    module = _double_copy(embedder.module_)
    mean = torch.as_tensor(embedder.embedding_mean_, dtype=torch.float64)
    scale = torch.as_tensor(embedder.embedding_scale_, dtype=torch.float64)
    whitening = torch.as_tensor(embedder.embedding_whitening_, dtype=torch.float64)

    def transform(x):
        return ((module.embed(x) - mean) / scale) @ whitening

    return transform


def _affine_split(body):
    """``(A, c, rest)`` with ``body.embed(x) == rest(x @ A.T + c)`` when the encoder starts with an affine
    preprocessing (standardisation, or none) and a linear layer; None otherwise (e.g. the log-normalisation of
    counts).

    Integrated gradients then walk the straight path in the first layer's output (an affine image of the genes'
    path) and map the averaged gradient back to the genes once per sample instead of once per step: the same
    numbers, at a fraction of the cost for wide inputs.
    """
    from torch import nn

    from ._nn import EncoderPath, Standardize
    from .vae._module import ProductOfExperts

    if isinstance(body, EncoderPath):
        preprocess, mlp, n_mean = body.preprocess, body.encoder, None
    elif isinstance(body, ProductOfExperts) and not body.multiview:
        expert = body.experts[0]  # one view: its expert is the posterior, its first n_latent outputs the mean
        preprocess, mlp, n_mean = expert.preprocess, expert.encoder, expert.n_latent
    else:
        return None
    if not isinstance(mlp, nn.Sequential) or not len(mlp) or not isinstance(mlp[0], nn.Linear):
        return None
    weight, bias = mlp[0].weight, mlp[0].bias
    if isinstance(preprocess, Standardize):
        A = weight / preprocess.scale
        c = bias - A @ preprocess.mean
    elif isinstance(preprocess, nn.Identity):
        A, c = weight, bias
    else:
        return None
    rest = mlp[1:]

    def rest_fn(h):
        out = rest(h)
        return out if n_mean is None else out[:, :n_mean]

    return A.detach(), c.detach(), rest_fn


def _network_attributions(body, post, X, baseline, n_outputs, n_steps):
    """Integrated gradients of ``post(body.embed(x))`` (float64 torch modules / functions), through the first
    layer's output when :func:`_affine_split` allows it (checked on the data), on the genes otherwise."""
    split = _affine_split(body)
    if split is not None:
        A, c, rest = split
        rows = torch.as_tensor(X[:4], dtype=torch.float64)
        with torch.no_grad():
            agrees = torch.allclose(rest(rows @ A.T + c), body.embed(rows), rtol=1e-9, atol=1e-9)
        if agrees:  # the structure is what _affine_split expects: take the shortcut
            return _integrated_gradients(lambda h: post(rest(h)), X, baseline, n_outputs, n_steps, first_layer=(A, c))
    return _integrated_gradients(lambda x: post(body.embed(x)), X, baseline, n_outputs, n_steps)


def _embedding_member_parts(estimator, task):
    """The ensemble's "embedding" member as ``(body, post)``: the embedder's encoder, and the map from its output
    to the member's class probabilities (or standardised prediction), float64."""
    member = _weighted_members(estimator).members_["embedding"]
    embedder = estimator.embedder_
    body = _double_copy(embedder.module_.encoder_path())
    tensors = [
        embedder.embedding_mean_,
        embedder.embedding_scale_,
        embedder.embedding_whitening_,
        member.mean_,
        member.scale_,
        np.atleast_2d(member.model_.coef_),
        np.atleast_1d(member.model_.intercept_),
    ]
    e_mean, e_scale, whitening, mean, scale, coef, intercept = (
        torch.as_tensor(np.asarray(t, dtype=np.float64)) for t in tensors
    )

    def post(embedding):
        transformed = ((embedding - e_mean) / e_scale) @ whitening  # embedder.transform
        linear = ((transformed - mean) / scale) @ coef.T + intercept
        if task == "regression":
            return linear[:, :1]
        if linear.shape[1] == 1:  # binary logistic regression
            linear = torch.cat([torch.zeros_like(linear), linear], dim=1)
        return torch.softmax(linear, dim=1)

    return body, post


# ---------------------------------------------------------------------------------------------------------------
# Members and strategies
# ---------------------------------------------------------------------------------------------------------------


def _graph_coefficients(ensemble):
    """The "graph" member's linear surrogate on the raw genes: (n_outputs, n_genes).

    Least squares of the member's spread scores on the fit rows (class shares, or the diffusion-weighted target)
    on their coordinates in the principal-component space its neighbours are found in, mapped back to the genes
    through the PCA loadings and the gene standardisation.
    """
    member, genes = ensemble.members_["graph"], ensemble.genes_
    points = np.asarray(member.points_, dtype=np.float64)
    scores = np.asarray(member.scores_, dtype=np.float64).reshape(len(points), -1)
    design = np.column_stack([np.ones(len(points)), points - points.mean(axis=0)])
    slopes = np.linalg.lstsq(design, scores, rcond=None)[0][1:]  # (n_pcs, n_outputs)
    if genes.pca_ is None:
        return np.zeros((scores.shape[1], len(genes.mean_)))
    loadings = np.asarray(genes.pca_.components_[: points.shape[1]], dtype=np.float64)
    return slopes.T @ loadings / np.asarray(genes.scale_, dtype=np.float64)


def _member_attributions(estimator, name, X, baseline, n_steps, task):
    """Attributions of one ensemble member's own output (class probabilities, or standardised prediction)."""
    ensemble = _weighted_members(estimator)
    n_outputs = len(estimator.classes_) if task == "classification" else 1
    if name == "graph":
        beta = _graph_coefficients(ensemble)
        return (X - baseline)[:, :, None] * beta.T[None, :, :]
    if name == "embedding":
        if ensemble.members_[name].model_ is None:
            return np.zeros((X.shape[0], X.shape[1], n_outputs))
        body, post = _embedding_member_parts(estimator, task)
        return _network_attributions(body, post, X, baseline, n_outputs, n_steps)
    beta = _member_coefficients(ensemble, name)
    if beta is None:
        return np.zeros((X.shape[0], X.shape[1], n_outputs))
    member = ensemble.members_[name]
    model = member.model_
    classes = getattr(model, "classes_", None)

    def logits_of(rows):
        # The member's own linear output on the raw genes (the intercept does not matter for attributions, but the
        # starting point of the softmax path does).
        views = ensemble._views(rows, None)
        logits = np.atleast_2d(model.decision_function(member.transform(views[name])).T).T
        if logits.shape[1] == 1:
            logits = np.column_stack([np.zeros(len(rows)), logits[:, 0]])
        return logits

    phi = _linear_attributions(beta, X, baseline, task, logits_of)
    if task == "classification" and len(classes) != n_outputs:  # probabilities of the classes the model saw
        full = np.zeros((X.shape[0], X.shape[1], n_outputs))
        full[:, :, classes] = phi
        phi = full
    return phi


def _ensemble_attributions(estimator, X, baseline, n_steps, task, member):
    ensemble = _weighted_members(estimator)
    if member is not None:
        if member not in ensemble.members_:
            raise ValueError(f"member must be one of the fitted members {tuple(ensemble.members_)}; got {member!r}.")
        return _member_attributions(estimator, member, X, baseline, n_steps, task), member != "graph"
    total, complete = 0.0, True
    for name in ensemble.members_:
        weight = ensemble.weights_[name]
        if weight > 0:
            total = total + weight * _member_attributions(estimator, name, X, baseline, n_steps, task)
            complete = complete and name != "graph"
    return total, complete


def _finetune_attributions(estimator, X, baseline, n_steps, task):
    module = _double_copy(estimator.module_)
    n_outputs = len(estimator.classes_) if task == "classification" else 1

    def post(embedding):
        outputs = module.head(module.scale(embedding))
        return torch.softmax(outputs, dim=1) if task == "classification" else outputs[:, :1]

    return _network_attributions(module.body, post, X, baseline, n_outputs, n_steps)


def _predictions(estimator, rows, task):
    """The estimator's outputs on validated rows (class probabilities, or predictions as a column)."""
    with warnings.catch_warnings():
        # The rows were validated against the fit data's gene names already (or are the baseline profile).
        warnings.filterwarnings("ignore", message="X does not have valid feature names", category=UserWarning)
        if task == "classification":
            return estimator.predict_proba(rows)
        return estimator.predict(rows)[:, None]


# ---------------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------------


def explain(estimator, X, *, baseline=None, n_steps=64, member=None, as_frame=False):
    """Per-sample attributions of a fitted SSLClassifier / SSLRegressor's predictions to the genes.

    For each sample and gene, how much that gene moves each output (a class probability, or the prediction in the
    unit of ``y``) from its value at the ``baseline`` profile, for every strategy: exact linear maps for the
    ensemble's linear members, a linear surrogate for its graph member, integrated gradients for networks (see
    :mod:`skssl.inspection` for each).

    Parameters
    ----------
    estimator : SSLClassifier, SSLRegressor, SemiSupervisedEnsembleClassifier or SemiSupervisedEnsembleRegressor
        Fitted, with any ``strategy``.
    X : {array-like, sparse matrix} of shape (n_samples, n_genes)
        Samples to explain, with the genes of the fit data.
    baseline : array-like of shape (n_genes,), default=None
        The reference profile the attributions start from. None: the mean of the rows of ``X``.
    n_steps : int, default=64
        Points of the integrated-gradients path of a network (``strategy="finetune"``, the ``"embedding"``
        member); more points, smaller ``completeness_gap``.
    member : str, default=None
        With ``strategy="ensemble"``: explain that member's own output (unweighted) instead of the ensemble's.
    as_frame : bool, default=False
        Return ``attributions`` as a dict of pandas DataFrames (one per output, samples x genes, columns named by
        ``feature_names_in_``) and ``prediction`` as a DataFrame. Needs pandas.

    Returns
    -------
    explanation : :class:`~sklearn.utils.Bunch`
        - ``attributions``: (n_samples, n_genes, n_outputs) array (outputs: ``classes_``, or one prediction);
        - ``prediction``: (n_samples, n_outputs) the estimator's output on ``X``;
        - ``baseline_prediction``: (n_outputs,) its output on the baseline profile;
        - ``completeness_gap``: (n_samples, n_outputs) ``prediction - baseline_prediction`` minus the sum of the
          attributions over genes: float rounding (~1e-6) where the method is complete, the quadrature error for
          integrated gradients, and the graph member's surrogate error otherwise;
        - ``complete``: whether the method promises that the attributions sum to the prediction difference;
        - ``baseline``, ``feature_names``, ``output_names``, ``method``.

    Examples
    --------
    >>> from skssl import SSLClassifier, make_expression
    >>> from skssl.inspection import explain
    >>> X, y = make_expression(n_samples=80, n_genes=40, random_state=0)
    >>> y[20:] = -1
    >>> clf = SSLClassifier(members=("genes", "pcs"), random_state=0).fit(X, y)
    >>> explanation = explain(clf, X)
    >>> explanation.attributions.shape
    (80, 40, 3)
    >>> bool(abs(explanation.completeness_gap).max() < 1e-4)
    True
    """
    task = _predictor_task(estimator)
    n_steps = _check_n_steps(n_steps)
    X_valid = _validation.validate_X(estimator, X, reset=False)
    X_dense = _dense(X_valid)
    baseline = _resolve_baseline(baseline, X_dense)
    phi, complete, method = _attributions(estimator, X_dense, baseline, n_steps, task, member)
    if member is not None:
        prediction = _member_prediction(estimator, member, X_dense, task)
        baseline_prediction = _member_prediction(estimator, member, baseline[None, :], task)[0]
    else:
        prediction = _predictions(estimator, X_valid, task)
        baseline_prediction = _predictions(estimator, baseline[None, :].astype(np.float32), task)[0]
    gap = prediction - baseline_prediction - phi.sum(axis=1)
    names = _feature_names(estimator, X_dense.shape[1])
    outputs = list(estimator.classes_) if task == "classification" else ["prediction"]
    result = Bunch(
        attributions=phi,
        prediction=prediction,
        baseline_prediction=baseline_prediction,
        completeness_gap=gap,
        complete=bool(complete),
        baseline=baseline,
        feature_names=names,
        output_names=outputs,
        method=method,
    )
    if as_frame:
        pd = _pandas("explain(..., as_frame=True)")
        index = X.index if hasattr(X, "index") and len(X.index) == X_dense.shape[0] else None
        result.attributions = {
            out: pd.DataFrame(phi[:, :, k], index=index, columns=names) for k, out in enumerate(outputs)
        }
        result.prediction = pd.DataFrame(prediction, index=index, columns=outputs)
    return result


def _attributions(estimator, X_dense, baseline, n_steps, task, member):
    """``(attributions, complete, method)`` of dense float64 rows, in the unit of the outputs."""
    if _strategy(estimator) == "ensemble":
        phi, complete = _ensemble_attributions(estimator, X_dense, baseline, n_steps, task, member)
        method = "ensemble: exact linear maps, graph surrogate, integrated gradients for the embedding"
    else:
        if member is not None:
            raise ValueError("member= applies to strategy='ensemble' only; this estimator was fine-tuned.")
        phi, complete = _finetune_attributions(estimator, X_dense, baseline, n_steps, task), True
        method = f"integrated gradients ({n_steps} midpoint steps)"
    if task == "regression":
        phi = phi * estimator.y_scale_  # standardised target units -> units of y
    return phi, complete, method


def _member_prediction(estimator, name, X_dense, task):
    """One ensemble member's own output on raw rows (the standardised prediction times the target scale)."""
    ensemble = _weighted_members(estimator)
    embedding = None
    if name == "embedding":
        embedding = estimator._embed(X_dense.astype(np.float32))
    views = ensemble._views(X_dense.astype(np.float32), embedding)
    member = ensemble.members_[name]
    out = member.predict(member.transform(views[name]))
    if task == "regression":
        return (out * estimator.y_scale_)[:, None]
    return out


def gene_importances(estimator, X, *, baseline=None, n_steps=64, member=None, signed=False, as_frame=False):
    """Global gene importances of a fitted SSLClassifier / SSLRegressor: the mean absolute attribution over the
    rows of ``X``.

    ``importances[g, c]`` is the average, over the samples of ``X``, of how much gene ``g`` moves output ``c`` (the
    probability of class ``c``, or the prediction in the unit of ``y``) between the baseline and the sample
    (:func:`explain`). Pass the fit data (labeled and unlabeled rows) as ``X`` for the model's view of the cohort.
    To rank genes over all classes, sum the columns.

    Parameters
    ----------
    estimator : SSLClassifier, SSLRegressor, SemiSupervisedEnsembleClassifier or SemiSupervisedEnsembleRegressor
        Fitted, with any ``strategy``.
    X : {array-like, sparse matrix} of shape (n_samples, n_genes)
        The samples to average over (at least 2 with the default baseline).
    baseline : array-like of shape (n_genes,), default=None
        As in :func:`explain`; None: the mean of the rows of ``X``.
    n_steps : int, default=64
        As in :func:`explain`.
    member : str, default=None
        As in :func:`explain`: one ensemble member's own importances.
    signed : bool, default=False
        Give each importance the direction of the gene's effect: the mean of ``attribution * sign(x - baseline)``,
        positive when a higher expression of the gene raises the output. Where the effect has one direction over
        the rows (always, for a linear model) it has the magnitude of the unsigned importance; effects that change
        direction partly cancel.
    as_frame : bool, default=False
        Return a pandas DataFrame (genes x outputs, indexed by ``feature_names_in_``).

    Returns
    -------
    importances : ndarray of shape (n_genes, n_outputs) or DataFrame
        Non-negative (unless ``signed``); one column per class (in the order of ``classes_``), or one for a
        regressor.

    Examples
    --------
    >>> import numpy as np
    >>> from skssl import SSLClassifier
    >>> from skssl.inspection import gene_importances
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(150, 20))
    >>> y = (X[:, 3] - X[:, 7] > 0).astype(int)
    >>> y[40:] = -1
    >>> clf = SSLClassifier(random_state=0).fit(X, y)
    >>> importances = gene_importances(clf, X)
    >>> importances.shape
    (20, 2)
    >>> sorted(np.argsort(-importances[:, 1])[:2].tolist())
    [3, 7]
    """
    task = _predictor_task(estimator)
    n_steps = _check_n_steps(n_steps)
    X_dense = _dense(_validation.validate_X(estimator, X, reset=False))
    baseline = _resolve_baseline(baseline, X_dense)
    n_outputs = len(estimator.classes_) if task == "classification" else 1
    importances = np.zeros((X_dense.shape[1], n_outputs))
    # A block of rows at a time: the attributions of all rows at once (rows x genes x outputs) need not fit in memory.
    block = max(1, _ATTRIBUTION_CELLS // (X_dense.shape[1] * n_outputs))
    for start in range(0, X_dense.shape[0], block):
        rows = X_dense[start : start + block]
        phi, _, _ = _attributions(estimator, rows, baseline, n_steps, task, member)
        if signed:
            importances += (phi * np.sign(rows - baseline)[:, :, None]).sum(axis=0)
        else:
            importances += np.abs(phi).sum(axis=0)
    importances /= X_dense.shape[0]
    names = _feature_names(estimator, X_dense.shape[1])
    outputs = list(estimator.classes_) if task == "classification" else ["prediction"]
    if as_frame:
        pd = _pandas("gene_importances(..., as_frame=True)")
        return pd.DataFrame(importances, index=names, columns=outputs)
    return importances


def top_genes(table, column=None, k=20, *, names=None):
    """The ``k`` genes with the largest absolute value in one column of ``table``, largest first.

    Parameters
    ----------
    table : ndarray of shape (n_genes, n_columns) or DataFrame
        Importances (:func:`gene_importances`) or loadings (:func:`embedding_loadings`).
    column : int or label, default=None
        The column (a class, or a dimension): a position for an array, a column label for a DataFrame. None: the
        sum of the absolute values over the columns (every class at once).
    k : int, default=20
        How many genes.
    names : array-like of shape (n_genes,), default=None
        Gene names for an array ``table`` (a DataFrame's index is used otherwise).

    Returns
    -------
    genes : list of (name or index, value)
        The top genes with their value in the column (signed, for loadings), largest absolute value first.

    Examples
    --------
    >>> import numpy as np
    >>> from skssl.inspection import top_genes
    >>> top_genes(np.array([[0.1], [-0.9], [0.5]]), column=0, k=2, names=["A", "B", "C"])
    [('B', -0.9), ('C', 0.5)]
    """
    if hasattr(table, "columns") and hasattr(table, "index"):
        names = list(table.index) if names is None else list(names)
        values = table.to_numpy(dtype=np.float64) if column is None else table[column].to_numpy(dtype=np.float64)
    else:
        array = np.asarray(table, dtype=np.float64)
        if array.ndim == 1:
            array = array[:, None]
        values = array if column is None else array[:, column]
        names = list(range(array.shape[0])) if names is None else list(names)
    if values.ndim == 2:  # no column: every column at once, by the sum of absolute values
        values = np.abs(values).sum(axis=1)
    ranking = np.abs(values)
    if len(names) != len(ranking):
        raise ValueError(f"names has {len(names)} entries, but the table has {len(ranking)} genes.")
    if not _validation.is_integer(k) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    order = np.argsort(-ranking, kind="stable")[: int(k)]
    return [(names[i], float(values[i])) for i in order]


# ---------------------------------------------------------------------------------------------------------------
# Embedders
# ---------------------------------------------------------------------------------------------------------------


def _fitted_embedder(embedder):
    from ._base import BaseSSLEstimator

    if isinstance(embedder, FrozenEstimator):
        embedder = embedder.estimator
    if not isinstance(embedder, BaseSSLEstimator):
        raise TypeError(
            "embedding_loadings takes a fitted skssl embedder (ContrastiveEmbedder, MaskedAutoencoder, VAEEmbedder, "
            f"possibly in a FrozenEstimator), got {type(embedder).__name__}. For an SSLClassifier / SSLRegressor, "
            "pass its embedder_ (or use gene_importances for its predictions)."
        )
    check_is_fitted(embedder)
    return embedder


def _view_columns(embedder, view):
    """Column positions of ``view`` (None: every column)."""
    if view is None:
        return None
    views = getattr(embedder, "views_", None)
    if not views:
        raise ValueError(
            f"view={view!r} applies to a multi-view VAEEmbedder (fitted with views=...); this "
            f"{type(embedder).__name__} has a single view: leave view=None."
        )
    if view not in views:
        raise ValueError(f"view must be one of {sorted(views)}; got {view!r}.")
    return np.asarray(views[view])


def _decoder_jacobian(embedder, mean_profile):
    """d(decoded profile, data units) / d(transform output), at the embedding of ``mean_profile``: (n_genes, k)."""
    from .masked import MaskedAutoencoder
    from .vae import VAEEmbedder

    module = _double_copy(embedder.module_)
    x = torch.as_tensor(mean_profile[None, :], dtype=torch.float64)
    with torch.no_grad():
        t0 = torch.as_tensor(
            embedder._embedding_output(module.embed(x).float().numpy().copy()), dtype=torch.float64
        )  # transform() of the mean profile
    whitening = torch.as_tensor(embedder.embedding_whitening_, dtype=torch.float64)
    scale = torch.as_tensor(embedder.embedding_scale_, dtype=torch.float64)
    mean = torch.as_tensor(embedder.embedding_mean_, dtype=torch.float64)
    n_features = embedder.n_features_in_

    if isinstance(embedder, VAEEmbedder) and embedder._multiview(reset=False):

        def decode(z):  # module.decode fills a float32 buffer: keep float64 here
            out = torch.zeros((z.shape[0], n_features), dtype=torch.float64)
            for expert, decoder, likelihood in zip(module.encoder.experts, module.decoders, module.likelihoods):
                out[:, expert.index] = likelihood.mean(decoder(z))
            return out

    elif isinstance(embedder, VAEEmbedder):

        def decode(z):
            return module.likelihoods[0].mean(module.decoders[0](z))

    elif isinstance(embedder, MaskedAutoencoder):

        def decode(z):
            return module.preprocess.inverse(module.feature_head(z))

    else:
        raise ValueError(
            f"method='decoder' needs an embedder with a decoder (MaskedAutoencoder, VAEEmbedder); "
            f"{type(embedder).__name__} has none. Use method='encoder' (every embedder)."
        )

    def from_output(t):
        raw = torch.linalg.solve(whitening, t.T).T
        return decode(raw * scale + mean)[0]

    return torch.autograd.functional.jacobian(from_output, t0).numpy()  # (n_genes, 1, k)


def embedding_loadings(embedder, X, *, method="encoder", view=None, as_frame=False):
    """Gene loadings of each dimension of a fitted embedder's output (``transform``), to name a dimension by its
    top genes.

    Parameters
    ----------
    embedder : ContrastiveEmbedder, MaskedAutoencoder or VAEEmbedder
        Fitted (possibly in a FrozenEstimator); e.g. ``SSLClassifier(...).embedder_``.
    X : {array-like, sparse matrix} of shape (n_samples, n_genes)
        Reference samples (typically the fit data): the encoder's gradients are averaged over them, and the
        decoder is linearised at their mean profile.
    method : {"encoder", "decoder"}, default="encoder"
        ``"encoder"`` (every embedder): the gradient of each dimension of ``transform`` with respect to each gene,
        averaged over the rows of ``X`` and multiplied by the gene's standard deviation over ``X``: how much the
        dimension moves, on average, when the gene rises by one standard deviation. ``"decoder"``
        (MaskedAutoencoder, VAEEmbedder): the Jacobian of the decoded profile (data units: the reconstruction of
        the masked autoencoder's feature head, the mean of p(x | z) of the VAE) with respect to each dimension of
        ``transform``, at the embedding of the mean profile of ``X``: how much each gene's expected value moves
        when the dimension rises by one unit.
    view : str, default=None
        For a multi-view VAEEmbedder: the loadings of that view's genes only (its columns, ``views_[view]``).
    as_frame : bool, default=False
        Return a pandas DataFrame (genes x dimensions), indexed by gene names and with the embedder's output names
        as columns.

    Returns
    -------
    loadings : ndarray of shape (n_genes, n_components) or DataFrame
        Signed: a positive loading means the gene goes up with the dimension. With ``view``, only the view's genes.

    Examples
    --------
    >>> from skssl import MaskedAutoencoder, make_expression
    >>> from skssl.inspection import embedding_loadings, top_genes
    >>> X, _ = make_expression(n_samples=60, n_genes=30, random_state=0)
    >>> vime = MaskedAutoencoder(n_components=4, hidden_dims=(16,), max_epochs=2, random_state=0).fit(X)
    >>> embedding_loadings(vime, X).shape
    (30, 4)
    >>> embedding_loadings(vime, X, method="decoder").shape
    (30, 4)
    >>> len(top_genes(embedding_loadings(vime, X), column=0, k=5))
    5
    """
    embedder = _fitted_embedder(embedder)
    if method not in ("encoder", "decoder"):
        raise ValueError(f"method must be 'encoder' or 'decoder', got {method!r}.")
    columns = _view_columns(embedder, view)
    multiview = bool(getattr(embedder, "views_", None))
    X_valid = embedder._validate_input(X, reset=False)
    X_dense = _dense(X_valid, allow_nan=multiview)
    if method == "encoder":
        loadings = _encoder_loadings(embedder, X_dense, columns)
    else:
        loadings = _decoder_jacobian(embedder, _resolve_baseline(None, X_dense))[:, 0, :]
        if columns is not None:
            loadings = loadings[columns]
    if as_frame:
        pd = _pandas("embedding_loadings(..., as_frame=True)")
        names = _feature_names(embedder, X_dense.shape[1])
        if columns is not None:
            names = names[columns]
        return pd.DataFrame(loadings, index=names, columns=list(embedder.get_feature_names_out()))
    return loadings


def _encoder_loadings(embedder, X_dense, columns):
    """Mean gradient of each output dimension over the rows, times each gene's standard deviation: (n_genes, k)."""
    transform = _torch_embedding(embedder)
    if np.isnan(X_dense).any():
        # Missing views (NaN blocks): the encoder ignores them; their gradient is 0, not NaN.
        present = ~np.isnan(X_dense)
        std = np.sqrt(np.nanmean((X_dense - np.nanmean(X_dense, axis=0)) ** 2, axis=0))
        std = np.nan_to_num(std)
    else:
        present, std = None, X_dense.std(axis=0)
    x = torch.as_tensor(X_dense, dtype=torch.float64).requires_grad_(True)
    Z = transform(x)
    gradients = np.empty((X_dense.shape[1], Z.shape[1]))
    for k in range(Z.shape[1]):
        (grad,) = torch.autograd.grad(Z[:, k].sum(), x, retain_graph=k < Z.shape[1] - 1)
        grad = torch.nan_to_num(grad).numpy()
        if present is not None:
            counts = np.maximum(present.sum(axis=0), 1)
            gradients[:, k] = np.where(present, grad, 0.0).sum(axis=0) / counts
        else:
            gradients[:, k] = grad.mean(axis=0)
    loadings = gradients * std[:, None]
    return loadings if columns is None else loadings[columns]
