import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skssl import datasets
from skssl.datasets import make_expression
from skssl.preprocessing import LogCPM


def test_shapes_and_dtypes():
    X, y = make_expression(n_samples=50, n_genes=120, n_classes=4, random_state=0)
    assert X.shape == (50, 120)
    assert X.dtype == np.float32
    assert y.shape == (50,)
    assert y.dtype == np.int64
    assert_array_equal(np.unique(y), [0, 1, 2, 3])
    # Balanced classes.
    assert np.bincount(y).max() - np.bincount(y).min() <= 1
    assert np.all(np.isfinite(X)) and X.min() >= 0


def test_seeding_is_deterministic():
    a = make_expression(n_samples=40, n_genes=100, random_state=3, return_info=True)
    b = make_expression(n_samples=40, n_genes=100, random_state=3, return_info=True)
    c = make_expression(n_samples=40, n_genes=100, random_state=4)
    assert_array_equal(a[0], b[0])
    assert_array_equal(a[1], b[1])
    assert_array_equal(a[2].counts, b[2].counts)
    assert_array_equal(a[2].activities, b[2].activities)
    assert not np.array_equal(a[0], c[0])
    # A RandomState instance is accepted, and consumed like an int seed.
    d = make_expression(n_samples=40, n_genes=100, random_state=np.random.RandomState(3))
    e = make_expression(n_samples=40, n_genes=100, random_state=np.random.RandomState(3))
    assert_array_equal(d[0], e[0])


def test_deterministic_across_row_blocks_and_threads(monkeypatch):
    # Small row blocks so that several are simulated, in threads or not.
    monkeypatch.setattr(datasets, "_BLOCK_CELLS", 1000)
    kwargs = dict(n_samples=100, n_genes=100, output="counts", random_state=0)
    X1, _ = make_expression(**kwargs)
    X2, _ = make_expression(**kwargs)
    monkeypatch.setattr(datasets, "cpu_count", lambda: 1)
    X3, _ = make_expression(**kwargs)
    assert_array_equal(X1, X2)
    assert_array_equal(X1, X3)


def test_counts_are_non_negative_integers_with_zeros():
    counts, _, info = make_expression(
        n_samples=100,
        n_genes=500,
        output="counts",
        mean_library_size=2e5,
        random_state=0,
        return_info=True,
    )
    assert counts.dtype == np.float32
    assert counts.min() >= 0
    assert_array_equal(counts, np.round(counts))
    assert "counts" not in info
    assert_allclose(info.library_size, counts.sum(axis=1))
    # Library sizes scatter around the requested mean.
    assert 1e5 < np.median(info.library_size) < 4e5
    # Lowly expressed genes are mostly zeros; highly expressed ones never are.
    zero_fraction = (counts == 0).mean(axis=0)
    order = np.argsort(info.base_expression)
    assert zero_fraction[order[:10]].mean() > 0.5
    assert zero_fraction[order[-100:]].max() == 0


def test_log_cpm_output_matches_transformer():
    X, y, info = make_expression(n_samples=60, n_genes=200, random_state=1, return_info=True)
    assert_array_equal(X, LogCPM().fit_transform(info.counts))
    counts, y2 = make_expression(n_samples=60, n_genes=200, output="counts", random_state=1)
    assert_array_equal(counts, info.counts)
    assert_array_equal(y, y2)


def test_info_contents():
    X, y, info = make_expression(
        n_samples=80,
        n_genes=400,
        n_programs=6,
        n_informative_programs=2,
        n_batches=3,
        program_size=0.05,
        random_state=0,
        return_info=True,
    )
    assert info.activities.shape == (80, 6)
    assert info.loadings.shape == (6, 400)
    assert_array_equal(info.class_programs, [0, 1])
    assert info.class_means.shape == (3, 2)
    assert_array_equal(np.unique(info.batch), [0, 1, 2])
    assert info.gene_names.shape == (400,)
    assert len(set(info.gene_names)) == 400
    # Each program is a sparse set of 5 % of the genes.
    assert_array_equal((info.loadings != 0).sum(axis=1), 20)
    assert info.dispersion.shape == (400,) and np.all(info.dispersion > 0)
    assert_allclose(info.base_expression.sum(), 1.0)


def test_programs_carry_the_class():
    X, y, info = make_expression(n_samples=600, random_state=0, return_info=True)
    mean_activity = np.array([info.activities[y == c].mean(axis=0) for c in range(3)])
    spread = mean_activity.std(axis=0)
    informative = np.zeros(info.activities.shape[1], dtype=bool)
    informative[info.class_programs] = True
    # Class means differ on informative programs only (unit within-class sd).
    assert spread[informative].min() > 0.5
    assert spread[~informative].max() < 0.2
    # The genes of an informative program co-vary with its activity.
    program = info.class_programs[0]
    members = np.flatnonzero(info.loadings[program] > 0)
    score = X[:, members].mean(axis=1)
    assert np.corrcoef(score, info.activities[:, program])[0, 1] > 0.7


def test_class_signal_recoverable_but_weak_per_gene():
    X, y, info = make_expression(n_samples=600, random_state=0, return_info=True)
    train, test = train_test_split(np.arange(len(y)), test_size=0.5, stratify=y, random_state=0)
    few = np.concatenate([train[y[train] == c][:5] for c in range(3)])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=500))
    many_score = model.fit(X[train], y[train]).score(X[test], y[test])
    assert many_score > 0.65  # chance is 1/3
    few_score = model.fit(X[few], y[few]).score(X[test], y[test])
    assert few_score < many_score - 0.1

    # No single gene separates the classes well: the fraction of a gene's
    # variance explained by the class stays small ...
    Xs = StandardScaler().fit_transform(X)
    explained = np.array([Xs[y == c].mean(axis=0) for c in range(3)]).var(axis=0)
    assert np.max(explained) < 0.5
    assert np.median(explained) < 0.01
    # ... but pooling each program's genes (oracle grouping) recovers it
    # from the same few labels.
    signs = np.sign(info.loadings)
    pooled = Xs @ signs.T / np.abs(signs).sum(axis=1)
    pooled_score = LogisticRegression().fit(pooled[few], y[few]).score(pooled[test], y[test])
    assert pooled_score > few_score + 0.05


def test_signal_strength_zero_gives_no_class_signal():
    X, y, info = make_expression(n_samples=300, signal_strength=0.0, random_state=0, return_info=True)
    assert_allclose(info.class_means, 0.0)


def test_single_batch_has_no_batch_effect():
    _, _, info = make_expression(n_samples=30, n_genes=50, n_batches=1, random_state=0, return_info=True)
    assert_array_equal(info.batch, 0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_samples=0), "n_samples must be >= 1"),
        (dict(n_samples=2, n_classes=3), "n_samples=2 must be >= n_classes=3"),
        (dict(n_classes=1), "n_classes must be >= 2"),
        (dict(n_genes=5), "n_genes must be >= 10"),
        (dict(n_genes=100.0), "n_genes must be an integer"),
        (dict(n_programs=0), "n_programs must be >= 1"),
        (dict(n_programs=2, n_informative_programs=3), "must be <= n_programs=2"),
        (dict(n_batches=0), "n_batches must be >= 1"),
        (dict(output="tpm"), "output must be 'log_cpm' or 'counts'"),
        (dict(signal_strength=-1), "signal_strength must be in"),
        (dict(dispersion=0), "dispersion must be in"),
        (dict(mean_library_size=np.inf), "mean_library_size must be a finite"),
        (dict(program_size=1.5), "program_size must be in"),
    ],
)
def test_invalid_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_expression(**kwargs)


@pytest.mark.parametrize("mean", [0.5, 5.0, 25.0, 40.0, 2000.0])
def test_negative_binomial_moments(mean):
    # Both branches (exact Poisson below the threshold, normal limit above)
    # must give the NB mean and variance mu + phi * mu**2.
    rng = np.random.default_rng(0)
    phi = np.array([0.05, 0.5], dtype=np.float32)
    mu = np.full((100_000, 2), mean, dtype=np.float32)
    draws = datasets._negative_binomial(rng, mu, (1 / phi).astype(np.float32))
    assert_allclose(draws.mean(axis=0), mean, rtol=0.03)
    assert_allclose(draws.var(axis=0), mean + phi * mean**2, rtol=0.05)
    assert draws.min() >= 0
