"""Inputs a biologist gets wrong, named at fit before any training (issue 26).

Each case below passed silently (or failed only after training, with someone else's message) before these checks.
The embedders' training is replaced by a failure (the ``no_training`` fixture), so each test also proves that the
check comes first; the SSLClassifier cases fit the default ensemble, which takes a fraction of a second.
"""

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from _strict_warnings import every_warning_an_error
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from skssl import ContrastiveEmbedder, LogCPM, MaskedAutoencoder, VAEEmbedder, make_expression
from skssl._base import BaseSSLEstimator
from skssl.exceptions import DataOrientationWarning, DataScaleWarning
from skssl.supervised import SSLClassifier

FAST = dict(max_epochs=1, hidden_dims=(8,), n_components=2, device="cpu", random_state=0)
EMBEDDERS = [MaskedAutoencoder, ContrastiveEmbedder, VAEEmbedder]


@pytest.fixture
def no_training(monkeypatch):
    """Any embedder training raises: a check that must come before training raises its own error first."""

    def refuse(*args, **kwargs):
        raise RuntimeError("training started")

    monkeypatch.setattr(BaseSSLEstimator, "_fit_network", refuse)


@pytest.fixture(scope="module")
def cohort():
    X, y = make_expression(n_samples=120, n_genes=200, random_state=0)  # log-CPM
    return X, y


@pytest.fixture(scope="module")
def counts():
    X, _ = make_expression(n_samples=120, n_genes=200, output="counts", random_state=0)
    return X


# ----------------------------------------------------------------------------- transposed matrix


@pytest.mark.parametrize(
    "columns, index",
    [
        ([f"GSM{71019 + i}.CEL" for i in range(120)], None),  # the genes x samples file
        ([f"TCGA-OR-A5J{i % 10}-{i:02d}" for i in range(120)], None),
        ([f"SRR{1000 + i}" for i in range(120)], None),
        ([f"patient{i}" for i in range(120)], [f"ENSG{i:011d}" for i in range(200)]),  # gene ids as row names
    ],
    ids=["geo-cel", "tcga", "sra", "ensembl-rows"],
)
@pytest.mark.parametrize("cls", [MaskedAutoencoder, SSLClassifier])
def test_transposed_table_is_refused_by_name(cohort, no_training, cls, columns, index):
    X, y = cohort
    table = pd.DataFrame(X.T, columns=columns, index=index)
    fit_args = (table,) if cls is MaskedAutoencoder else (table, np.arange(200) % 2)
    with pytest.raises(ValueError, match=r"X looks transposed .* pass X\.T"):
        cls(**(FAST if cls is MaskedAutoencoder else {})).fit(*fit_args)


def test_transposed_array_warns_from_its_values(cohort, no_training):
    X, _ = cohort
    with pytest.warns(DataOrientationWarning, match=r"pass X\.T") as record:
        with pytest.raises(RuntimeError, match="training started"):
            MaskedAutoencoder(**FAST).fit(X.T)
    assert record[0].filename == __file__  # points at the caller's fit


def test_genes_in_columns_are_not_taken_for_samples(cohort, counts):
    X, _ = cohort
    frame = pd.DataFrame(X, index=[f"GSM{i}" for i in range(len(X))], columns=[f"ENSG{i:011d}" for i in range(200)])
    with warnings.catch_warnings():
        every_warning_an_error()
        MaskedAutoencoder(**FAST).fit(frame)
        VAEEmbedder(likelihood="nb", **FAST).fit(counts)  # counts: genes correlate through library size, < 0.35


# ----------------------------------------------------------------------------- scale


@pytest.mark.parametrize("cls", EMBEDDERS)
def test_counts_into_a_log_expression_model_warn(counts, no_training, cls):
    with pytest.warns(DataScaleWarning, match=r"whole numbers.*LogCPM\(\).*np\.log1p") as record:
        with pytest.raises(RuntimeError, match="training started"):
            cls(**FAST).fit(counts)
    assert record[0].filename == __file__


def test_fpkm_into_a_log_expression_model_warns(cohort, no_training):
    X, _ = cohort
    fpkm = np.exp2(X) - 1 + np.random.default_rng(0).uniform(0, 0.01, size=X.shape)  # fractional, heavy-tailed
    with pytest.warns(DataScaleWarning, match="heavy right tail"):
        with pytest.raises(RuntimeError, match="training started"):
            MaskedAutoencoder(**FAST).fit(fpkm.astype(np.float32))


def test_ssl_classifier_warns_once_on_counts(counts, cohort):
    _, y = cohort
    with pytest.warns(DataScaleWarning) as record:
        SSLClassifier(MaskedAutoencoder(**FAST), random_state=0).fit(counts, y)
    # The embedder's pre-training inside the fit reads the same X: one warning, not two.
    assert sum(issubclass(w.category, DataScaleWarning) for w in record) == 1


def test_log_cpm_on_log_scale_data_warns(cohort):
    X, _ = cohort
    with pytest.warns(DataScaleWarning, match="looks already log-scaled"):
        LogCPM().fit_transform(X)


def test_right_scales_raise_no_warning(cohort, counts):
    X, y = cohort
    with warnings.catch_warnings():
        every_warning_an_error()
        LogCPM().fit_transform(counts)
        VAEEmbedder(likelihood="nb", **FAST).fit(counts)
        MaskedAutoencoder(**FAST).fit(X)
        SSLClassifier(random_state=0).fit(X, y)
        LogCPM().fit_transform(counts / counts.sum(axis=1, keepdims=True))  # proportions: not log-scaled
        MaskedAutoencoder(**FAST).fit(np.random.default_rng(0).integers(0, 2, size=(60, 30)))  # 0/1 calls


SHARED_SETS = {
    "bladderbatch": ("bladderbatch", "cancer"),
    "hsmm": ("hsmm_myoblast", "Hours"),
    "tcga": ("tcga_acc.RNASeq2GeneNorm", "C1A.C1B"),
}


@pytest.mark.data
@pytest.mark.parametrize("task", list(SHARED_SETS))
def test_value_checks_are_silent_on_the_shared_sets_as_loaded_and_warn_on_their_raw_values(task, shared_data_dir):
    from skssl import _input_checks
    from skssl.benchmark._datasets import load_benchmark_data

    name, column = SHARED_SETS[task]
    loaded = load_benchmark_data(name, label_column=column, data_dir=shared_data_dir)
    with warnings.catch_warnings():
        every_warning_an_error()
        for estimator in (MaskedAutoencoder(), VAEEmbedder(), SSLClassifier()):
            _input_checks.check_fit_values(estimator, loaded["X"])
    if "log1p applied" in loaded["preprocessing"]:  # FPKM, RSEM: the heuristic must see what log1p fixed
        raw = np.expm1(loaded["X"].astype(np.float64))
        with pytest.warns(DataScaleWarning, match="heavy right tail"):
            _input_checks.check_fit_values(MaskedAutoencoder(), raw)


# ----------------------------------------------------------------------------- constant data


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: np.ones((50, 30)), "X is constant"),
        (lambda: np.zeros((50, 30)), "X is constant"),
        (lambda: np.hstack([np.random.default_rng(0).normal(size=(50, 2)), np.zeros((50, 300))]), "Only 2 of the 302"),
    ],
    ids=["ones", "zeros", "all-but-two"],
)
@pytest.mark.parametrize("cls", [MaskedAutoencoder, SSLClassifier])
def test_constant_data_is_refused(no_training, cls, make, match):
    X = make()
    fit_args = (X,) if cls is MaskedAutoencoder else (X, np.arange(len(X)) % 2)
    with pytest.raises(ValueError, match=match):
        cls(**(FAST if cls is MaskedAutoencoder else {})).fit(*fit_args)


def test_constant_check_confirms_a_sampled_verdict_on_every_row(no_training):
    # Wide enough that the check reads a sample of rows; the only varying rows fall between the sampled ones.
    X = np.zeros((3000, 5000), dtype=np.float32)
    X[1, :] = np.arange(5000)
    with pytest.raises(RuntimeError, match="training started"):
        MaskedAutoencoder(**FAST).fit(X)


# ----------------------------------------------------------------------------- labels


@pytest.mark.parametrize(
    "odd, shown",
    [
        ("cancer ", "'cancer' (59 samples) and 'cancer ' (1 sample)"),
        ("Cancer", "'Cancer' (1 sample) and 'cancer' (59 samples)"),
        (" cancer", "' cancer' (1 sample) and 'cancer' (59 samples)"),
    ],
)
def test_labels_that_differ_in_whitespace_or_case_are_refused(cohort, odd, shown):
    X, _ = cohort
    y = np.array(["cancer"] * 59 + ["normal"] * 60 + [odd], dtype=object)
    with pytest.raises(ValueError, match=re.escape(shown) + r".*\.str\.strip\(\)"):
        SSLClassifier(random_state=0).fit(X, y)


def test_genotype_classes_that_differ_in_case_are_kept(cohort):
    X, _ = cohort
    y = np.array(["AA", "Aa", "aa"] * 40)
    assert list(SSLClassifier(random_state=0).fit(X, y).classes_) == ["AA", "Aa", "aa"]


@pytest.mark.parametrize("kind", ["object", "series"])
def test_missing_labels_given_to_an_embedder_warn_before_training(cohort, no_training, kind):
    X, _ = cohort
    labels = ["cancer"] * 60 + ["normal"] * 58 + [None, None]
    y = pd.Series(labels) if kind == "series" else np.array([np.nan if v is None else v for v in labels], dtype=object)
    pipeline = Pipeline([("ssl", MaskedAutoencoder(**FAST)), ("clf", LogisticRegression())])
    with pytest.warns(UserWarning, match=r"y has 2 missing label.*LogisticRegression.*SSLClassifier") as record:
        with pytest.raises(RuntimeError, match="training started"):
            pipeline.fit(X, y)
    assert record[0].filename == __file__


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_y_of_the_wrong_length_is_refused_before_training(cohort, no_training, method):
    X, y = cohort
    with pytest.raises(ValueError, match="y has 100 labels but X has 120 samples"):
        getattr(MaskedAutoencoder(**FAST), method)(X, y[:100])


# ----------------------------------------------------------------------------- gene names


def test_duplicated_gene_names_are_refused_with_the_fix(cohort):
    X, _ = cohort
    frame = pd.DataFrame(X[:, :4], columns=["TP53", "MYC", "TP53", "EGFR"])
    for estimator in (MaskedAutoencoder(**FAST), SSLClassifier()):
        with pytest.raises(ValueError, match=r"'TP53' 2 times.*GeneAligner\(duplicates='sum'\).*'mean'.*unique"):
            estimator.fit(frame, np.arange(len(X)) % 2)


# ----------------------------------------------------------------------------- SSLClassifier's defaults


def test_default_ensemble_raises_no_cross_validation_warning(cohort):
    X, y = cohort
    y = y.copy()
    y[y == 2] = -1
    y[np.flatnonzero(y == -1)[:3]] = 2  # 3 labeled of class 2: fewer than the 5 internal folds
    with warnings.catch_warnings():
        every_warning_an_error()
        clf = SSLClassifier(random_state=0).fit(X, y)
    assert clf.ensemble_.held_out_loss_ is not None  # the weights did come from the 5-fold held-out predictions


def test_verbose_reports_members_weights_and_time_on_stderr(cohort, capsys):
    X, y = cohort
    clf = SSLClassifier(verbose=1, random_state=0).fit(X, y)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 2
    assert re.match(
        r"\[SSLClassifier\] ensemble of genes, pcs, graph fitted on 120 samples .* in \d+\.\d+ s$", lines[0]
    )
    weights = ", ".join(f"{name} {weight:.2f}" for name, weight in clf.weights_.items())
    assert lines[1].startswith(f"[SSLClassifier] weights {weights}: chosen on 5-fold")
    SSLClassifier(random_state=0).fit(X, y)
    assert capsys.readouterr() == ("", "")
    y_few = np.where(np.arange(len(y)) < 6, y, -1)  # 2 labels per class: too few to judge the members
    SSLClassifier(verbose=1, random_state=0).fit(X, y_few)
    assert capsys.readouterr().err.strip().endswith(": uniform (too few labels to judge the members on held-out rows)")
    SSLClassifier(members=("pcs",), verbose=1, random_state=0).fit(X, y)
    assert capsys.readouterr().err.strip().endswith("weights pcs 1.00: a single member")
