"""SSLClassifier / SSLRegressor: scikit-learn conformance, the semi-supervised contract and the study's claim."""

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.metrics import f1_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from skssl import ContrastiveEmbedder, MaskedAutoencoder, VAEEmbedder, make_expression
from skssl._finetune import split_labeled
from skssl.supervised import SSLClassifier, SSLRegressor

TINY = dict(
    n_components=4, hidden_dims=(16,), max_epochs=2, batch_size=512, early_stopping=False, random_state=0, device="cpu"
)

# Full-batch steps at a high learning rate: few steps (the checks fit dozens of times), yet enough to pass the
# score thresholds of the checks' toy problems (blobs; a one-feature linear regression, which needs gentler steps).
FAST = dict(strategy="finetune", batch_size=512, encoder_lr_ratio=1.0, random_state=0, device="cpu")
CHECKED = [
    SSLClassifier(MaskedAutoencoder(**TINY), max_epochs=8, learning_rate=0.1, **FAST),
    SSLRegressor(MaskedAutoencoder(**TINY), max_epochs=20, learning_rate=3e-2, **FAST),
    # The default strategy: the semi-supervised ensemble, without and with the embedding member.
    SSLClassifier(random_state=0),
    SSLRegressor(random_state=0),
    SSLClassifier(MaskedAutoencoder(**TINY), random_state=0),
]

# Checks that cannot pass, with the reason.
EXPECTED_FAILED_CHECKS = {
    SSLClassifier: {
        "check_classifiers_classes": (
            "fits labels {-1, 1}, but -1 marks unlabeled rows (scikit-learn's semi-supervised convention; the check "
            "exempts scikit-learn's own semi-supervised classifiers by name)."
        ),
    },
    SSLRegressor: {},
}


@parametrize_with_checks(CHECKED, expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS[type(est)])
def test_sklearn_compatible(estimator, check):
    check(estimator)


# ---------------------------------------------------------------------------------------------------------------
def program_cohort(n_samples=200, n_genes=40, n_classes=3, rank=3, noise=1.0, seed=0):
    """Classes that shift the activity of ``rank`` gene programs (blocks of co-expressed genes), under noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(n_classes, size=n_samples)
    centres = rng.normal(scale=1.5, size=(n_classes, rank))
    activity = centres[y] + rng.normal(size=(n_samples, rank))
    loadings = np.zeros((rank, n_genes))
    block = n_genes // (2 * rank)
    for k in range(rank):
        loadings[k, k * block : (k + 1) * block] = rng.uniform(0.5, 1.5, size=block)
    X = activity @ loadings + noise * rng.normal(size=(n_samples, n_genes))
    return X.astype(np.float32), y, activity


def hide_labels(y, n_per_class, seed=0, marker=-1):
    """Keep ``n_per_class`` labels of each class, mark the others unlabeled; return (y_semi, labeled mask)."""
    rng = np.random.default_rng(seed)
    labeled = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        labeled[rng.choice(np.flatnonzero(y == c), n_per_class, replace=False)] = True
    y_semi = np.where(labeled, y, marker) if marker is not None else np.where(labeled, y, None)
    return y_semi, labeled


SMALL_EMBEDDER = dict(n_components=4, hidden_dims=(16,), max_epochs=3, batch_size=64, device="cpu")
SMALL_FIT = dict(strategy="finetune", max_epochs=15, learning_rate=1e-2, device="cpu")


@pytest.fixture(scope="module")
def cohort():
    X, y, _ = program_cohort()
    return X, y


@pytest.fixture(scope="module")
def fitted_embedder(cohort):
    return MaskedAutoencoder(random_state=0, **SMALL_EMBEDDER).fit(cohort[0])


def test_string_labels_round_trip(cohort):
    X, y = cohort
    names = np.array(["biopsy", "cancer", "normal"])
    clf = SSLClassifier(MaskedAutoencoder(**SMALL_EMBEDDER), random_state=0, **SMALL_FIT).fit(X, names[y])
    assert list(clf.classes_) == ["biopsy", "cancer", "normal"]
    assert set(clf.predict(X)) <= set(names)
    assert clf.score(X, names[y]) > 0.5

    # Unlabeled string rows: -1 in an object array (scikit-learn's convention), None, or NaN from pandas.
    _, labeled = hide_labels(y, 10)
    for marker in (-1, None, np.nan):
        y_obj = np.where(labeled, names[y], "").astype(object)
        y_obj[~labeled] = marker
        fitted = SSLClassifier(MaskedAutoencoder(**SMALL_EMBEDDER), random_state=0, **SMALL_FIT).fit(X, y_obj)
        assert list(fitted.classes_) == ["biopsy", "cancer", "normal"]
        assert set(fitted.predict(X)) <= set(names)
    pd = pytest.importorskip("pandas")
    series = pd.Series(names[y]).where(labeled)
    fitted = SSLClassifier(MaskedAutoencoder(**SMALL_EMBEDDER), random_state=0, **SMALL_FIT).fit(X, series)
    assert list(fitted.classes_) == ["biopsy", "cancer", "normal"]


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("estimator", ["prefit", "baseline", "regressor"])
def test_unlabeled_rows_never_enter_the_supervised_loss(cohort, fitted_embedder, estimator):
    # The unlabeled rows carry deliberately misleading content (wrong labels hidden behind the marker, garbage
    # features): the supervised stage must be exactly the one fitted on the labeled rows alone.
    X, y = cohort
    rng = np.random.default_rng(1)
    if estimator == "regressor":
        target = X[:, :5].mean(axis=1).astype(np.float64) * 10
        labeled = rng.random(len(y)) < 0.3
        y_semi = np.where(labeled, target, np.nan)
        y_wrong_then_hidden = np.where(labeled, target, -target)  # wrong targets...
        y_wrong_then_hidden[~labeled] = np.nan  # ...hidden behind NaN
        make = lambda: SSLRegressor(fitted_embedder, prefit=True, random_state=0, **SMALL_FIT)
    else:
        y_semi, labeled = hide_labels(y, 8)
        y_wrong_then_hidden = np.where(labeled, y, (y + 1) % 3)
        y_wrong_then_hidden[~labeled] = -1
        if estimator == "prefit":
            make = lambda: SSLClassifier(fitted_embedder, prefit=True, random_state=0, **SMALL_FIT)
        else:
            make = lambda: SSLClassifier(
                MaskedAutoencoder(**SMALL_EMBEDDER), pretrain=False, random_state=0, **SMALL_FIT
            )
    X_garbage = X.copy()
    X_garbage[~labeled] = rng.normal(scale=100.0, size=X_garbage[~labeled].shape)

    reference = make().fit(X[labeled], y_semi[labeled])
    semi = make().fit(X_garbage, y_wrong_then_hidden)
    assert _same_weights(reference.module_, semi.module_)
    np.testing.assert_array_equal(reference.predict(X), semi.predict(X))
    if estimator != "regressor":
        np.testing.assert_array_equal(semi.classes_, [0, 1, 2])


def test_head_finetune_leaves_encoder_unchanged(cohort):
    X, y = cohort
    y_semi, _ = hide_labels(y, 10)
    head = SSLClassifier(MaskedAutoencoder(**SMALL_EMBEDDER), finetune="head", random_state=0, **SMALL_FIT)
    head.fit(X, y_semi)
    pretrained = head.embedder_.module_.state_dict()
    encoder = head.module_.body.state_dict()
    assert encoder and all(torch.equal(value, pretrained[name]) for name, value in encoder.items())
    # The fine-tuned body embeds as the embedder does (whose transform also standardises with fit statistics).
    raw = head.module_.embed(torch.from_numpy(X)).detach().numpy()
    standardized = (raw - head.embedder_.embedding_mean_) / head.embedder_.embedding_scale_
    standardized = standardized @ head.embedder_.embedding_whitening_  # transform also scales
    np.testing.assert_array_equal(head.embedder_.transform(X), standardized)
    # The test can fail: full fine-tuning does move the encoder.
    full = SSLClassifier(MaskedAutoencoder(**SMALL_EMBEDDER), finetune="full", random_state=0, **SMALL_FIT)
    full.fit(X, y_semi)
    pretrained = full.embedder_.module_.state_dict()
    assert any(not torch.equal(value, pretrained[name]) for name, value in full.module_.body.state_dict().items())


def test_prefit_embedder_survives_clone_when_frozen(cohort, fitted_embedder):
    # clone() (cross-validation, grid search) unfits a nested estimator; FrozenEstimator is the scikit-learn idiom
    # that keeps it fitted, and a frozen embedder counts as prefit.
    from sklearn.base import clone
    from sklearn.frozen import FrozenEstimator
    from sklearn.model_selection import cross_val_score

    X, y = cohort
    with pytest.raises(NotFittedError, match="FrozenEstimator"):
        clone(SSLClassifier(fitted_embedder, prefit=True, **SMALL_FIT)).fit(X, y)
    frozen = SSLClassifier(FrozenEstimator(fitted_embedder), random_state=0, **SMALL_FIT)
    assert cross_val_score(frozen, X, y, cv=2).shape == (2,)
    fitted = frozen.fit(X, y)
    prefit = SSLClassifier(fitted_embedder, prefit=True, random_state=0, **SMALL_FIT).fit(X, y)
    assert _same_weights(fitted.module_, prefit.module_)
    assert hasattr(fitted_embedder, "module_")  # the frozen embedder was neither refitted nor unfitted


def test_learning_rates_of_encoder_and_head(cohort, fitted_embedder, monkeypatch):
    from skssl import _finetune

    built = []  # the optimiser each fit trains with
    make_optimizer = _finetune.make_optimizer
    monkeypatch.setattr(_finetune, "make_optimizer", lambda *a, **k: built.append(make_optimizer(*a, **k)) or built[-1])
    X, y = cohort
    y_semi, _ = hide_labels(y, 10)
    lr = SMALL_FIT["learning_rate"]
    cases = [
        (dict(prefit=True), [lr, lr * 0.1]),
        (dict(prefit=True, encoder_lr_ratio=0.5), [lr, lr * 0.5]),
        (dict(prefit=True, finetune="head"), [lr]),
        (dict(pretrain=False), [lr, lr]),  # the baseline's encoder learns at the full rate
    ]
    for params, rates in cases:
        clf = SSLClassifier(fitted_embedder, random_state=0, **params, **SMALL_FIT).fit(X, y_semi)
        groups = built[-1].param_groups
        assert [g["lr"] for g in groups] == pytest.approx(rates)
        n_optimised = sum(p.numel() for g in groups for p in g["params"])
        n_trainable = sum(p.numel() for p in clf.module_.parameters() if p.requires_grad)
        assert n_optimised == n_trainable


def test_baseline_has_the_same_architecture(cohort, fitted_embedder):
    X, y = cohort
    y_semi, _ = hide_labels(y, 10)
    pretrained = SSLClassifier(fitted_embedder, prefit=True, random_state=0, **SMALL_FIT).fit(X, y_semi)
    baseline = SSLClassifier(fitted_embedder, pretrain=False, random_state=0, **SMALL_FIT).fit(X, y_semi)
    assert baseline.embedder_ is None
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes(baseline.module_) == shapes(pretrained.module_)
    # The baseline did not start from the pre-trained weights.
    assert not _same_weights(baseline.module_.body, pretrained.module_.body)
    # Only the embedding path is kept: no reconstruction heads in the fine-tuned network.
    assert not hasattr(pretrained.module_.body, "feature_head")


@pytest.mark.parametrize(
    "embedder, counts",
    [
        (ContrastiveEmbedder(**SMALL_EMBEDDER), False),
        (ContrastiveEmbedder(objective="byol", **SMALL_EMBEDDER), False),
        (MaskedAutoencoder(**SMALL_EMBEDDER), False),
        (VAEEmbedder(**SMALL_EMBEDDER), False),
        (VAEEmbedder(likelihood="nb", **SMALL_EMBEDDER), True),
    ],
    ids=["scarf", "byol", "vime", "vae", "vae-nb"],
)
def test_every_embedder(cohort, embedder, counts):
    X, y = cohort
    if counts:
        X = np.random.default_rng(0).poisson(np.exp(X / 4 + 2)).astype(np.float32)
    y_semi, _ = hide_labels(y, 10)
    clf = SSLClassifier(embedder, finetune="head", random_state=0, **SMALL_FIT).fit(X, y_semi)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # The head reads the embedder's embedding (the posterior mean for a VAE), which transform standardises...
    raw = clf.module_.embed(torch.from_numpy(X)).detach().numpy()
    standardized = (raw - clf.embedder_.embedding_mean_) / clf.embedder_.embedding_scale_
    standardized = standardized @ clf.embedder_.embedding_whitening_  # transform also scales
    np.testing.assert_allclose(standardized, clf.embedder_.transform(X), rtol=1e-5, atol=1e-6)
    # ...and the fine-tuned network keeps only the part of the embedder's module that computes it.
    n_body = sum(p.numel() for p in clf.module_.body.parameters())
    assert n_body < sum(p.numel() for p in clf.embedder_.module_.parameters())
    reg = SSLRegressor(embedder, random_state=0, **SMALL_FIT).fit(X, np.where(y_semi >= 0, y, np.nan) * 1.0)
    assert reg.predict(X).shape == (len(X),)


def test_pretrained_beats_scratch_with_5_percent_labels():
    # 5 % of 450 training samples labeled (7 per class); classes live in 3 gene programs under heavy noise.
    # Pre-training on all 450 finds the programs; the same network trained from scratch on 21 samples of 500
    # genes cannot. Held-out macro-F1, averaged over 3 seeds.
    scores = {"finetune_full": [], "finetune_head": [], "scratch": []}
    for seed in range(3):
        X, y, _ = program_cohort(n_samples=600, n_genes=500, noise=5.0, seed=seed)
        X_train, y_train, X_test, y_test = X[:450], y[:450], X[450:], y[450:]
        y_semi, _ = hide_labels(y_train, 7, seed=seed)
        embedder = MaskedAutoencoder(
            n_components=8,
            hidden_dims=(64,),
            dropout=0.0,
            max_epochs=30,
            batch_size=128,
            random_state=seed,
            device="cpu",
        ).fit(X_train)
        fit = dict(strategy="finetune", max_epochs=100, learning_rate=1e-2, random_state=seed, device="cpu")
        models = {
            "finetune_full": SSLClassifier(embedder, prefit=True, **fit),
            "finetune_head": SSLClassifier(embedder, prefit=True, finetune="head", **fit),
            "scratch": SSLClassifier(embedder, pretrain=False, **fit),
        }
        for name, model in models.items():
            scores[name].append(f1_score(y_test, model.fit(X_train, y_semi).predict(X_test), average="macro"))
    means = {name: np.mean(values) for name, values in scores.items()}
    assert means["finetune_full"] > means["scratch"] + 0.03, scores
    assert means["finetune_head"] > means["scratch"], scores


def test_regressor_predicts_in_target_units():
    X, _, activity = program_cohort(n_samples=300, n_genes=40, noise=0.5, seed=3)
    age = 60.0 + 8.0 * activity[:, 0]
    y = age.copy()
    y[100:] = np.nan  # a third of the samples have a known age
    embedder = MaskedAutoencoder(n_components=8, hidden_dims=(32,), max_epochs=20, batch_size=64, device="cpu")
    reg = SSLRegressor(embedder, strategy="finetune", random_state=0, max_epochs=100, learning_rate=1e-2, device="cpu")
    reg = reg.fit(X, y)
    assert not hasattr(reg, "classes_")
    assert reg.score(X[100:], age[100:]) > 0.5
    assert abs(reg.predict(X[100:]).mean() - age[100:].mean()) < 4.0


def test_validation_split_is_stratified_and_skipped_with_few_labels(cohort, fitted_embedder):
    X, y = cohort
    few, _ = hide_labels(y, 5)  # 15 labels: 2 validation rows cannot cover 3 classes
    clf = SSLClassifier(fitted_embedder, prefit=True, random_state=0, **SMALL_FIT).fit(X, few)
    assert clf.history_["validation_loss"] == []
    many, _ = hide_labels(y, 30)  # 90 labels: 9 validation rows, 3 per class
    clf = SSLClassifier(fitted_embedder, prefit=True, random_state=0, **SMALL_FIT)
    train, val = split_labeled(np.flatnonzero(many >= 0), many[many >= 0], 0.1, True, np.random.RandomState(0))
    assert len(val) == 9 and np.bincount(y[val]).tolist() == [3, 3, 3]
    assert set(train).isdisjoint(val) and len(train) + len(val) == 90
    assert len(clf.fit(X, many).history_["validation_loss"]) == clf.n_iter_


def test_reproducible_and_embedder_left_untouched(cohort):
    X, y = cohort
    y_semi, _ = hide_labels(y, 10)
    embedder = MaskedAutoencoder(**SMALL_EMBEDDER)  # random_state=None: seeded by the classifier's
    a = SSLClassifier(embedder, random_state=3, **SMALL_FIT).fit(X, y_semi)
    b = SSLClassifier(embedder, random_state=3, **SMALL_FIT).fit(X, y_semi)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert embedder.random_state is None and not hasattr(embedder, "module_")
    assert a.embedder_.random_state is not None


def test_class_weight_balanced(cohort, fitted_embedder):
    X, y = cohort
    rng = np.random.default_rng(0)
    labeled = (y == 0) | ((y == 1) & (rng.random(len(y)) < 0.08)) | (y == 2)
    y_semi = np.where(labeled, y, -1)
    counts = [
        np.sum(
            SSLClassifier(fitted_embedder, prefit=True, class_weight=cw, random_state=0, **SMALL_FIT)
            .fit(X, y_semi)
            .predict(X)
            == 1
        )
        for cw in (None, "balanced")
    ]
    assert counts[1] > counts[0]


def test_invalid_input(cohort, fitted_embedder):
    X, y = cohort
    with pytest.raises(ValueError, match="at least 2 labeled samples"):
        SSLClassifier(MaskedAutoencoder(**SMALL_EMBEDDER)).fit(X, np.full(len(y), -1))
    with pytest.raises(ValueError, match="at least 2 classes"):
        SSLClassifier(MaskedAutoencoder(**SMALL_EMBEDDER)).fit(X, np.where(y == 0, 0, -1))
    with pytest.raises(NotFittedError, match="not fitted"):
        SSLClassifier(MaskedAutoencoder(**SMALL_EMBEDDER), prefit=True).fit(X, y)
    with pytest.raises(ValueError, match="pretrain=False"):
        SSLClassifier(fitted_embedder, prefit=True, pretrain=False).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        SSLClassifier(fitted_embedder, prefit=True).fit(X[:, :10], y)
    pd = pytest.importorskip("pandas")
    named = MaskedAutoencoder(**SMALL_EMBEDDER).fit(pd.DataFrame(X).add_prefix("gene_"))
    with pytest.raises(ValueError, match="feature names"):
        SSLClassifier(named, prefit=True).fit(pd.DataFrame(X).add_prefix("probe_"), y)
    with pytest.raises(ValueError, match="NaN"):
        SSLClassifier(fitted_embedder, prefit=True).fit(np.where(X > 2, np.nan, X), y)
    with pytest.raises(ValueError, match="at least 2 labeled samples"):
        SSLRegressor(MaskedAutoencoder(**SMALL_EMBEDDER)).fit(X, np.full(len(y), np.nan))
    with pytest.raises(ValueError, match="numeric"):
        SSLRegressor(MaskedAutoencoder(**SMALL_EMBEDDER)).fit(X, np.array(["a", "b"])[y % 2])
    from sklearn.frozen import FrozenEstimator
    from sklearn.preprocessing import StandardScaler

    with pytest.raises(ValueError, match="skssl embedder"):
        SSLClassifier(FrozenEstimator(StandardScaler().fit(X))).fit(X, y)
    with pytest.raises(ValueError, match="head_hidden_dims"):
        SSLClassifier(head_hidden_dims=(8, 0)).fit(X, y)
    with pytest.raises(ValueError, match="finetune"):
        SSLClassifier(finetune="encoder").fit(X, y)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_linear_head_starts_as_the_logistic_regression_probe(cohort, fitted_embedder, n_classes):
    # LP-FT: before any step the fine-tuning network is the probe Pipeline(embedder, StandardScaler, LogReg);
    # a learning rate of ~0 keeps it there.
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = cohort
    keep = y < n_classes
    X, y = X[keep], y[keep]
    y_semi, labeled = hide_labels(y, 10)
    model = SSLClassifier(
        fitted_embedder,
        strategy="finetune",
        prefit=True,
        learning_rate=1e-12,
        max_epochs=1,
        random_state=0,
        device="cpu",
    ).fit(X, y_semi)
    # The head reads the encoder's output standardised, not scaled: undo transform's embedding_whitening_.
    Z = fitted_embedder.transform(X) @ np.linalg.inv(fitted_embedder.embedding_whitening_)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(Z[labeled], y[labeled])
    np.testing.assert_allclose(model.predict_proba(X), probe.predict_proba(Z), atol=1e-3)
    # The test can fail: a randomly initialised head predicts something else.
    scratch = SSLClassifier(
        MaskedAutoencoder(**SMALL_EMBEDDER),
        strategy="finetune",
        pretrain=False,
        learning_rate=1e-12,
        max_epochs=1,
        random_state=0,
        device="cpu",
    ).fit(X, y_semi)
    assert np.abs(scratch.predict_proba(X) - probe.predict_proba(Z)).max() > 0.05


def test_integer_labels_in_an_object_array_with_none_for_unlabeled():
    # Labels as read from a table: integers, None where there is no label (failed with "Unknown label type").
    X, y = make_expression(n_samples=60, n_genes=40, random_state=0)
    y_object = np.array(y, dtype=object)
    y_object[::2] = None
    clf = SSLClassifier(random_state=0).fit(X, y_object)
    assert clf.classes_.dtype.kind == "i" and list(clf.classes_) == [0, 1, 2]
    y_int = np.where(np.arange(len(y)) % 2 == 0, -1, y)
    np.testing.assert_array_equal(clf.predict_proba(X), SSLClassifier(random_state=0).fit(X, y_int).predict_proba(X))


def test_regressor_documents_its_target_scaling():
    """The targets' mean and scale are fitted attributes: predictions are in y's unit through them."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6)).astype(np.float32)
    y = 100.0 + 5.0 * X[:, 0]
    y_semi = y.copy()
    y_semi[::2] = np.nan
    reg = SSLRegressor(random_state=0).fit(X, y_semi)
    assert reg.y_mean_ == pytest.approx(float(np.mean(y[1::2])))
    assert reg.y_scale_ == pytest.approx(float(np.std(y[1::2])))
    assert abs(float(np.mean(reg.predict(X))) - 100.0) < 5.0
