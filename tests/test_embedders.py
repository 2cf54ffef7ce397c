"""Behaviour of the three self-supervised embedders beyond scikit-learn's API checks."""

import pickle
import warnings

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from _strict_warnings import every_warning_an_error
from _synthetic import low_rank_classes
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from skssl import ContrastiveEmbedder, MaskedAutoencoder, VAEEmbedder, make_expression

FAST = dict(max_epochs=3, hidden_dims=(32,), n_components=4, device="cpu", random_state=0)

GAUSSIAN_EMBEDDERS = [
    ContrastiveEmbedder(**FAST),
    ContrastiveEmbedder(objective="byol", **FAST),
    MaskedAutoencoder(**FAST),
    VAEEmbedder(**FAST),
]
IDS = ["scarf", "byol", "vime", "vae"]


@pytest.fixture(scope="module")
def data():
    return low_rank_classes(n_samples=120, n_features=30, seed=1)


def counts_from(X, seed=0):
    rng = np.random.default_rng(seed)
    return rng.poisson(np.exp(1.0 + 0.3 * X)).astype(np.float32)


# ----------------------------------------------------------------------------- learning something


def probe_accuracy(embedder, X_train, y_train, X_test, y_test):
    clf = LogisticRegression(max_iter=2000).fit(embedder.transform(X_train), y_train)
    return clf.score(embedder.transform(X_test), y_test)


@pytest.mark.parametrize(
    "embedder",
    [
        ContrastiveEmbedder(temperature=0.5),
        # BYOL learns more slowly on small tabular data: milder corruption, more steps (see params below).
        ContrastiveEmbedder(objective="byol", corruption_rate=0.3),
        MaskedAutoencoder(),
        VAEEmbedder(),
        VAEEmbedder(likelihood="nb"),
    ],
    ids=IDS + ["vae-nb"],
)
def test_trained_encoder_beats_untrained_encoder(embedder):
    X, y = low_rank_classes(n_samples=500, n_features=80, noise=4.0, seed=0)
    if getattr(embedder, "likelihood", None) == "nb":
        X = counts_from(X)
    X_train, X_test, y_train, y_test = train_test_split(X, y, train_size=0.5, random_state=0, stratify=y)
    epochs = 60 if getattr(embedder, "objective", None) == "byol" else 40
    params = dict(n_components=8, hidden_dims=(64,), max_epochs=epochs, device="cpu", random_state=0)
    trained = clone(embedder).set_params(**params).fit(X_train)
    # An untrained encoder of the same architecture: a learning rate too small to move any weight.
    untrained = clone(embedder).set_params(**{**params, "max_epochs": 1, "learning_rate": 1e-12}).fit(X_train)
    trained_acc = probe_accuracy(trained, X_train, y_train, X_test, y_test)
    untrained_acc = probe_accuracy(untrained, X_train, y_train, X_test, y_test)
    assert trained_acc > untrained_acc + 0.05, (trained_acc, untrained_acc)


# ----------------------------------------------------------------------------- unit-scale embedding


def raw_embedding(fitted, X):
    """The encoder output (``module_.embed``) on ``X``, before transform standardises and scales it."""
    with torch.no_grad():
        return fitted.module_.embed(torch.as_tensor(X, dtype=torch.float32)).numpy()


def assert_standardised_and_scaled(fitted, X, Z):
    """``Z = transform(X)`` of the fit data: mean 0; the standardised encoder output times one factor
    ``lambda_1 ** -0.25`` (``lambda_1`` its largest principal variance, factor 1 when that is at most 1): every
    principal variance multiplied by the same ``lambda_1 ** -0.5``, so the directions keep their order and ratios
    and the leading one ends at ``sqrt(lambda_1)``; each component's variance is at most 1."""
    np.testing.assert_allclose(Z.mean(axis=0, dtype=np.float64), 0.0, atol=1e-5)
    standardised = (raw_embedding(fitted, X) - fitted.embedding_mean_) / fitted.embedding_scale_
    np.testing.assert_allclose(standardised.std(axis=0, dtype=np.float64), 1.0, atol=1e-4)
    before = np.linalg.eigvalsh(np.cov(standardised, rowvar=False, bias=True, dtype=np.float64))
    after = np.linalg.eigvalsh(np.cov(Z, rowvar=False, bias=True, dtype=np.float64))
    factor = max(before[-1], 1.0) ** -0.25
    np.testing.assert_allclose(after, before * factor**2, rtol=1e-3, atol=1e-4)
    assert Z.std(axis=0, dtype=np.float64).max() <= 1.0 + 1e-4
    np.testing.assert_allclose(fitted.embedding_whitening_, factor * np.eye(fitted.n_components_), rtol=1e-4)
    np.testing.assert_allclose(Z, standardised @ fitted.embedding_whitening_, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("embedder", [*GAUSSIAN_EMBEDDERS, VAEEmbedder(likelihood="nb", **FAST)], ids=IDS + ["vae-nb"])
def test_transform_of_the_fit_data_is_standardised_and_scaled(embedder, data):
    X, _ = data
    if getattr(embedder, "likelihood", None) == "nb":
        X = counts_from(X)
    fitted = clone(embedder).fit(X)
    Z = fitted.transform(X)
    assert_standardised_and_scaled(fitted, X, Z)
    for name in ("embedding_mean_", "embedding_scale_"):
        value = getattr(fitted, name)
        assert value.dtype == np.float32 and value.shape == (fitted.n_components_,)
    assert (fitted.embedding_scale_ > 0).all()
    W = fitted.embedding_whitening_
    assert W.dtype == np.float32 and W.shape == (fitted.n_components_,) * 2
    np.testing.assert_array_equal(W, W.T)
    # The statistics are those of the fit data, fixed: a subset is not re-standardised.
    np.testing.assert_allclose(fitted.transform(X[:10]), Z[:10], rtol=1e-5, atol=1e-5)
    assert np.abs(fitted.transform(X[:10]).mean(axis=0)).max() > 1e-3


def test_correlated_components_keep_their_geometry_with_a_square_root_leading_variance(data):
    # 16 components of a 2-D input: strongly correlated (leading principal variance far above 1). One factor shrinks
    # them all: the leading variance becomes its square root, and the principal directions do not change (a
    # per-direction whitening would equalise them, which cost few-label classifiers most of their accuracy).
    X, _ = data
    fitted = MaskedAutoencoder(**{**FAST, "n_components": 16}).fit(X[:, :2])
    Z = fitted.transform(X[:, :2])
    assert_standardised_and_scaled(fitted, X[:, :2], Z)
    standardised = (raw_embedding(fitted, X[:, :2]) - fitted.embedding_mean_) / fitted.embedding_scale_
    lambda_1 = np.linalg.eigvalsh(np.cov(standardised, rowvar=False, bias=True))[-1]
    assert lambda_1 > 4
    assert np.linalg.eigvalsh(np.cov(Z, rowvar=False, bias=True)).max() == pytest.approx(np.sqrt(lambda_1), rel=1e-3)
    assert not np.allclose(fitted.embedding_whitening_, np.eye(16), atol=0.1)
    leading = lambda A: np.abs(np.linalg.eigh(np.cov(A, rowvar=False, bias=True))[1][:, -1])
    np.testing.assert_allclose(leading(Z), leading(standardised), atol=1e-3)


def test_embedding_statistics_are_streamed_in_batches(data):
    # Statistics merged over batches of 7 rows equal those of the whole fit data in one batch.
    X, _ = data
    fitted = MaskedAutoencoder(**FAST).fit(X)
    whole = {k: getattr(fitted, k) for k in ("embedding_mean_", "embedding_scale_", "embedding_whitening_")}
    batches = fitted._module_batches(fitted.module_, X, fitted.module_.embed, 7)
    merged = fitted._embedding_statistics(z for _, z in batches)
    assert len(X) > 7
    for name, value in whole.items():
        np.testing.assert_allclose(merged[name], value, rtol=1e-5, atol=1e-6)


def test_partial_fit_standardises_with_the_statistics_of_its_chunk(data):
    X, _ = data
    model = MaskedAutoencoder(**FAST)
    for chunk in (X[:60], X[60:]):
        model.partial_fit(chunk)
        assert_standardised_and_scaled(model, chunk, model.transform(chunk))


def test_a_component_without_spread_is_centred_not_divided_by_zero(data):
    X, _ = data
    identical = np.tile(X[:1], (20, 1))  # every sample alike: every component of the embedding is constant
    # fit refuses constant data (nothing to learn), so take the statistics of a fitted encoder on such rows: what a
    # component that collapsed during training gets.
    fitted = MaskedAutoencoder(**FAST).fit(X)
    fitted.__dict__.update(fitted._embedding_statistics_of(fitted.module_, identical, fitted.batch_size_))
    np.testing.assert_array_equal(fitted.embedding_scale_, 1.0)
    np.testing.assert_array_equal(fitted.embedding_whitening_, np.eye(fitted.n_components_))
    Z = fitted.transform(identical)
    assert np.isfinite(Z).all()
    np.testing.assert_allclose(Z, 0.0, atol=1e-5)
    assert np.isfinite(fitted.transform(X)).all()


def test_rank_deficient_embedding_gives_finite_invertible_whitening(data):
    # 2 fit samples, 4 components: a covariance of rank 1.
    X, _ = data
    fitted = VAEEmbedder(**{**FAST, "early_stopping": False}).fit(X[:2])
    W = fitted.embedding_whitening_.astype(np.float64)
    assert np.isfinite(W).all()
    assert np.linalg.eigvalsh(W).min() >= 4**-0.25 - 1e-6  # n_components ** -0.25 at worst: well conditioned
    Z = fitted.transform(X)
    assert np.isfinite(Z).all()
    np.testing.assert_allclose(fitted._embedding_input(Z), raw_embedding(fitted, X), rtol=1e-4, atol=1e-4)


def _literal_and_scaled_pipelines(embedder, X, y):
    """Fit ``ssl -> LogisticRegression()`` with ConvergenceWarning as an error; test accuracy of it, of the same
    fitted embedder followed by a StandardScaler (which undoes transform's scaling, so it may need more than
    LogisticRegression's 100 iterations: not the pipeline under test), and of the reference: the standardised
    encoder output with a LogisticRegression run to convergence."""
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        literal = Pipeline([("ssl", embedder), ("clf", LogisticRegression())]).fit(X_train, y_train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scaled = make_pipeline(FrozenEstimator(literal.named_steps["ssl"]), StandardScaler(), LogisticRegression())
        scaled.fit(X_train, y_train)
    fitted = literal.named_steps["ssl"]
    standardise = lambda A: (raw_embedding(fitted, A) - fitted.embedding_mean_) / fitted.embedding_scale_
    reference = LogisticRegression(max_iter=10_000).fit(standardise(X_train), y_train)
    return literal.score(X_test, y_test), scaled.score(X_test, y_test), reference.score(standardise(X_test), y_test)


PIPELINE_EMBEDDERS = [ContrastiveEmbedder, MaskedAutoencoder, VAEEmbedder]


@pytest.mark.parametrize("cls", PIPELINE_EMBEDDERS, ids=["scarf", "vime", "vae"])
def test_literal_pipeline_converges_with_logistic_regression_defaults(cls):
    # Before transform was standardised this failed for all three: a ConvergenceWarning (max_iter=100) with
    # MaskedAutoencoder, predictions unlike those of the pipeline with a StandardScaler with the other two.
    # (With transform's scaling the StandardScaler is no longer a no-op, so only accuracies are compared.)
    X, y = make_expression(n_samples=300, n_genes=1000, random_state=0)
    embedder = cls(hidden_dims=(64,), max_epochs=20, device="cpu", random_state=0)
    literal_acc, scaled_acc, reference_acc = _literal_and_scaled_pipelines(embedder, X, y)
    assert literal_acc >= max(scaled_acc, reference_acc) - 0.03, (literal_acc, scaled_acc, reference_acc)
    assert literal_acc > 0.4  # above chance (3 classes)


def test_default_masked_autoencoder_pipeline_converges():
    # The literal pipeline of issue 11 with every default (n_components=128, hidden_dims "auto", epochs "auto"):
    # with standardisation alone its 128 strongly correlated components needed more than LogisticRegression's
    # 100 lbfgs iterations here; shrinking the leading principal variance to its square root lets it converge.
    X, y = make_expression(n_samples=300, n_genes=500, random_state=0)
    literal_acc, scaled_acc, reference_acc = _literal_and_scaled_pipelines(
        MaskedAutoencoder(device="cpu", random_state=0), X, y
    )
    assert literal_acc >= max(scaled_acc, reference_acc) - 0.05, (literal_acc, scaled_acc, reference_acc)


@pytest.mark.data
@pytest.mark.parametrize("cls", PIPELINE_EMBEDDERS, ids=["scarf", "vime", "vae"])
def test_literal_pipeline_on_tcga_acc(cls, shared_data_dir):
    from skssl.io import read_table

    name = "tcga_acc.RNASeq2GeneNorm"
    data = read_table(
        shared_data_dir / f"{name}.expression.csv.gz", sample_table=shared_data_dir / f"{name}.samples.csv"
    )
    labels = data.metadata["C1A.C1B"]
    labelled = np.array([label is not None for label in labels])
    X, y = np.log1p(data.X[labelled]), np.asarray(labels[labelled]).astype(str)
    embedder = cls(n_components=16, hidden_dims=(64,), max_epochs=20, device="cpu", random_state=0)
    literal_acc, scaled_acc, reference_acc = _literal_and_scaled_pipelines(embedder, X, y)
    assert literal_acc >= max(scaled_acc, reference_acc) - 0.05, (literal_acc, scaled_acc, reference_acc)
    assert literal_acc > 0.7  # C1A vs C1B is well separated in expression


SHARED_TASKS = {
    "bladderbatch": ("bladderbatch", "cancer"),
    "hsmm": ("hsmm_myoblast", "Hours"),
    "tcga": ("tcga_acc.RNASeq2GeneNorm", "C1A.C1B"),
}


@pytest.mark.data
@pytest.mark.parametrize("task", list(SHARED_TASKS))
def test_literal_pipeline_raises_no_warning_on_the_shared_tasks(task, shared_data_dir):
    # Issue 11, point 4: the user's literal Pipeline([embedder, LogisticRegression()]) with LogisticRegression's
    # defaults, on every shared task as the benchmark loads it (all genes; log1p where the values are counts or
    # FPKM), with every warning turned into an error -- not only ConvergenceWarning.
    from skssl.benchmark._datasets import load_benchmark_data

    name, column = SHARED_TASKS[task]
    loaded = load_benchmark_data(name, label_column=column, data_dir=shared_data_dir)
    X, y = loaded["X"], np.asarray(loaded["y"]).astype(str)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    for cls in PIPELINE_EMBEDDERS:
        embedder = cls(n_components=16, hidden_dims=(64,), max_epochs=10, device="cpu", random_state=0)
        with warnings.catch_warnings():
            every_warning_an_error()
            pipeline = Pipeline([("ssl", embedder), ("clf", LogisticRegression())]).fit(X_train, y_train)
            predicted = pipeline.predict(X_test)
        # Small networks and 10 epochs: the check is that the fit is clean, plus a sanity floor on what it learnt
        # (more than one class predicted; accuracy near or above always predicting the largest class).
        majority = np.unique(y_train, return_counts=True)[1].max() / len(y_train)
        assert len(np.unique(predicted)) > 1, cls.__name__
        assert np.mean(predicted == y_test) >= majority - 0.1, (cls.__name__, np.mean(predicted == y_test), majority)


# ----------------------------------------------------------------------------- scikit-learn integration


def test_pipeline_grid_search_in_parallel(data):
    X, y = data
    pipe = Pipeline([("ssl", MaskedAutoencoder(**FAST)), ("clf", LogisticRegression(max_iter=500))])
    search = GridSearchCV(pipe, {"ssl__n_components": [2, 4]}, cv=2, n_jobs=2, error_score="raise")
    search.fit(X, y)
    assert search.best_params_["ssl__n_components"] in (2, 4)
    assert search.predict(X).shape == (len(X),)


def _threads_seen_during_fit(X):
    seen = []

    class Recorder(MaskedAutoencoder):
        def _batch_loss(self, module, x, targets=None, generator=None):
            seen.append(torch.get_num_threads())
            return super()._batch_loss(module, x, targets, generator)

    Recorder(**FAST).fit(X)
    return max(seen)


def test_torch_threads_do_not_oversubscribe_joblib_workers(data):
    X, _ = data
    n_jobs = 2
    threads = joblib.Parallel(n_jobs=n_jobs)(joblib.delayed(_threads_seen_during_fit)(X) for _ in range(n_jobs))
    assert max(threads) <= max(1, joblib.cpu_count() // n_jobs)


@pytest.mark.parametrize("embedder", GAUSSIAN_EMBEDDERS, ids=IDS)
def test_same_seed_same_embedding_other_seed_other_embedding(embedder, data):
    X, _ = data
    a = clone(embedder).fit_transform(X)
    b = clone(embedder).fit_transform(X)
    c = clone(embedder).set_params(random_state=1).fit_transform(X)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_fitting_does_not_touch_global_torch_rng(data):
    X, _ = data
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    MaskedAutoencoder(**FAST).fit(X)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("embedder", GAUSSIAN_EMBEDDERS, ids=IDS)
def test_joblib_round_trip(embedder, data, tmp_path):
    X, _ = data
    fitted = clone(embedder).fit(X)
    joblib.dump(fitted, tmp_path / "model.joblib")
    loaded = joblib.load(tmp_path / "model.joblib")
    np.testing.assert_array_equal(loaded.transform(X), fitted.transform(X))
    assert all(p.device.type == "cpu" for p in loaded.module_.parameters())


def test_pickle_of_a_gpu_module_holds_cpu_tensors(data, monkeypatch):
    """What makes 'fit on CUDA, load on a CPU-only machine' work: __getstate__ stores a CPU copy."""
    X, _ = data
    fitted = MaskedAutoencoder(**FAST).fit(X)
    moved = []

    class FakeCudaParameter:
        device = torch.device("cuda:0")

    original_parameters = type(fitted.module_).parameters

    def parameters(self, recurse=True):
        if not moved:
            moved.append(True)
            yield FakeCudaParameter()
            return
        yield from original_parameters(self, recurse)

    monkeypatch.setattr(type(fitted.module_), "parameters", parameters)
    state = fitted.__getstate__()
    assert state["module_"] is not fitted.module_  # a copy was made for pickling
    assert state["device_"] == torch.device("cpu")
    # ... and the live estimator was left alone.
    assert fitted.__dict__["module_"] is not state["module_"]
    assert fitted.device_ == torch.device("cpu") and "_sklearn_version" not in fitted.__dict__


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fit_on_cuda_transform_on_cpu(data):
    X, _ = data
    fitted = MaskedAutoencoder(**{**FAST, "device": "cuda"}).fit(X)
    loaded = pickle.loads(pickle.dumps(fitted))
    assert loaded._module_device().type == "cpu"
    np.testing.assert_allclose(loaded.transform(X), fitted.transform(X), atol=1e-4)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised when there is no GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_without_gpu_is_a_clear_error(device, data):
    X, _ = data
    with pytest.raises(ValueError, match="no CUDA GPU is available"):
        MaskedAutoencoder(**{**FAST, "device": device}).fit(X)


def test_invalid_device_string(data):
    X, _ = data
    with pytest.raises(ValueError, match="device"):
        MaskedAutoencoder(**{**FAST, "device": "tpu"}).fit(X)


# ----------------------------------------------------------------------------- input handling


@pytest.mark.parametrize("embedder", GAUSSIAN_EMBEDDERS, ids=IDS)
def test_sparse_and_memmap_inputs_give_the_dense_embedding(embedder, data, tmp_path):
    X, _ = data
    X = np.where(np.abs(X) > 1.5, X, 0.0).astype(np.float32)
    dense = clone(embedder).fit(X)
    expected = dense.transform(X)
    from_sparse = clone(embedder).fit(sp.csr_matrix(X))
    np.testing.assert_allclose(from_sparse.transform(sp.csr_matrix(X)), expected, rtol=1e-5, atol=1e-5)
    path = tmp_path / "X.dat"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    mm = np.memmap(path, dtype=np.float32, mode="r", shape=X.shape)
    from_memmap = clone(embedder).fit(mm)
    np.testing.assert_allclose(from_memmap.transform(mm), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dense.transform(mm), expected, rtol=1e-5, atol=1e-5)


def test_dataframe_names_and_pandas_output(data):
    pd = pytest.importorskip("pandas")
    X, _ = data
    frame = pd.DataFrame(X, columns=[f"GENE{i}" for i in range(X.shape[1])])
    embedder = ContrastiveEmbedder(**FAST).set_output(transform="pandas").fit(frame)
    out = embedder.transform(frame)
    assert list(embedder.feature_names_in_) == list(frame.columns)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == [f"contrastiveembedder{i}" for i in range(4)]
    np.testing.assert_array_equal(out.index, frame.index)
    with pytest.raises(ValueError, match="feature names"):
        embedder.transform(frame[frame.columns[::-1]])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("embedder", GAUSSIAN_EMBEDDERS[:1] + GAUSSIAN_EMBEDDERS[2:], ids=["scarf", "vime", "vae"])
def test_non_finite_input_is_rejected(embedder, data, bad):
    X, _ = data
    X = X.copy()
    X[3, 2] = bad
    with pytest.raises(ValueError, match="NaN|infinity"):
        clone(embedder).fit(X)
    fitted = clone(embedder).fit(np.nan_to_num(X, nan=0.0, posinf=0.0, neginf=0.0))
    with pytest.raises(ValueError, match="NaN|infinity"):
        fitted.transform(X)


def test_non_finite_memmap_is_rejected(data, tmp_path):
    X, _ = data
    X = X.copy()
    X[5, 1] = np.nan
    mm = np.memmap(tmp_path / "bad.dat", dtype=np.float32, mode="w+", shape=X.shape)
    mm[:] = X
    with pytest.raises(ValueError, match=r"contains NaN in 1 value\(s\) of rows 0-.* \(first in row 5, column 1\)"):
        MaskedAutoencoder(**FAST).fit(mm)


def test_bad_shapes(data):
    X, _ = data
    fitted = MaskedAutoencoder(**FAST).fit(X)
    with pytest.raises(ValueError, match="features"):
        fitted.transform(X[:, :-1])
    with pytest.raises(ValueError, match="sample"):
        MaskedAutoencoder(**FAST).fit(X[:1])
    with pytest.raises(ValueError):
        MaskedAutoencoder(**FAST).fit(X[:0])
    with pytest.raises(ValueError):
        MaskedAutoencoder(**FAST).fit(X[0])


def test_negative_counts_rejected_by_nb_vae(data):
    X, _ = data
    with pytest.raises(ValueError, match="Negative values.*likelihood='gaussian'"):
        VAEEmbedder(likelihood="nb", **FAST).fit(X)
    counts = counts_from(X)
    fitted = VAEEmbedder(likelihood="nb", **FAST).fit(counts)
    with pytest.raises(ValueError, match="Negative values"):
        fitted.transform(-counts)
    with pytest.raises(ValueError, match="Negative values"):
        fitted.transform(sp.csr_matrix(-counts))


def test_invalid_parameters_are_reported(data):
    X, _ = data
    with pytest.raises(ValueError, match="corruption_rate"):
        ContrastiveEmbedder(corruption_rate=1.5).fit(X)
    with pytest.raises(ValueError, match="objective"):
        ContrastiveEmbedder(objective="simclr").fit(X)
    with pytest.raises(ValueError, match="hidden_dims"):
        MaskedAutoencoder(hidden_dims=(16, 0), max_epochs=1).fit(X)
    with pytest.raises(ValueError, match="likelihood"):
        VAEEmbedder(likelihood="poisson").fit(X)


# ----------------------------------------------------------------------------- training loop


def test_divergence_stops_with_an_error_naming_learning_rate(data):
    X, _ = data
    with pytest.raises(FloatingPointError, match="learning_rate"):
        VAEEmbedder(**{**FAST, "max_epochs": 20}, learning_rate=1e12, weight_decay=0.0).fit(X * 1e3)


def test_history_early_stopping_and_best_weights(data):
    X, _ = data
    embedder = MaskedAutoencoder(**{**FAST, "max_epochs": 300}, n_iter_no_change=3).fit(X)
    assert embedder.n_iter_ < 300
    assert len(embedder.history_["train_loss"]) == embedder.n_iter_
    assert len(embedder.history_["validation_loss"]) == embedder.n_iter_
    best = int(np.argmin(embedder.history_["validation_loss"]))
    assert embedder.best_epoch_ == best + 1
    assert embedder.n_iter_ >= embedder.best_epoch_ + 3


def test_no_validation_split_when_early_stopping_is_off(data):
    X, _ = data
    embedder = MaskedAutoencoder(**{**FAST, "max_epochs": 4}, early_stopping=False).fit(X)
    assert embedder.n_iter_ == 4 and embedder.history_["validation_loss"] == []


def test_auto_sizes_scale_with_data():
    X_small, _ = low_rank_classes(n_samples=50, n_features=20)
    small = MaskedAutoencoder(max_epochs=1, random_state=0).fit(X_small)
    assert small.batch_size_ == 32 and small.hidden_dims_ == (256, 256)
    X_wide = np.random.default_rng(0).normal(size=(40, 1200)).astype(np.float32)
    wide = MaskedAutoencoder(max_epochs=1, random_state=0).fit(X_wide)
    assert wide.hidden_dims_ == (512, 512)


def test_verbose_reports_epochs_on_stdout(data, capsys):
    X, _ = data
    MaskedAutoencoder(**FAST, verbose=1).fit(X)
    captured = capsys.readouterr()
    assert "epoch 1, best 1: " in captured.out and "validation loss" in captured.out and captured.err == ""
    assert "s left (last epoch 3: max_epochs=3)" in captured.out
    assert captured.out.splitlines()[-1].startswith("[MaskedAutoencoder] done: 3 of at most 3 epochs")


@pytest.mark.parametrize(
    "embedder",
    [ContrastiveEmbedder(**FAST), ContrastiveEmbedder(objective="byol", **FAST), MaskedAutoencoder(**FAST)],
    ids=["scarf", "byol", "vime"],
)
def test_encoder_path_embeds_like_the_module_with_only_the_parameters_embed_uses(data, embedder):
    X, _ = data
    module = embedder.fit(X).module_
    x = torch.from_numpy(X)
    path = module.encoder_path()
    with torch.no_grad():
        torch.testing.assert_close(path.embed(x), module.embed(x), rtol=0, atol=0)
        torch.testing.assert_close(path(x), module.embed(x), rtol=0, atol=0)
    trainable = [p for p in module.parameters() if p.requires_grad]  # not BYOL's target network
    grads = torch.autograd.grad(module.embed(x).sum(), trainable, allow_unused=True)
    used = {id(p) for p, g in zip(trainable, grads) if g is not None}
    assert {id(p) for p in path.parameters()} == used
    assert len(used) < len(trainable)  # the heads / the projector are left out


# ----------------------------------------------------------------------------- VAE specifics


def test_vae_scores_flag_outliers_and_decode(data):
    X, _ = data
    vae = VAEEmbedder(**{**FAST, "max_epochs": 30}).fit(X)
    outliers = X + np.random.default_rng(0).normal(scale=10.0, size=X.shape).astype(np.float32)
    assert vae.score(X) > vae.score(outliers) + 10
    np.testing.assert_allclose(vae.score(X), vae.score_samples(X).mean())
    np.testing.assert_array_equal(vae.score_samples(X), vae.score_samples(X))
    decoded = vae.inverse_transform(vae.transform(X))
    assert decoded.shape == X.shape
    # Decoding the embedding recovers the data better than the mean profile does.
    assert np.mean((decoded - X) ** 2) < np.mean((X.mean(axis=0) - X) ** 2)
    with pytest.raises(ValueError, match="latent dimensions"):
        vae.inverse_transform(np.zeros((2, 3)))


def test_vae_score_is_in_data_units(data):
    """Scaling the data by c shifts the Gaussian ELBO by -n_features * log c (the change-of-variables term)."""
    X, _ = data
    a = VAEEmbedder(**FAST).fit(X).score(X)
    b = VAEEmbedder(**FAST).fit(X * 10).score(X * 10)
    assert b == pytest.approx(a - X.shape[1] * np.log(10), rel=1e-3)


def test_vae_inverse_transform_undoes_the_standardisation(data):
    X, _ = data
    vae = VAEEmbedder(**FAST).fit(X)
    with torch.no_grad():
        module = vae.module_
        posterior_mean = module.embed(torch.from_numpy(X))
        expected = module.likelihoods[0].mean(module.decoders[0](posterior_mean)).numpy()
    # transform standardised the posterior mean; decoding it gives the decoder mean of the posterior mean itself.
    assert not np.allclose(vae.transform(X), posterior_mean.numpy(), atol=1e-2)
    np.testing.assert_allclose(vae.inverse_transform(vae.transform(X)), expected, rtol=1e-4, atol=1e-4)


def test_vae_samples(data):
    X, _ = data
    vae = VAEEmbedder(**FAST).fit(X)
    draws = vae.sample(500, random_state=0)
    assert draws.shape == (500, X.shape[1]) and np.isfinite(draws).all()
    np.testing.assert_array_equal(draws, vae.sample(500, random_state=0))
    counts = counts_from(X)
    nb = VAEEmbedder(likelihood="nb", **{**FAST, "max_epochs": 20}).fit(counts)
    simulated = nb.sample(500, random_state=0)
    assert (simulated >= 0).all() and np.array_equal(simulated, np.round(simulated))
    # Library sizes of simulated profiles resemble the real ones.
    ratio = np.median(simulated.sum(axis=1)) / np.median(counts.sum(axis=1))
    assert 0.5 < ratio < 2.0
    assert nb.inverse_transform(nb.transform(counts)).sum(axis=1) == pytest.approx(nb.library_size_, rel=1e-3)


def test_shared_parameter_docs_and_overrides():
    from skssl._docstrings import fill_doc

    for cls in (ContrastiveEmbedder, MaskedAutoencoder, VAEEmbedder):
        assert "%(" not in cls.__doc__ and "n_iter_no_change : " in cls.__doc__
    # The VAE's own wording replaces the shared one, in place.
    assert "Dropout after each hidden layer of the encoder." in VAEEmbedder.__doc__
    assert VAEEmbedder.__doc__.count("    dropout : ") == 1

    class Documented:
        """Doc.

        %(training_parameters)s
        """

    with pytest.raises(ValueError, match="unknown parameters"):
        fill_doc(Documented, not_a_parameter="    not_a_parameter : int\n")
