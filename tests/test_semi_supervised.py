"""SemiSupervisedEnsembleClassifier / SemiSupervisedEnsembleRegressor: the default strategy of SSLClassifier /
SSLRegressor as estimators of their own, which SSLClassifier / SSLRegressor(strategy="ensemble") fit and hold."""

import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.utils.estimator_checks import parametrize_with_checks

import skssl._training as training
from skssl import (
    MaskedAutoencoder,
    SemiSupervisedEnsembleClassifier,
    SemiSupervisedEnsembleRegressor,
    SSLClassifier,
    SSLRegressor,
    make_expression,
)
from skssl._ensemble import WeightedMembers
from skssl.exceptions import FitInterruptedWarning
from skssl.inspection import gene_importances

TINY = dict(n_components=4, hidden_dims=(16,), max_epochs=2, random_state=0, device="cpu")

# The embedding member's path is SSLClassifier(MaskedAutoencoder(...))'s, whose checks run in test_supervised.py.
CHECKED = [SemiSupervisedEnsembleClassifier(random_state=0), SemiSupervisedEnsembleRegressor(random_state=0)]
EXPECTED_FAILED_CHECKS = {
    SemiSupervisedEnsembleClassifier: {
        "check_classifiers_classes": (
            "fits labels {-1, 1}, but -1 marks unlabeled rows (scikit-learn's semi-supervised convention; the check "
            "exempts scikit-learn's own semi-supervised classifiers by name)."
        ),
    },
    SemiSupervisedEnsembleRegressor: {},
}


@parametrize_with_checks(CHECKED, expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS[type(est)])
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def cohort():
    X, y = make_expression(n_samples=90, n_genes=40, random_state=0)
    y_semi = np.asarray(y).copy()
    y_semi[::3] = -1  # 60 labels: 5-fold held-out weights
    target = X[:, 0].astype(np.float64) * 2.0 + np.random.default_rng(1).normal(size=len(X))
    target[::3] = np.nan
    return X, y_semi, target


# ---------------------------------------------------------------------------------------------------------------
# The same fit as SSLClassifier / SSLRegressor(strategy="ensemble"), exactly
# ---------------------------------------------------------------------------------------------------------------


def test_no_torch_training_parameters():
    assert set(SemiSupervisedEnsembleClassifier().get_params(deep=False)) == {
        "embedder",
        "members",
        "prefit",
        "class_weight",
        "random_state",
        "verbose",
    }
    assert set(SemiSupervisedEnsembleRegressor().get_params(deep=False)) == {
        "embedder",
        "members",
        "prefit",
        "random_state",
        "verbose",
    }


@pytest.mark.parametrize(
    "params",
    [{}, {"class_weight": "balanced"}, {"members": ("pcs", "graph")}],
    ids=["default", "balanced", "two-members"],
)
def test_classifier_predicts_exactly_as_ssl_classifier(cohort, params):
    X, y, _ = cohort
    ours = SemiSupervisedEnsembleClassifier(random_state=0, **params).fit(X, y)
    theirs = SSLClassifier(random_state=0, **params).fit(X, y)
    np.testing.assert_array_equal(ours.predict_proba(X), theirs.predict_proba(X))
    np.testing.assert_array_equal(ours.predict_log_proba(X), theirs.predict_log_proba(X))
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    assert ours.weights_ == theirs.weights_ and ours.held_out_loss_ == theirs.ensemble_.held_out_loss_
    # SSLClassifier holds such an estimator, fitted, with its own parameters.
    assert type(theirs.ensemble_) is SemiSupervisedEnsembleClassifier
    assert theirs.ensemble_.get_params() == ours.get_params()
    assert type(theirs.ensemble_.ensemble_) is WeightedMembers
    np.testing.assert_array_equal(theirs.ensemble_.predict_proba(X), theirs.predict_proba(X))
    assert ours.score(X[y != -1], y[y != -1]) == theirs.score(X[y != -1], y[y != -1])


def test_regressor_predicts_exactly_as_ssl_regressor(cohort):
    X, _, target = cohort
    ours = SemiSupervisedEnsembleRegressor(random_state=0).fit(X, target)
    theirs = SSLRegressor(random_state=0).fit(X, target)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    assert (ours.y_mean_, ours.y_scale_, ours.weights_) == (theirs.y_mean_, theirs.y_scale_, theirs.weights_)
    assert type(theirs.ensemble_) is SemiSupervisedEnsembleRegressor


def test_embedding_member_and_random_state_instance_as_ssl_classifier(cohort):
    X, y, _ = cohort
    embedder = MaskedAutoencoder(max_epochs=2, n_components=4, random_state=0)
    ours = SemiSupervisedEnsembleClassifier(embedder, random_state=0).fit(X, y)
    theirs = SSLClassifier(embedder, random_state=0).fit(X, y)
    assert ours.members_ == theirs.members_ == ("genes", "pcs", "graph", "embedding")
    np.testing.assert_array_equal(ours.predict_proba(X), theirs.predict_proba(X))
    assert theirs.embedder_ is theirs.ensemble_.embedder_ and theirs.embedder_ is not embedder
    # A RandomState is drawn from as SSLClassifier draws from it.
    ours = SemiSupervisedEnsembleClassifier(random_state=np.random.RandomState(3)).fit(X, y)
    theirs = SSLClassifier(random_state=np.random.RandomState(3)).fit(X, y)
    np.testing.assert_array_equal(ours.predict_proba(X), theirs.predict_proba(X))


def test_prefit_embedder_stands_alone_and_sparse_input_gives_the_dense_predictions(cohort):
    X, y, _ = cohort
    embedder = MaskedAutoencoder(**TINY).fit(X)
    frozen = SemiSupervisedEnsembleClassifier(FrozenEstimator(embedder), random_state=0).fit(X, y)
    assert frozen.members_ == ("embedding",) and frozen.weights_ == {"embedding": 1.0}
    prefit = SemiSupervisedEnsembleClassifier(embedder, prefit=True, random_state=0).fit(X, y)
    np.testing.assert_array_equal(prefit.predict_proba(X), frozen.predict_proba(X))
    assert clone(frozen).fit(X, y).embedder_.n_iter_ == embedder.n_iter_  # a frozen embedder survives clone
    with pytest.raises(NotFittedError, match="prefit=True"):
        SemiSupervisedEnsembleClassifier(MaskedAutoencoder(), prefit=True).fit(X, y)
    # Sparse input is densified (the members standardise every gene): the same model as the dense input's.
    X_sparse = sp.csr_matrix(np.where(X > np.median(X), X, 0.0))
    dense = SemiSupervisedEnsembleClassifier(random_state=0).fit(X_sparse.toarray(), y)
    sparse = SemiSupervisedEnsembleClassifier(random_state=0).fit(X_sparse, y)
    np.testing.assert_array_equal(sparse.predict_proba(X_sparse), dense.predict_proba(X_sparse.toarray()))


# ---------------------------------------------------------------------------------------------------------------
# Labels, errors, messages
# ---------------------------------------------------------------------------------------------------------------


def test_label_conventions_are_ssl_classifiers(cohort):
    X, y, target = cohort
    labels = np.array(["basal", "her2", "luminal"], dtype=object)[y.clip(0)]
    for marker in (-1, None, np.nan):
        unlabeled = labels.copy()
        unlabeled[y == -1] = marker
        clf = SemiSupervisedEnsembleClassifier(random_state=0).fit(X, unlabeled)
        assert list(clf.classes_) == ["basal", "her2", "luminal"]
    with pytest.warns(UserWarning, match='string "-1"'):
        SemiSupervisedEnsembleClassifier(random_state=0).fit(X, np.where(y == -1, "-1", labels).astype(str))
    spelled = labels.copy()
    spelled[1] = "basal "
    for cls in (SemiSupervisedEnsembleClassifier, SSLClassifier):
        with pytest.raises(ValueError, match="differ only in whitespace or case"):
            cls().fit(X, spelled)
    with pytest.raises(ValueError, match="SemiSupervisedEnsembleClassifier needs at least 2 labeled samples"):
        SemiSupervisedEnsembleClassifier().fit(X, np.r_[0, np.full(len(X) - 1, -1)])
    with pytest.raises(ValueError, match="SemiSupervisedEnsembleClassifier needs labeled samples of at least 2"):
        SemiSupervisedEnsembleClassifier().fit(X, np.where(y == -1, -1, 0))
    with pytest.raises(ValueError, match="SemiSupervisedEnsembleRegressor requires y to be passed"):
        SemiSupervisedEnsembleRegressor().fit(X, None)
    with pytest.raises(ValueError, match="SemiSupervisedEnsembleRegressor needs a numeric target"):
        SemiSupervisedEnsembleRegressor().fit(X, labels)
    with pytest.raises(ValueError, match="members must be"):
        SemiSupervisedEnsembleRegressor(members=("genes", "trees")).fit(X, target)
    with pytest.raises(ValueError, match="'embedder' parameter of SemiSupervisedEnsembleClassifier"):
        SemiSupervisedEnsembleClassifier(FrozenEstimator(SSLClassifier())).fit(X, y)


@pytest.mark.parametrize("cls", [SemiSupervisedEnsembleClassifier, SemiSupervisedEnsembleRegressor])
def test_unfitted_estimators_say_so(cls, cohort):
    methods = ["predict"] + (["predict_proba", "predict_log_proba"] if cls is SemiSupervisedEnsembleClassifier else [])
    for method in methods:
        with pytest.raises(NotFittedError, match=f"This {cls.__name__} instance is not fitted yet"):
            getattr(cls(), method)(cohort[0])


def test_verbose_summary_and_interruption_name_the_estimator_called(cohort, capsys, monkeypatch):
    X, y, _ = cohort
    SemiSupervisedEnsembleClassifier(verbose=1, random_state=0).fit(X, y)
    lines = capsys.readouterr().err.strip().splitlines()
    assert re.match(
        r"\[SemiSupervisedEnsembleClassifier\] ensemble of genes, pcs, graph fitted on 90 samples", lines[0]
    )
    assert lines[1].startswith("[SemiSupervisedEnsembleClassifier] weights ") and "5-fold" in lines[1]

    # Ctrl-C in the embedder's second epoch: one warning, naming the estimator whose fit was called.
    train_epoch, calls = training.train_epoch, []

    def interrupted_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) % 3 == 2:
            raise KeyboardInterrupt
        return train_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "train_epoch", interrupted_epoch)
    embedder = MaskedAutoencoder(n_components=4, hidden_dims=(16,), max_epochs=3, n_iter_no_change=100)
    for cls in (SemiSupervisedEnsembleClassifier, SSLClassifier):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = cls(embedder, random_state=0).fit(X, y)
        [warning] = [w for w in caught if issubclass(w.category, FitInterruptedWarning)]
        message = str(warning.message)
        assert message.startswith(f"{cls.__name__}: fit interrupted (KeyboardInterrupt) during the pre-training")
        assert "The ensemble was fitted" in message and f"fit {cls.__name__}(embedder=<that" in message
        assert warning.filename == __file__ and model.embedder_.n_iter_ == 1
        calls.append(1)  # the next fit's second epoch is interrupted again


def test_gene_importances_of_the_estimator_alone_are_ssl_classifiers(cohort):
    X, y, _ = cohort
    ours = SemiSupervisedEnsembleClassifier(random_state=0).fit(X, y)
    theirs = SSLClassifier(random_state=0).fit(X, y)
    np.testing.assert_array_equal(gene_importances(ours, X[:10]), gene_importances(theirs, X[:10]))
