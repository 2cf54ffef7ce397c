import os
import tracemalloc

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.utils import check_random_state

from skssl import _compendium
from skssl._compendium import make_compendium
from skssl.datasets import make_expression
from skssl.preprocessing import LogCPM

# Tiny sizes: every call below takes milliseconds.
SMALL = dict(n_studies=3, samples_per_study=20, n_genes=120, n_cohort_samples=30, random_state=0)


def test_shapes_dtypes_and_study_ids():
    data = make_compendium(**{**SMALL, "n_cohort_studies": 4, "n_cohort_samples": 31}, return_info=True)
    assert data.X_pool.shape == (60, 120) and data.X_pool.dtype == np.float32
    assert data.X_cohort.shape == (31, 120) and data.X_cohort.dtype == np.float32
    assert np.all(np.isfinite(data.X_pool)) and data.X_pool.min() >= 0
    assert data.y_cohort.dtype == np.int64 and data.study_cohort.dtype == np.int64
    assert data.study_pool.dtype == np.int64
    assert_array_equal(data.study_pool, np.repeat([0, 1, 2], 20))
    # 31 rows over 4 cohort studies: as even as possible, rows grouped by study.
    assert_array_equal(data.study_cohort, np.repeat([0, 1, 2, 3], [8, 8, 8, 7]))
    assert data.gene_names.shape == (120,) and data.gene_names[0] == "GENE000"
    info = data.info
    assert info.loadings.shape == (20, 120)
    assert info.activities.shape == (31, 20)
    assert info.cohort_program_means.shape == (4, 20)
    assert info.pool_program_means.shape == info.pool_program_varies.shape == (3, 20)
    assert info.base_expression.shape == info.dispersion.shape == (120,)
    assert_array_equal(info.gene_names, data.gene_names)
    assert_array_equal(info.phenotype_programs, [0, 1, 2])
    # Program size: 3 % of 120 genes, in make_expression's sparse signed format.
    assert_array_equal((info.loadings != 0).sum(axis=1), np.full(20, 4))
    assert "info" not in make_compendium(**SMALL)


def test_deterministic_given_random_state():
    a = make_compendium(**SMALL, return_info=True)
    b = make_compendium(**SMALL, return_info=True)
    for field in ("X_pool", "X_cohort", "y_cohort"):
        assert_array_equal(a[field], b[field])
    assert_array_equal(a.info.activities, b.info.activities)
    c = make_compendium(**{**SMALL, "random_state": 1})
    assert not np.array_equal(a.X_pool, c.X_pool)
    assert not np.array_equal(a.X_cohort, c.X_cohort)
    # A RandomState instance works too, consumed like make_expression's.
    d = make_compendium(**{**SMALL, "random_state": np.random.RandomState(5)})
    e = make_compendium(**{**SMALL, "random_state": np.random.RandomState(5)})
    assert_array_equal(d.X_pool, e.X_pool)


def test_result_does_not_depend_on_the_number_of_threads(monkeypatch):
    threaded = make_compendium(**{**SMALL, "n_studies": 5})
    monkeypatch.setattr(_compendium, "cpu_count", lambda: 1)
    single = make_compendium(**{**SMALL, "n_studies": 5})
    assert_array_equal(threaded.X_pool, single.X_pool)


def test_cohort_and_first_pool_studies_do_not_depend_on_the_pool_size():
    # The benchmark's pool-size curve relies on it: a bigger pool only adds studies.
    small = make_compendium(**{**SMALL, "n_studies": 2}, return_info=True)
    big = make_compendium(**{**SMALL, "n_studies": 7}, return_info=True)
    assert_array_equal(small.X_cohort, big.X_cohort)
    assert_array_equal(small.y_cohort, big.y_cohort)
    assert_array_equal(small.study_cohort, big.study_cohort)
    assert_array_equal(small.info.activities, big.info.activities)
    assert_array_equal(small.info.loadings, big.info.loadings)
    assert_array_equal(small.X_pool, big.X_pool[: len(small.X_pool)])
    assert_array_equal(small.info.pool_program_means, big.info.pool_program_means[:2])
    # Nor on the studies' size, for the cohort.
    other = make_compendium(**{**SMALL, "samples_per_study": 7})
    assert_array_equal(small.X_cohort, other.X_cohort)


def test_labels_are_the_argmax_of_the_phenotype_programs():
    data = make_compendium(**{**SMALL, "n_cohort_samples": 600, "n_cohort_studies": 3}, return_info=True)
    info = data.info
    assert_array_equal(data.y_cohort, info.activities[:, info.phenotype_programs].argmax(axis=1))
    # Phenotype programs are centred in every cohort study, so classes are balanced by symmetry in each study.
    assert_array_equal(info.cohort_program_means[:, info.phenotype_programs], 0.0)
    for study in range(3):
        shares = np.bincount(data.y_cohort[data.study_cohort == study], minlength=3) / 200
        assert shares.min() > 0.2, shares
    # Activities vary around each study's means with unit spread, in every program.
    residual = info.activities - info.cohort_program_means[data.study_cohort]
    assert 0.9 < residual.std() < 1.1


@pytest.mark.parametrize(("shared", "n_shared"), [(0.0, 0), (0.3, 1), (0.5, 2), (2 / 3, 2), (1.0, 3)])
def test_shared_counts_phenotype_programs_rounded_half_up(shared, n_shared):
    info = make_compendium(**SMALL, shared=shared, return_info=True).info
    assert_array_equal(info.shared_programs, np.arange(n_shared))
    absent = np.arange(n_shared, 3)
    assert_array_equal(info.pool_program_means[:, absent], 0.0)
    assert not info.pool_program_varies[:, absent].any()
    # Non-phenotype programs are always in the pool, with means and variation independent of `shared`.
    full = make_compendium(**SMALL, return_info=True).info
    assert_array_equal(info.pool_program_means[:, 3:], full.pool_program_means[:, 3:])
    assert_array_equal(info.pool_program_varies[:, 3:], full.pool_program_varies[:, 3:])


def test_program_prevalence_and_the_first_study_varies_every_carried_program():
    only_first = make_compendium(**SMALL, program_prevalence=0.0, return_info=True).info
    assert only_first.pool_program_varies[0].all()
    assert not only_first.pool_program_varies[1:].any()
    everywhere = make_compendium(**SMALL, program_prevalence=1.0, return_info=True).info
    assert everywhere.pool_program_varies.all()
    half = make_compendium(**{**SMALL, "n_studies": 40}, return_info=True).info
    assert 0.4 < half.pool_program_varies[1:].mean() < 0.6


def _within_study_variance(data, directions):
    """Variance, within each pool study, of the pool's projection on unit `directions`: (n_studies, n_directions)."""
    projection = np.asarray(data.X_pool) @ directions.T
    return np.array([projection[data.study_pool == s].var(axis=0, ddof=1) for s in np.unique(data.study_pool)])


def test_shared_zero_leaves_no_phenotype_variance_in_the_pool():
    kwargs = dict(
        n_studies=12, samples_per_study=100, n_genes=400, n_cohort_samples=10, program_size=0.05, random_state=0
    )
    carried = make_compendium(**kwargs, shared=1.0, return_info=True)
    absent = make_compendium(**kwargs, shared=0.0)
    loadings = carried.info.loadings
    directions = loadings / np.linalg.norm(loadings, axis=1, keepdims=True)
    var_carried = _within_study_variance(carried, directions)
    var_absent = _within_study_variance(absent, directions)
    varies = carried.info.pool_program_varies
    for k in carried.info.phenotype_programs:
        assert varies[:, k].any() and not varies[:, k].all()
        # Activity-free variance: the projection's within-study variance in the studies where program k is fixed.
        noise = var_carried[~varies[:, k], k].mean()
        # shared=1: where the program varies, its activity adds to the noise (unit activity variance).
        assert var_carried[varies[:, k], k].mean() > 1.8 * noise
        # shared=0: in every study, the variance along the program's genes is the activity-free variance.
        assert 0.75 < var_absent[:, k].mean() / noise < 1.33


def test_log_cpm_output_is_logcpm_of_the_counts():
    log_cpm = make_compendium(**SMALL)
    counts = make_compendium(**SMALL, output="counts")
    for X in (counts.X_pool, counts.X_cohort):
        assert X.dtype == np.float32 and X.min() >= 0
        assert_array_equal(X, np.round(X))
    assert_array_equal(log_cpm.X_pool, LogCPM().fit_transform(counts.X_pool))
    assert_array_equal(log_cpm.X_cohort, LogCPM().fit_transform(counts.X_cohort))
    # Depths scatter around mean_library_size.
    assert 1e6 < counts.X_pool.sum(axis=1).mean() < 4e6


@pytest.mark.parametrize("output", ["log_cpm", "counts"])
def test_pool_path_writes_the_same_pool_as_in_memory(tmp_path, output):
    in_memory = make_compendium(**SMALL, output=output)
    path = tmp_path / "pool.npy"
    path.write_bytes(b"an older file is replaced")
    on_disk = make_compendium(**SMALL, output=output, pool_path=path)
    assert isinstance(on_disk.X_pool, np.memmap) and not on_disk.X_pool.flags.writeable
    assert_array_equal(on_disk.X_pool, in_memory.X_pool)
    assert_array_equal(np.load(path), in_memory.X_pool)
    assert_array_equal(on_disk.X_cohort, in_memory.X_cohort)
    assert os.listdir(tmp_path) == ["pool.npy"]  # no temporary file left behind


def test_interrupted_pool_write_leaves_no_file(tmp_path, monkeypatch):
    simulate = _compendium._counts_of_study
    calls = []

    def fail_on_the_fourth_study(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1 + 4:  # the cohort's one study, then pool studies
            raise KeyboardInterrupt
        return simulate(*args, **kwargs)

    monkeypatch.setattr(_compendium, "cpu_count", lambda: 1)
    monkeypatch.setattr(_compendium, "_counts_of_study", fail_on_the_fourth_study)
    with pytest.raises(KeyboardInterrupt):
        make_compendium(**{**SMALL, "n_studies": 6}, pool_path=tmp_path / "pool.npy")
    assert os.listdir(tmp_path) == []


def test_pool_path_memory_does_not_grow_with_the_number_of_studies(tmp_path, monkeypatch):
    # One thread: with several, the peak depends on how the threads' temporaries happen to overlap.
    monkeypatch.setattr(_compendium, "cpu_count", lambda: 1)
    kwargs = dict(samples_per_study=50, n_genes=500, n_cohort_samples=10, random_state=0)
    study_bytes = 50 * 500 * 4

    def peak_bytes(n_studies):
        tracemalloc.start()
        try:
            make_compendium(n_studies=n_studies, **kwargs, pool_path=tmp_path / f"pool{n_studies}.npy")
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    few, many = peak_bytes(8), peak_bytes(80)
    pool_bytes = 80 * study_bytes
    # The 80-study pool (8 MB, 80 study blocks of 100 kB) never is in memory: the peak is that of the 8-study pool
    # (the gene-level arrays and one study's temporaries); only the row index grows, by 8 bytes a row (29 kB).
    assert many < few + 64_000, (few, many)
    assert many < pool_bytes / 4, (many, pool_bytes)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n_studies": 0}, "n_studies must be >= 1"),
        ({"n_studies": 2.0}, "n_studies must be an integer"),
        ({"samples_per_study": 0}, "samples_per_study must be >= 1"),
        ({"n_genes": 5}, "n_genes must be >= 10"),
        ({"n_cohort_samples": 0}, "n_cohort_samples must be >= 1"),
        ({"n_cohort_studies": 0}, "n_cohort_studies must be >= 1"),
        ({"n_cohort_samples": 3, "n_cohort_studies": 4}, "n_cohort_samples=3 must be >= n_cohort_studies=4"),
        ({"n_classes": 1}, "n_classes must be >= 2"),
        ({"n_programs": 2}, "n_programs=2 must be >= n_classes=3"),
        ({"shared": 1.5}, r"shared must be in \[0.0, 1.0\]"),
        ({"shared": -0.1}, "shared must be in"),
        ({"shared": float("nan")}, "shared must be a finite real number"),
        ({"program_prevalence": 1.2}, "program_prevalence must be in"),
        ({"program_size": 0.0}, "program_size must be in"),
        ({"study_shift": -0.3}, "study_shift must be in"),
        ({"mean_library_size": 0}, "mean_library_size must be in"),
        ({"dispersion": -1}, "dispersion must be in"),
        ({"output": "cpm"}, "output must be one of 'log_cpm', 'counts'"),
        ({"pool_path": 3}, "pool_path must be None or a file path"),
        ({"pool_path": "/no/such/folder/pool.npy"}, "pool_path=.* does not exist"),
        ({"return_info": "yes"}, "return_info must be True or False"),
    ],
)
def test_bad_parameters_raise_value_errors_naming_them(params, message):
    with pytest.raises(ValueError, match=message):
        make_compendium(**{**SMALL, **params})


def test_pool_path_that_is_a_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        make_compendium(**SMALL, pool_path=tmp_path)


def test_gene_biology_is_drawn_as_make_expression_draws_it():
    # Same distributions and constants: fed make_expression's generator, the helper reproduces its genes and programs.
    _, _, info = make_expression(n_samples=10, n_genes=150, n_programs=5, random_state=3, return_info=True)
    rng = np.random.default_rng(check_random_state(3).randint(np.iinfo(np.int32).max))
    base_log, dispersion, loadings = _compendium._gene_biology(rng, 150, 5, 0.03, 0.2)
    assert_allclose(np.exp(base_log), info.base_expression)
    assert_array_equal(dispersion, info.dispersion)
    assert_array_equal(loadings, info.loadings)
