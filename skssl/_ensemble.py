"""The members of the semi-supervised ensemble (``skssl.semi_supervised``, the default strategy of ``SSLClassifier``
and ``SSLRegressor``), their views of the rows, and their weights.

Each *member* reads one view of all rows (labeled and unlabeled) and is trained on the labeled ones:

- ``"genes"``: a linear model on the standardised genes (the baseline a user gets for free);
- ``"pcs"``: a linear model on the whitened top principal components, fitted on all rows;
- ``"graph"``: label spreading over a k-nearest-neighbour graph of all rows (in principal-component space);
- ``"embedding"``: a linear model on a self-supervised embedding pre-trained on all rows.

Their predictions are averaged with weights chosen from out-of-fold predictions on the labeled rows (greedy
ensemble selection, Caruana et al. 2004) when there are enough labels to judge them, uniformly otherwise. The
unlabeled rows enter through the principal components, the scaler, the graph and the embedding: more unlabeled
rows change the model, their (unknown) labels never do.

The small pure pieces (:func:`knn_affinity`, :func:`spread`, :func:`greedy_weights`) are tested on their own.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.neighbors import NearestNeighbors

from . import _reading

#: Every member, in the order used to break ties.
MEMBERS = ("genes", "pcs", "graph", "embedding")
#: Members when no embedder is given (chosen by leave-one-dataset-out, see docs/benchmarks.md).
DEFAULT_MEMBERS = ("genes", "pcs", "graph")
#: Members when the embedder is prefit (pre-trained elsewhere, e.g. on a pool of other studies; docs/benchmarks.md).
PREFIT_MEMBERS = ("embedding",)
N_PCS = 8  # whitened components read by the "pcs" member
N_GRAPH_PCS = 10  # components the "graph" member's neighbours are found in (not whitened)
N_NEIGHBORS = 10
SPREAD_ALPHA = 0.8
#: Weights come from out-of-fold predictions only when every class has this many labels (classification) or
#: when this many rows are labeled (regression); with fewer, a held-out prediction says little and the members
#: are averaged uniformly.
MIN_PER_CLASS_FOR_WEIGHTS = 3
MIN_LABELED_FOR_WEIGHTS = 10
GREEDY_ROUNDS = 20
LEAVE_ONE_OUT_MAX = 40  # up to this many labeled rows, leave-one-out; above, 5-fold
LINEAR_MAX_ITER = 2000


# ---------------------------------------------------------------------------------------------------------------
# Small pure functions
# ---------------------------------------------------------------------------------------------------------------


def knn_affinity(points, n_neighbors):
    """Symmetrically normalised affinity ``D^-1/2 W D^-1/2`` of the symmetrised k-nearest-neighbour graph.

    ``W[i, j] = 1`` when ``j`` is among the ``n_neighbors`` nearest rows of ``i`` or the reverse (no self-loops).
    """
    n = points.shape[0]
    k = min(n_neighbors, n - 1)
    if k < 1:
        return sp.csr_matrix((n, n))
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)
    # Drop each row's own index (not always in column 0 when rows coincide).
    cols = np.array([[j for j in row if j != i][:k] for i, row in enumerate(idx)])
    W = sp.csr_matrix((np.ones(n * k), (np.repeat(np.arange(n), k), cols.ravel())), shape=(n, n))
    W = W.maximum(W.T)
    inv_sqrt = 1.0 / np.sqrt(np.maximum(np.asarray(W.sum(axis=1)).ravel(), 1e-12))
    return sp.diags(inv_sqrt) @ W @ sp.diags(inv_sqrt)


def spread(affinity, seeds, alpha=SPREAD_ALPHA, tol=1e-8, max_iter=1000):
    """Label spreading (Zhou et al., 2004): the fixed point ``F = alpha * S F + seeds``, i.e.
    ``(I - alpha S)^-1 seeds``, by iteration (``S`` is sparse, so this stays linear in the rows)."""
    F = np.array(seeds, dtype=np.float64)
    for _ in range(max_iter):
        new = alpha * (affinity @ F) + seeds
        if np.abs(new - F).max() <= tol * max(np.abs(new).max(), 1e-300):
            return new
        F = new
    return F


def greedy_weights(predictions, target, loss, rounds=GREEDY_ROUNDS):
    """Ensemble selection with replacement (Caruana et al., 2004): ``rounds`` times, add one copy of the member
    whose addition gives the lowest ``loss(average, target)``; return each member's share of the copies.

    ``predictions``: name -> array of held-out predictions (same shape each), in tie-breaking order.
    """
    names = list(predictions)
    counts = dict.fromkeys(names, 0)
    total = None
    for step in range(1, rounds + 1):
        scores = []
        for name in names:
            candidate = predictions[name] if total is None else total + predictions[name]
            scores.append(loss(candidate / step, target))
        best = names[int(np.argmin(scores))]
        counts[best] += 1
        total = predictions[best] if total is None else total + predictions[best]
    return {name: counts[name] / rounds for name in names}


def log_loss(proba, target):
    """Mean negative log-likelihood of integer ``target`` under ``proba``."""
    return -float(np.mean(np.log(np.clip(proba[np.arange(len(target)), target], 1e-12, None))))


def squared_error(pred, target):
    return float(np.mean((pred - target) ** 2))


# ---------------------------------------------------------------------------------------------------------------
# Views of the rows: standardised genes, principal components
# ---------------------------------------------------------------------------------------------------------------


def dense_rows(X):
    """All rows of a validated ``X`` (array, sparse, memmap) as one dense float32 array, read in batches."""
    return np.vstack([block for _, block in _reading.iter_batches(X, _reading.CHUNK_ROWS, check_finite=True)])


#: Genes whose largest absolute value lies outside ``[2**-SAFE_EXPONENT, 2**SAFE_EXPONENT]`` have their mean and
#: standard deviation taken on a copy rescaled by a power of two: in float32 the sum of squares overflows above
#: about 2**64 per value and loses precision as subnormal numbers below about 2**-63. A power of two rescales
#: exactly, so these genes get the moments exact arithmetic would give; genes inside the range (all of ordinary
#: data) are computed as they always were.
SAFE_EXPONENT = 32


def gene_moments(X):
    """Per-gene ``(mean, standard deviation, constant)`` of a float ``X``, finite at every finite scale of a gene.

    ``constant`` marks the genes with one value in every row; their mean is that value exactly (a float32 sum can
    miss it by an ulp, which standardising would blow up to +-1) and their standard deviation 0.
    """
    high, low = X.max(axis=0), X.min(axis=0)
    constant = high == low
    _, exponent = np.frexp(np.maximum(high, -low))  # largest |value| = m * 2**exponent, 0.5 <= m < 1 (0 for 0)
    extreme = (exponent > SAFE_EXPONENT) | (exponent < -SAFE_EXPONENT)
    if not extreme.any():
        mean, std = X.mean(axis=0), X.std(axis=0)
    else:
        # Every gene of the copy (not only the extreme ones) keeps its column, so that numpy sums in the same order
        # as on X: the other genes' moments are bitwise those of X, the extreme genes' those of X rescaled exactly.
        shift = np.where(extreme, exponent, 0)
        unit = np.ldexp(X, -shift)  # an extreme gene's largest |value| is in [0.5, 1)
        mean = np.ldexp(unit.mean(axis=0), shift)
        std = np.ldexp(unit.std(axis=0), shift)
    return np.where(constant, high, mean), np.where(constant, 0, std), constant


class GeneViews:
    """Gene standardisation and principal components, fitted on every row of the fit data."""

    # What skssl.persistence stores, exhaustively (a file with anything else is refused): constructor arguments
    # and fitted attributes. The same pair on each class below.
    _init_args = ()
    _fitted_attributes = ("mean_", "scale_", "pca_", "pc_scale_")

    def fit(self, X, n_components, seed):
        self.mean_, scale, constant = gene_moments(X)
        # A constant gene carries nothing: scale 1 keeps it at exactly zero instead of dividing by zero. Whether a
        # gene is constant does not depend on its scale (a fixed floor on the standard deviation would declare
        # every gene of X * 1e-19 constant).
        self.scale_ = np.where(constant | (scale == 0), 1.0, scale)
        Z = self.standardised(X)
        n_components = min(n_components, X.shape[0] - 1, X.shape[1])
        self.pca_ = None
        if n_components >= 1:
            self.pca_ = PCA(n_components=n_components, random_state=seed).fit(Z)
            scores = self.pca_.transform(Z)
            spread_ = scores.std(axis=0)
            self.pc_scale_ = np.where(spread_ > 1e-12, spread_, 1.0)
        return self

    def standardised(self, X):
        try:
            # Only values near float32's largest, or rows far off the scale of the fit data, overflow here: redo
            # those in float64 and refuse what float32 cannot hold rather than return infinities.
            with np.errstate(over="raise"):
                return (X - self.mean_) / self.scale_
        except FloatingPointError:
            pass
        Z = (X.astype(np.float64) - self.mean_) / self.scale_
        limit = np.finfo(X.dtype).max
        if not (np.abs(Z) <= limit).all():
            row, gene = np.argwhere(~(np.abs(Z) <= limit))[0]
            raise ValueError(
                f"X[{row}, {gene}] = {float(X[row, gene]):.6g} lies {Z[row, gene]:.3g} standard deviations from the "
                f"mean of its gene in the fit data, beyond what {X.dtype} holds: X is not on the scale the estimator "
                "was fitted on. Transform it as the fit data was (same units and normalisation)."
            )
        return Z.astype(X.dtype)

    def components(self, Z, n):
        """The first ``n`` principal-component scores of standardised rows ``Z`` (unscaled)."""
        if self.pca_ is None:
            return np.zeros((Z.shape[0], 1))
        return self.pca_.transform(Z)[:, :n]


# ---------------------------------------------------------------------------------------------------------------
# Members
# ---------------------------------------------------------------------------------------------------------------


class LinearMember:
    """Logistic regression (classification) or ridge regression on one view, standardised on all rows."""

    _init_args = ("task", "n_classes", "seed", "class_weight")
    _fitted_attributes = ("mean_", "scale_", "model_", "only_")

    def __init__(self, task, n_classes, seed, class_weight=None):
        self.task, self.n_classes, self.seed, self.class_weight = task, n_classes, seed, class_weight

    def prepare(self, features):
        """Standardise the view with statistics of all fit rows; return the fit rows' features."""
        self.mean_ = features.mean(axis=0)
        scale = features.std(axis=0)
        self.scale_ = np.where(scale > 1e-12, scale, 1.0)
        return self.transform(features)

    def transform(self, features):
        return (features - self.mean_) / self.scale_

    def fit(self, features, rows, y):
        """Fit on the fit rows ``rows`` (indices into ``features``), whose encoded targets are ``y``."""
        if self.task == "classification":
            self.model_ = None
            if len(np.unique(y)) >= 2:
                weights = None if self.class_weight is None else dict(enumerate(self.class_weight))
                self.model_ = LogisticRegression(max_iter=LINEAR_MAX_ITER, class_weight=weights, random_state=self.seed)
                self.model_.fit(features[rows], y)
            else:  # a fold with one class only: that class, for certain
                self.only_ = int(y[0])
        else:
            self.model_ = Ridge(alpha=1.0).fit(features[rows], y)
        return self

    def predict(self, features):
        if self.task == "regression":
            return self.model_.predict(features)
        proba = np.zeros((features.shape[0], self.n_classes))
        if self.model_ is None:
            proba[:, self.only_] = 1.0
        else:
            proba[:, self.model_.classes_] = self.model_.predict_proba(features)
        return proba


class GraphMember:
    """Label spreading over the k-nearest-neighbour graph of all fit rows; a new row takes the mean of its
    neighbours' spread scores."""

    _init_args = ("task", "n_classes", "seed", "class_weight")
    # ``neighbors_`` (a NearestNeighbors search structure) is not stored: persistence refits it on ``points_``.
    _fitted_attributes = ("points_", "affinity_", "scores_")

    def __init__(self, task, n_classes, seed, class_weight=None):
        self.task, self.n_classes, self.seed, self.class_weight = task, n_classes, seed, class_weight

    def prepare(self, points):
        self.points_ = points
        self.affinity_ = knn_affinity(points, N_NEIGHBORS)
        self.neighbors_ = NearestNeighbors(n_neighbors=min(N_NEIGHBORS, len(points))).fit(points)
        return np.arange(len(points))  # the member reads fit rows by index

    def transform(self, points):
        return points

    def fit(self, _, rows, y):
        """Spread the encoded targets ``y`` of the fit rows ``rows`` over the graph of all fit rows."""
        n = self.points_.shape[0]
        if self.task == "classification":
            seeds = np.zeros((n, self.n_classes))
            seeds[rows, y] = 1.0
            # Each class brings the same total mass, so a frequent class does not flood the graph.
            seeds[rows] /= np.bincount(y, minlength=self.n_classes)[y][:, None]
            if self.class_weight is not None:
                seeds *= self.class_weight
            scores = np.maximum(spread(self.affinity_, seeds), 0.0)
            mass = scores.sum(axis=1, keepdims=True)
            # A row the labels never reach (another connected component) gets the labeled rows' class shares.
            prior = np.bincount(y, minlength=self.n_classes) / len(rows)
            self.scores_ = np.where(mass > 0, scores / np.where(mass > 0, mass, 1.0), prior)
        else:
            seeds = np.zeros((n, 2))
            seeds[rows, 0] = y
            seeds[rows, 1] = 1.0
            values = spread(self.affinity_, seeds)
            # Spread target over spread mass: a diffusion-kernel weighted mean of the labeled targets.
            self.scores_ = np.where(values[:, 1] > 0, values[:, 0] / np.where(values[:, 1] > 0, values[:, 1], 1), 0.0)
        return self

    def predict(self, points):
        if isinstance(points, np.ndarray) and points.ndim == 1:  # fit rows, by index (held-out predictions)
            return self.scores_[points]
        _, idx = self.neighbors_.kneighbors(points)
        return self.scores_[idx].mean(axis=1)


# ---------------------------------------------------------------------------------------------------------------
# The ensemble
# ---------------------------------------------------------------------------------------------------------------


class WeightedMembers:
    """The fitted members, the gene views they read, and their weights: fit members on views of all rows, weigh them
    on held-out predictions of the labeled rows (the ``ensemble_`` of ``SemiSupervisedEnsembleClassifier`` /
    ``SemiSupervisedEnsembleRegressor``; named ``SemiSupervisedEnsemble`` up to skssl 0.2.1).

    Parameters
    ----------
    task : {"classification", "regression"}
    members : tuple of str
        Names from :data:`MEMBERS`.
    n_classes : int or None
    seed : int
    class_weight : ndarray of shape (n_classes,) or None
        Weight of each (encoded) class in the linear members' losses and the graph's label mass.
    """

    _init_args = ("task", "members", "n_classes", "seed", "class_weight")
    _fitted_attributes = ("genes_", "members_", "weights_", "held_out_loss_")

    def __init__(self, task, members, n_classes, seed, class_weight=None):
        self.task, self.members, self.n_classes, self.seed = task, tuple(members), n_classes, seed
        self.class_weight = class_weight

    def _views(self, X_dense, embedding):
        Z = self.genes_.standardised(X_dense)
        views = {}
        if "genes" in self.members:
            views["genes"] = Z
        if "pcs" in self.members:
            views["pcs"] = self.genes_.components(Z, N_PCS) / self.genes_.pc_scale_[:N_PCS]
        if "graph" in self.members:
            views["graph"] = self.genes_.components(Z, N_GRAPH_PCS)
        if "embedding" in self.members:
            views["embedding"] = embedding
        return views

    def fit(self, X_dense, rows, y, embedding=None):
        """``X_dense``: every fit row; ``rows``: the labeled ones; ``y``: their encoded targets, in that order."""
        self.genes_ = GeneViews().fit(X_dense, max(N_PCS, N_GRAPH_PCS), self.seed)
        views = self._views(X_dense, embedding)
        make = {"graph": GraphMember}
        self.members_, features = {}, {}
        for name in self.members:
            member = make.get(name, LinearMember)(self.task, self.n_classes, self.seed, self.class_weight)
            features[name] = member.prepare(views[name])
            self.members_[name] = member
        self.weights_ = self._weights(features, rows, y)
        for name, member in self.members_.items():
            member.fit(features[name], rows, y)
        return self

    def _enough_labels(self, y):
        if self.task == "classification":
            return np.bincount(y, minlength=self.n_classes).min() >= MIN_PER_CLASS_FOR_WEIGHTS
        return len(y) >= MIN_LABELED_FOR_WEIGHTS

    def _weights(self, features, rows, y):
        uniform = dict.fromkeys(self.members, 1.0 / len(self.members))
        self.held_out_loss_ = None
        if len(self.members) == 1 or not self._enough_labels(y):
            return uniform
        if len(rows) <= LEAVE_ONE_OUT_MAX:
            folds = [(np.delete(np.arange(len(rows)), i), np.array([i])) for i in range(len(rows))]
        elif self.task == "classification":
            # Every class has at least MIN_PER_CLASS_FOR_WEIGHTS (3) labeled rows here, so with 5 folds each fold's
            # training rows still hold 2 or more of every class. scikit-learn's warning that a class has fewer
            # members than n_splits is about a cross-validation the user never asked for: silenced (exactly that
            # warning), the folds kept as they are so that the weights are unchanged.
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", message="The least populated class in y has only", category=UserWarning
                )
                folds = list(StratifiedKFold(5, shuffle=True, random_state=self.seed).split(rows, y))
        else:
            folds = KFold(5, shuffle=True, random_state=self.seed).split(rows)
        held_out = {}
        folds = list(folds)
        for name, member in self.members_.items():
            shape = (len(rows), self.n_classes) if self.task == "classification" else (len(rows),)
            out = np.zeros(shape)
            for train, test in folds:
                member.fit(features[name], rows[train], y[train])
                out[test] = member.predict(features[name][rows[test]])
            held_out[name] = out
        loss = log_loss if self.task == "classification" else squared_error
        self.held_out_loss_ = {name: loss(p, y) for name, p in held_out.items()}
        return greedy_weights(held_out, y, loss)

    def predict(self, X_dense, embedding=None):
        """Weighted average of the members' probabilities (classification) or predictions (regression)."""
        views = self._views(X_dense, embedding)
        total = 0.0
        for name, member in self.members_.items():
            weight = self.weights_[name]
            if weight > 0:
                total = total + weight * member.predict(member.transform(views[name]))
        return total
