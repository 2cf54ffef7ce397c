"""The semi-supervised ensemble (SSLClassifier / SSLRegressor, strategy="ensemble") and its pure pieces."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import make_blobs
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skssl import MaskedAutoencoder, make_expression
from skssl._ensemble import greedy_weights, knn_affinity, log_loss, spread
from skssl.supervised import SSLClassifier, SSLRegressor


def semi_labels(y, n_per_class, seed=0):
    rng = np.random.default_rng(seed)
    labeled = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        labeled[rng.choice(np.flatnonzero(y == c), n_per_class, replace=False)] = True
    return np.where(labeled, y, -1), labeled


@pytest.fixture(scope="module")
def cohort():
    X, y = make_expression(n_samples=150, n_genes=60, random_state=0)
    return X, y


# ---------------------------------------------------------------------------------------------------------------
# Pure pieces
# ---------------------------------------------------------------------------------------------------------------


def test_knn_affinity_is_symmetric_normalised_without_self_loops():
    points = np.array([[0.0], [1.0], [2.0], [10.0]])
    S = knn_affinity(points, 1).toarray()
    np.testing.assert_allclose(S, S.T)
    assert np.all(np.diag(S) == 0)
    # W: 0-1, 1-0 or 1-2, 2-1, 3-2 (symmetrised); degrees 1, 2, 2, 1.
    W = np.array([[0, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 0]], dtype=float)
    d = W.sum(axis=1)
    np.testing.assert_allclose(S, W / np.sqrt(np.outer(d, d)))


def test_spread_is_the_closed_form_fixed_point():
    rng = np.random.default_rng(0)
    S = knn_affinity(rng.normal(size=(30, 3)), 4)
    seeds = np.zeros((30, 2))
    seeds[0, 0] = seeds[1, 1] = 1.0
    expected = np.linalg.solve(np.eye(30) - 0.8 * S.toarray(), seeds)
    np.testing.assert_allclose(spread(S, seeds, alpha=0.8), expected, rtol=1e-6, atol=1e-9)


def test_spread_leaves_an_unreachable_component_at_zero():
    S = sp.csr_matrix(np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], dtype=float))
    out = spread(S, np.array([[1.0], [0.0], [0.0], [0.0]]))
    assert out[0, 0] > 0 and out[1, 0] > 0 and out[2, 0] == 0 and out[3, 0] == 0


def test_greedy_weights_prefer_the_better_member_and_sum_to_one():
    target = np.array([0, 1, 0, 1])
    good = np.array([[0.9, 0.1], [0.1, 0.9], [0.8, 0.2], [0.2, 0.8]])
    bad = np.full((4, 2), 0.5)
    weights = greedy_weights({"bad": bad, "good": good}, target, log_loss, rounds=10)
    assert weights["good"] == 1.0 and weights["bad"] == 0.0
    # Complementary members mix: each is right where the other is unsure.
    a = np.array([[0.99, 0.01], [0.5, 0.5], [0.99, 0.01], [0.5, 0.5]])
    b = np.array([[0.5, 0.5], [0.01, 0.99], [0.5, 0.5], [0.01, 0.99]])
    weights = greedy_weights({"a": a, "b": b}, target, log_loss, rounds=10)
    assert 0 < weights["a"] < 1 and weights["a"] + weights["b"] == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------------------------
# The estimators
# ---------------------------------------------------------------------------------------------------------------


def test_unlabeled_rows_change_the_model_their_hidden_labels_do_not(cohort):
    X, y = cohort
    y_semi, labeled = semi_labels(y, 5)
    with_unlabeled = SSLClassifier(random_state=0).fit(X, y_semi)
    labeled_only = SSLClassifier(random_state=0).fit(X[labeled], y[labeled])
    # The principal components, the scaler and the graph are fitted on every row: the unlabeled ones count.
    assert np.abs(with_unlabeled.predict_proba(X) - labeled_only.predict_proba(X)).max() > 1e-3
    # Wrong labels behind the unlabeled marker change nothing, whichever marker hides them.
    wrong = np.where(labeled, y, (y + 1) % 3)
    hidden = np.where(labeled, wrong, np.nan)  # float labels, NaN for unlabeled
    other = SSLClassifier(random_state=0).fit(X, hidden)
    np.testing.assert_array_equal(other.predict_proba(X), with_unlabeled.predict_proba(X))


def test_few_labels_average_uniformly_many_labels_weigh_by_held_out_predictions(cohort):
    X, y = cohort
    few = SSLClassifier(random_state=0).fit(X, semi_labels(y, 2)[0])
    assert few.weights_ == {"genes": 1 / 3, "pcs": 1 / 3, "graph": 1 / 3}
    assert few.ensemble_.held_out_loss_ is None
    many = SSLClassifier(random_state=0).fit(X, semi_labels(y, 20)[0])
    assert sum(many.weights_.values()) == pytest.approx(1.0)
    assert set(many.ensemble_.held_out_loss_) == {"genes", "pcs", "graph"}
    np.testing.assert_allclose(many.predict_proba(X).sum(axis=1), 1.0)


def test_linear_path_alone_reproduces_logistic_regression():
    # A separable toy problem with every row labeled: the "genes" member is StandardScaler + LogisticRegression.
    X, y = make_blobs(n_samples=80, centers=2, n_features=5, random_state=0)
    ours = SSLClassifier(members=("genes",), random_state=0).fit(X, y)
    baseline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y)
    np.testing.assert_array_equal(ours.predict(X), baseline.predict(X))
    np.testing.assert_allclose(ours.predict_proba(X), baseline.predict_proba(X), atol=1e-5)
    assert ours.weights_ == {"genes": 1.0}


def test_one_member_ensemble_equals_the_single_model(cohort):
    X, y = cohort
    y_semi, labeled = semi_labels(y, 8)
    embedder = MaskedAutoencoder(n_components=4, hidden_dims=(16,), max_epochs=3, random_state=0).fit(X)
    ours = SSLClassifier(FrozenEstimator(embedder), members=("embedding",), random_state=0).fit(X, y_semi)
    Z = embedder.transform(X)
    scaler = StandardScaler().fit(Z)  # statistics of every row, as the member standardises its view
    probe = LogisticRegression(max_iter=2000).fit(scaler.transform(Z)[labeled], y[labeled])
    np.testing.assert_allclose(ours.predict_proba(X), probe.predict_proba(scaler.transform(Z)), atol=1e-5)


def test_embedder_joins_the_members_when_given(cohort):
    X, y = cohort
    embedder = MaskedAutoencoder(n_components=4, hidden_dims=(16,), max_epochs=2, random_state=0)
    clf = SSLClassifier(embedder, random_state=0).fit(X, semi_labels(y, 5)[0])
    assert clf.members_ == ("genes", "pcs", "graph", "embedding")
    assert clf.embedder_ is not embedder and clf.embedder_.n_features_in_ == X.shape[1]
    assert SSLClassifier(random_state=0).fit(X, y).embedder_ is None


def test_reproducible(cohort):
    X, y = cohort
    y_semi = semi_labels(y, 10)[0]
    a = SSLClassifier(random_state=1).fit(X, y_semi).predict_proba(X)
    b = SSLClassifier(random_state=1).fit(X, y_semi).predict_proba(X)
    np.testing.assert_array_equal(a, b)


def test_regressor_ensemble_predicts_in_target_units():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 20))
    target = 100 + 30 * X[:, 0] - 20 * X[:, 1] + rng.normal(size=120)
    y = np.where(np.arange(120) < 40, target, np.nan)
    reg = SSLRegressor(random_state=0).fit(X, y)
    pred = reg.predict(X[40:])
    assert np.corrcoef(pred, target[40:])[0, 1] > 0.9
    assert abs(pred.mean() - target[40:].mean()) < 10
    assert sum(reg.weights_.values()) == pytest.approx(1.0)


def test_invalid_members_and_combinations(cohort):
    X, y = cohort
    for members in [(), ("genes", "genes"), ("trees",)]:
        with pytest.raises(ValueError, match="members must be"):
            SSLClassifier(members=members).fit(X, y)
    with pytest.raises(ValueError, match="strategy='finetune'"):
        SSLClassifier(MaskedAutoencoder(max_epochs=1), pretrain=False).fit(X, y)
    with pytest.raises(ValueError, match="strategy"):
        SSLClassifier(strategy="stack").fit(X, y)


def test_a_prefit_embedder_stands_alone_by_default(cohort):
    # Pre-trained elsewhere (prefit or frozen): the embedding member alone, i.e. logistic regression on the embedding
    # standardised with every row; the four members on request.
    X, y = cohort
    y_semi, _ = semi_labels(y, 3)
    embedder = MaskedAutoencoder(n_components=4, hidden_dims=(16,), max_epochs=2, random_state=0).fit(X)
    frozen = SSLClassifier(FrozenEstimator(embedder), random_state=0).fit(X, y_semi)
    prefit = SSLClassifier(embedder, prefit=True, random_state=0).fit(X, y_semi)
    alone = SSLClassifier(FrozenEstimator(embedder), members=("embedding",), random_state=0).fit(X, y_semi)
    assert frozen.members_ == prefit.members_ == ("embedding",)
    np.testing.assert_array_equal(frozen.predict_proba(X), alone.predict_proba(X))
    every = ("genes", "pcs", "graph", "embedding")
    assert SSLClassifier(embedder, prefit=True, members=every, random_state=0).fit(X, y_semi).members_ == every
