import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.pipeline import make_pipeline
from sklearn.utils import estimator_checks
from sklearn.utils.estimator_checks import parametrize_with_checks

from skssl.preprocessing import GeneAligner, HighlyVariableGenes, LogCPM

try:
    import pandas as pd
except ImportError:  # pandas is an optional dependency
    pd = None
needs_pandas = pytest.mark.skipif(pd is None, reason="requires pandas")


def _expected_failed_checks(estimator):
    if isinstance(estimator, GeneAligner):
        return {
            "check_dataframe_column_names_consistency": (
                "GeneAligner exists to accept DataFrames whose columns differ "
                "from fit (reordered, missing or extra genes) and aligns them "
                "by name instead of raising."
            ),
        }
    return {}


@parametrize_with_checks(
    [
        LogCPM(),
        LogCPM(pseudocount=0.5, base=np.e, scale=1e4),
        HighlyVariableGenes(n_top_genes=2),
        HighlyVariableGenes(n_top_genes=3, flavor="dispersion"),
        GeneAligner(),
        GeneAligner(fill_value="mean"),
    ],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


# These checks exist in scikit-learn but are not yielded by
# `parametrize_with_checks` in every version; run them explicitly.
_DATAFRAME_CHECKS = [
    estimator_checks.check_transformer_get_feature_names_out,
    estimator_checks.check_transformer_get_feature_names_out_pandas,
    estimator_checks.check_set_output_transform_pandas,
    estimator_checks.check_global_output_transform_pandas,
    estimator_checks.check_dataframe_column_names_consistency,
]


# The set_output checks deliberately mix arrays and DataFrames.
@needs_pandas
@pytest.mark.filterwarnings("ignore:X (does not have valid|has) feature names")
@pytest.mark.parametrize(
    "estimator",
    [LogCPM(), HighlyVariableGenes(n_top_genes=1), GeneAligner()],
    ids=lambda est: type(est).__name__,
)
@pytest.mark.parametrize("check", _DATAFRAME_CHECKS, ids=lambda c: c.__name__)
def test_dataframe_checks(estimator, check):
    name = type(estimator).__name__
    if check.__name__ in _expected_failed_checks(estimator):
        with pytest.raises(AssertionError):
            check(name, estimator)
    else:
        check(name, estimator)


# --------------------------------------------------------------------------
# LogCPM
# --------------------------------------------------------------------------


def test_log_cpm_values():
    counts = np.array([[0.0, 1.0, 3.0], [5.0, 5.0, 0.0]])
    out = LogCPM().fit_transform(counts)
    expected = np.log2(counts / counts.sum(1, keepdims=True) * 1e6 + 1)
    assert_allclose(out, expected, rtol=1e-12)
    out = LogCPM(pseudocount=0.5, base=10, scale=100).fit_transform(counts)
    assert_allclose(out, np.log10(counts / counts.sum(1, keepdims=True) * 100 + 0.5))


def test_log_cpm_zero_library_gives_zero_row_without_warning():
    counts = np.array([[0, 0, 0], [1, 2, 3]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = LogCPM().fit_transform(counts)
    assert_array_equal(out[0], 0.0)
    assert np.all(out[1] > 0)


@pytest.mark.parametrize("bad", [-1.0, np.nan, np.inf])
def test_log_cpm_rejects_invalid_values(bad):
    counts = np.array([[1.0, 2.0], [3.0, bad]])
    with pytest.raises(ValueError, match="Negative|NaN|infinity"):
        LogCPM().fit(counts)
    fitted = LogCPM().fit(np.ones((2, 2)))
    with pytest.raises(ValueError, match="Negative|NaN|infinity"):
        fitted.transform(counts)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_cpm_sparse_in_sparse_out(dtype):
    rng = np.random.RandomState(0)
    dense = rng.poisson(0.7, size=(20, 15)).astype(dtype)
    dense[3] = 0  # an empty library
    out_sparse = LogCPM().fit_transform(sp.csr_matrix(dense))
    assert sp.issparse(out_sparse)
    assert out_sparse.dtype == dtype
    assert out_sparse.nnz == np.count_nonzero(dense)
    assert_allclose(out_sparse.toarray(), LogCPM().fit_transform(dense), rtol=1e-6)
    # With another pseudocount zeros do not stay zero: dense output.
    out = LogCPM(pseudocount=0.5).fit_transform(sp.csc_matrix(dense))
    assert isinstance(out, np.ndarray)
    assert_allclose(out, LogCPM(pseudocount=0.5).fit_transform(dense), rtol=1e-6)


@needs_pandas
def test_log_cpm_preserves_float32_and_feature_names():
    X = pd.DataFrame(np.ones((3, 2), dtype=np.float32), columns=["g1", "g2"])
    transformer = LogCPM().fit(X)
    assert transformer.transform(X).dtype == np.float32
    assert_array_equal(transformer.get_feature_names_out(), ["g1", "g2"])


# --------------------------------------------------------------------------
# HighlyVariableGenes
# --------------------------------------------------------------------------


def test_hvg_picks_high_variance_columns():
    rng = np.random.RandomState(0)
    X = rng.normal(scale=0.1, size=(200, 50))
    noisy = [3, 17, 42, 8]
    X[:, noisy] *= [50, 20, 10, 30]
    hvg = HighlyVariableGenes(n_top_genes=4).fit(X)
    assert_array_equal(np.flatnonzero(hvg.get_support()), sorted(noisy))
    assert_allclose(hvg.variances_, X.var(axis=0))
    assert_array_equal(hvg.transform(X), X[:, sorted(noisy)])


def test_hvg_dispersion_differs_from_variance():
    # Gene 0: large mean and variance but low dispersion; gene 1: the reverse.
    rng = np.random.RandomState(0)
    X = np.column_stack([1000 + 5 * rng.normal(size=100), np.abs(3 * rng.normal(size=100))])
    assert HighlyVariableGenes(1).fit(X).get_support().tolist() == [True, False]
    hvg = HighlyVariableGenes(1, flavor="dispersion").fit(X)
    assert hvg.get_support().tolist() == [False, True]
    assert_allclose(hvg.scores_, X.var(0) / X.mean(0))


def test_hvg_dispersion_rejects_negative_values():
    with pytest.raises(ValueError, match="Negative"):
        HighlyVariableGenes(1, flavor="dispersion").fit(np.array([[-1.0], [1.0]]))


def test_hvg_keeps_all_when_n_top_genes_is_large():
    X = np.random.RandomState(0).normal(size=(10, 5))
    hvg = HighlyVariableGenes(n_top_genes=100).fit(X)
    assert hvg.get_support().all()
    assert hvg.transform(X).shape == (10, 5)


def test_hvg_sparse_matches_dense():
    X = sp.random(30, 20, density=0.3, random_state=0, format="csr")
    dense = HighlyVariableGenes(5).fit(X.toarray())
    sparse = HighlyVariableGenes(5).fit(X)
    assert_allclose(sparse.variances_, dense.variances_)
    assert_array_equal(sparse.get_support(), dense.get_support())


@needs_pandas
def test_hvg_dataframe_feature_names():
    rng = np.random.RandomState(0)
    X = pd.DataFrame(rng.normal(size=(30, 4)) * [1, 10, 0.1, 5], columns=["A", "B", "C", "D"])
    hvg = HighlyVariableGenes(n_top_genes=2).fit(X)
    assert_array_equal(hvg.get_feature_names_out(), ["B", "D"])
    out = hvg.set_output(transform="pandas").transform(X)
    assert list(out.columns) == ["B", "D"]


def test_hvg_invalid_n_top_genes():
    with pytest.raises(ValueError, match="n_top_genes"):
        HighlyVariableGenes(n_top_genes=0).fit(np.ones((3, 3)))


# --------------------------------------------------------------------------
# GeneAligner
# --------------------------------------------------------------------------


@pytest.fixture
def reference():
    if pd is None:
        pytest.skip("requires pandas")
    rng = np.random.RandomState(0)
    genes = [f"G{i}" for i in range(10)]
    return pd.DataFrame(rng.normal(size=(8, 10)), columns=genes)


def test_aligner_reorders_shuffled_columns(reference):
    aligner = GeneAligner().fit(reference)
    shuffled = reference[np.random.RandomState(1).permutation(reference.columns)]
    assert list(shuffled.columns) != list(reference.columns)
    assert_array_equal(aligner.transform(shuffled), reference.to_numpy())
    assert_array_equal(aligner.get_feature_names_out(), reference.columns)


def test_aligner_fills_missing_and_drops_extra(reference):
    aligner = GeneAligner(fill_value=-1.0, warn_threshold=0.5).fit(reference)
    new = reference.drop(columns=["G2", "G7"]).assign(EXTRA=99.0)
    new = new[new.columns[::-1]]
    out = aligner.transform(new)
    assert out.shape == (8, 10)
    keep = [j for j in range(10) if j not in (2, 7)]
    assert_array_equal(out[:, keep], reference.to_numpy()[:, keep])
    assert_array_equal(out[:, [2, 7]], -1.0)
    assert not np.any(out == 99.0)


def test_aligner_fill_mean(reference):
    aligner = GeneAligner(fill_value="mean", warn_threshold=1.0).fit(reference)
    assert_allclose(aligner.fill_values_, reference.mean().to_numpy())
    out = aligner.transform(reference.drop(columns=["G4"]).iloc[:3])
    assert_allclose(out[:, 4], reference["G4"].mean())


def test_aligner_with_given_genes(reference):
    target = ["G9", "NEW", "G0"]
    aligner = GeneAligner(genes=target, fill_value="mean", warn_threshold=0.5)
    aligner.fit(reference)
    assert_array_equal(aligner.genes_, target)
    # A gene absent from the reference data has no mean: it is filled with 0.
    assert_allclose(aligner.fill_values_, [reference["G9"].mean(), 0.0, reference["G0"].mean()])
    out = aligner.transform(reference)
    assert_array_equal(out[:, 0], reference["G9"])
    assert_array_equal(out[:, 2], reference["G0"])
    assert_array_equal(out[:, 1], 0.0)
    assert aligner.n_features_in_ == 10
    # Arrays are assumed to be in target order already.
    assert_array_equal(aligner.transform(out), out)
    with pytest.raises(ValueError, match="expecting 3 features"):
        aligner.transform(reference.to_numpy())


def test_aligner_warns_on_many_missing_and_raises_on_none(reference):
    aligner = GeneAligner().fit(reference)
    with pytest.warns(UserWarning, match=re.escape("3 of 10 target genes (30%)")):
        aligner.transform(reference.drop(columns=["G0", "G1", "G2"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        aligner.transform(reference.drop(columns=["G0"]))  # 10 %: no warning
    other = pd.DataFrame(np.ones((2, 2)), columns=["X1", "X2"])
    with pytest.raises(ValueError, match="None of the 10 target genes"):
        aligner.transform(other)


def test_aligner_rejects_duplicated_genes(reference):
    with pytest.raises(ValueError, match="duplicated"):
        GeneAligner(genes=["A", "B", "A"]).fit(reference)
    dup = reference.copy()
    dup.columns = ["G0"] * 2 + list(dup.columns[2:])
    with pytest.raises(ValueError, match="duplicated|unique"):
        GeneAligner().fit(reference).transform(dup)


def test_aligner_in_pipeline_with_other_gene_panel(reference):
    hvg = make_pipeline(GeneAligner(), HighlyVariableGenes(n_top_genes=3))
    hvg.fit(reference)
    panel = reference.iloc[:, ::-1].assign(EXTRA=1.0)
    assert_array_equal(hvg.transform(panel), hvg.transform(reference))
    assert len(hvg.get_feature_names_out()) == 3


@needs_pandas
def test_aligner_without_names_is_positional():
    X = np.arange(12.0).reshape(3, 4)
    aligner = GeneAligner().fit(X)
    assert_array_equal(aligner.genes_, ["x0", "x1", "x2", "x3"])
    assert_array_equal(aligner.transform(X[::-1]), X[::-1])
    # Nothing to align a DataFrame by: its width must match.
    frame = pd.DataFrame(X, columns=list("abcd"))
    assert_array_equal(aligner.transform(frame), X)
    with pytest.raises(ValueError, match="X has 3 features, but GeneAligner is expecting 4"):
        aligner.transform(X[:, :3])


def test_aligner_passes_nan_and_ignores_it_for_means(reference):
    reference.iloc[0, 1] = np.nan
    aligner = GeneAligner(fill_value="mean", warn_threshold=1).fit(reference)
    assert_allclose(aligner.fill_values_[1], reference["G1"].iloc[1:].mean())
    out = aligner.transform(reference)
    assert np.isnan(out[0, 1])
    out = aligner.transform(reference.drop(columns="G1"))
    assert_allclose(out[:, 1], reference["G1"].iloc[1:].mean())


@needs_pandas
def test_log_cpm_pandas_output():
    counts = pd.DataFrame({"g1": [1, 0], "g2": [3, 5]}, index=["s1", "s2"], dtype=np.float64)
    out = LogCPM(scale=4).set_output(transform="pandas").fit_transform(counts)
    assert list(out.columns) == ["g1", "g2"]
    assert list(out.index) == ["s1", "s2"]
    assert_allclose(out.to_numpy(), [[1.0, 2.0], [0.0, np.log2(5)]])
