"""Error and warning messages that name the offending value and say how to fix it (issue 13)."""

import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from skssl import (
    ContrastiveEmbedder,
    GeneAligner,
    HighlyVariableGenes,
    LogCPM,
    MaskedAutoencoder,
    SSLClassifier,
    SSLRegressor,
    VAEEmbedder,
)

pd = pytest.importorskip("pandas")

FAST = dict(max_epochs=2, hidden_dims=(16,), n_components=3, device="cpu", random_state=0)
GENES = [f"GENE{i}" for i in range(6)]


@pytest.fixture
def X():
    return np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)


@pytest.fixture
def counts():
    return np.random.default_rng(0).poisson(5.0, size=(40, 6)).astype(np.float32)


# ----------------------------------------------------------------------------- NaN and infinity


def _with(X, value, where=((3, 2), (7, 4))):
    X = X.astype(np.float64)
    for i, j in where:
        X[i, j] = value
    return X


@pytest.mark.parametrize("kind", ["numpy", "pandas", "sparse"])
def test_nan_message_names_the_value_and_the_fix(X, kind):
    bad = _with(X, np.nan)
    if kind == "pandas":
        bad, column = pd.DataFrame(bad, columns=GENES), "'GENE2'"
    elif kind == "sparse":
        bad, column = sp.csr_matrix(bad), "2"
    else:
        column = "2"
    expected = rf"X contains NaN in 2 value\(s\) \(first in row 3, column {column}\): impute them or drop"
    with pytest.raises(ValueError, match=expected) as info:
        MaskedAutoencoder(**FAST).fit(bad)
    assert "HistGradientBoosting" not in str(info.value)
    if kind == "pandas":
        clean = bad.fillna(0.0)
    else:
        clean = sp.csr_matrix(np.nan_to_num(bad.toarray())) if kind == "sparse" else np.nan_to_num(bad)
    fitted = MaskedAutoencoder(**FAST).fit(clean)
    with pytest.raises(ValueError, match=expected):
        fitted.transform(bad)


@pytest.mark.parametrize("kind", ["numpy", "sparse"])
def test_complex_data_raises_without_a_cast_warning(X, kind):
    complex_X = X + 1j
    complex_X = sp.csr_matrix(complex_X) if kind == "sparse" else complex_X
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the NaN scan must not cast complex values to real (a ComplexWarning)
        with pytest.raises(ValueError, match="Complex data not supported"):
            MaskedAutoencoder(**FAST).fit(complex_X)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # 1e300 read as float32
@pytest.mark.parametrize("value", [np.inf, -np.inf, 1e300])
def test_infinity_message(X, value):
    with pytest.raises(ValueError, match=r"X contains infinity.* in 2 value\(s\) \(first in row 3, column 2\)"):
        ContrastiveEmbedder(**FAST).fit(_with(X, value))


def test_nullable_pandas_missing_value(X):
    frame = pd.DataFrame(X, columns=GENES).astype("Float64")
    frame.iloc[5, 1] = pd.NA
    with pytest.raises(ValueError, match=r"NaN in 1 value\(s\) \(first in row 5, column 'GENE1'\)"):
        MaskedAutoencoder(**FAST).fit(frame)


def test_classifier_nan_message(X):
    y = np.arange(40) % 2
    with pytest.raises(ValueError, match=r"X contains NaN in 2 value\(s\) \(first in row 3, column 2\)"):
        SSLClassifier(device="cpu").fit(_with(X, np.nan), y)


def test_memmap_nan_message(X, tmp_path):
    mm = np.memmap(tmp_path / "x.dat", dtype=np.float32, mode="w+", shape=X.shape)
    mm[:] = _with(X, np.nan, where=((9, 5),))
    with pytest.raises(ValueError, match=r"X contains NaN in 1 value\(s\) of rows 0-39 \(first in row 9, column 5\)"):
        MaskedAutoencoder(**FAST).fit(mm)


def test_multiview_vae_still_reads_nan_blocks_and_names_infinities(X):
    views = {"a": slice(0, 3), "b": slice(3, 6)}
    missing = X.copy()
    missing[:5, 3:] = np.nan  # view b missing in 5 samples: allowed
    VAEEmbedder(views=views, **FAST).fit(missing)
    infinite = missing.copy()
    infinite[8, 1] = np.inf
    with pytest.raises(ValueError, match=r"X contains infinity in 1 value\(s\) \(first in row 8, column 1\)"):
        VAEEmbedder(views=views, **FAST).fit(infinite)


# ----------------------------------------------------------------------------- string columns


def test_string_column_is_named(X):
    frame = pd.DataFrame(X, columns=GENES)
    frame.insert(2, "tissue", ["liver", "lung"] * 20)
    frame["batch"] = pd.Series(["b1"] * 40, dtype="string")
    with pytest.raises(ValueError, match="non-numeric column") as info:
        MaskedAutoencoder(**FAST).fit(frame)
    message = str(info.value)
    assert "'tissue'" in message and "'batch'" in message and "'liver'" in message
    assert "drop these columns or encode them" in message and "belong in y" in message
    assert "could not convert" not in message


def test_numeric_object_column_is_still_accepted(X):
    frame = pd.DataFrame(X, columns=GENES)
    frame["GENE0"] = frame["GENE0"].astype(object)
    MaskedAutoencoder(**FAST).fit(frame)


# ----------------------------------------------------------------------------- reordered genes


@pytest.mark.parametrize("estimator", [MaskedAutoencoder(**FAST), SSLClassifier(device="cpu")], ids=["vime", "clf"])
def test_reordered_columns_point_at_gene_aligner(X, estimator):
    frame = pd.DataFrame(X, columns=GENES)
    fitted = estimator.fit(frame, np.arange(40) % 2)
    reordered = frame[GENES[::-1]]
    method = fitted.transform if hasattr(fitted, "transform") else fitted.predict
    with pytest.raises(ValueError, match="same 6 gene names but in a different order") as info:
        method(reordered)
    assert "skssl.GeneAligner" in str(info.value) and "X[est.feature_names_in_]" in str(info.value)
    method(reordered[fitted.feature_names_in_])  # the fix the message gives works


def test_different_genes_point_at_gene_aligner(X):
    frame = pd.DataFrame(X, columns=GENES)
    fitted = MaskedAutoencoder(**FAST).fit(frame)
    other = frame.rename(columns={"GENE0": "TP53"})
    with pytest.raises(ValueError, match=r"lacks 1 of the fitted genes \(e.g. 'GENE0'\).*'TP53'.*GeneAligner"):
        fitted.transform(other)
    with pytest.warns(UserWarning, match="missing from X"):
        aligned = GeneAligner(genes=GENES).fit_transform(other)
    fitted.transform(pd.DataFrame(aligned, columns=GENES))


# ----------------------------------------------------------------------------- "-1" in a string label array


def test_string_minus_one_label_warns(X):
    y = np.array(["a", "-1", "b", "-1"] * 10)
    with pytest.warns(UserWarning, match=r'string label array "-1" is a class name, not the unlabeled marker') as rec:
        clf = SSLClassifier(device="cpu", random_state=0).fit(X, y)
    assert rec[0].filename == __file__  # points at the caller's fit
    message = str(rec[0].message)
    assert "20 sample(s)" in message and "dtype=object" in message and "pandas Series" in message
    assert "-1" in list(clf.classes_)  # documented behaviour: it stays a class


@pytest.mark.parametrize("kind", ["object", "series"])
def test_string_minus_one_in_object_labels_warns(X, kind):
    y = np.array(["a", "-1", "b", None] * 10, dtype=object)
    if kind == "series":
        y = pd.Series(y, dtype="string")
    with pytest.warns(UserWarning, match=r'string "-1" \(10 sample\(s\)\)'):
        clf = SSLClassifier(device="cpu", random_state=0).fit(X, y)
    assert list(clf.classes_) == ["-1", "a", "b"]  # None stays the unlabeled marker


def test_object_minus_one_does_not_warn(X):
    y = np.array(["a", -1, "b", -1] * 10, dtype=object)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        clf = SSLClassifier(device="cpu", random_state=0).fit(X, y)
    assert list(clf.classes_) == ["a", "b"]


# ----------------------------------------------------------------------------- likelihood="nb" on non-counts


def test_nb_on_log_scale_data_warns(counts):
    logged = np.log1p(counts)
    with pytest.warns(UserWarning, match="likelihood='nb' .* models raw counts") as record:
        VAEEmbedder(likelihood="nb", **FAST).fit(logged)
    assert "likelihood='gaussian'" in str(record[0].message)
    assert record[0].filename == __file__  # points at the caller's fit, not at skssl's internals


def test_nb_on_counts_does_not_warn(counts, tmp_path):
    mm = np.memmap(tmp_path / "c.dat", dtype=np.float32, mode="w+", shape=counts.shape)
    mm[:] = counts
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        for data in (counts, sp.csr_matrix(counts), mm):
            VAEEmbedder(likelihood="nb", **FAST).fit(data)
        VAEEmbedder(**FAST).fit(np.log1p(counts))  # gaussian: no count check


@pytest.mark.parametrize("kind", ["sparse", "memmap"])
def test_nb_warning_for_streamed_input(counts, tmp_path, kind):
    logged = np.log1p(counts)
    if kind == "sparse":
        data = sp.csr_matrix(logged)
    else:
        data = np.memmap(tmp_path / "l.dat", dtype=np.float32, mode="w+", shape=logged.shape)
        data[:] = logged
    with pytest.warns(UserWarning, match="non-integer values"):
        VAEEmbedder(likelihood="nb", **FAST).fit(data)


def test_nb_view_on_log_scale_data_warns(counts):
    data = np.hstack([np.log1p(counts[:, :3]), counts[:, 3:]])
    views = {"expr": {"columns": slice(0, 3), "likelihood": "nb"}, "cnv": {"columns": slice(3, 6), "likelihood": "nb"}}
    with pytest.warns(UserWarning, match="view 'expr' has non-integer values") as record:
        VAEEmbedder(views=views, **FAST).fit(data)
    assert not any("'cnv'" in str(w.message) for w in record)


# ----------------------------------------------------------------------------- HTML repr documentation links


@pytest.mark.parametrize(
    "estimator",
    [
        ContrastiveEmbedder(),
        MaskedAutoencoder(),
        VAEEmbedder(),
        SSLClassifier(),
        SSLRegressor(),
        LogCPM(),
        HighlyVariableGenes(),
        GeneAligner(),
    ],
    ids=lambda est: type(est).__name__,
)
def test_html_repr_links_to_the_api_page(estimator):
    name = type(estimator).__name__
    link = f"https://skssl.readthedocs.io/en/latest/generated/skssl.{name}.html#skssl.{name}"
    assert estimator._get_doc_link() == link
    assert re.search(rf'href="{re.escape(link)}"', estimator._repr_html_())


def test_subclass_outside_skssl_gets_no_link():
    class Mine(MaskedAutoencoder):
        pass

    Mine.__module__ = "myproject.models"
    assert Mine()._get_doc_link() == ""


def test_multiview_memmap_infinity_is_named(X, tmp_path):
    views = {"a": slice(0, 3), "b": slice(3, 6)}
    fitted = VAEEmbedder(views=views, **FAST).fit(X)
    mm = np.memmap(tmp_path / "x.dat", dtype=np.float32, mode="w+", shape=X.shape)
    mm[:] = X
    mm[12, 4] = -np.inf
    expected = r"X contains infinity in 1 value\(s\) of rows 0-39 \(first in row 12, column 4\)"
    with pytest.raises(ValueError, match=expected):
        fitted.transform(mm)
