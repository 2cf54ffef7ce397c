"""AnnData (.h5ad) input and output: skssl.io.read_h5ad and skssl.io.write_embedding.

The round trips need the optional anndata package and are skipped without it; the ImportError test runs always.
"""

import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from skssl.io import ExpressionData, read_h5ad, write_embedding

GENES = ["CD3E", "MS4A1", "LYZ", "NKG7", "GNLY", "CD14"]


@pytest.fixture
def ad():
    return pytest.importorskip("anndata")


def _adata(ad, n_obs=8, sparse=False, with_layer=False):
    import pandas as pd

    rng = np.random.default_rng(0)
    counts = rng.poisson(2.0, size=(n_obs, len(GENES))).astype(np.float32)
    X = np.log1p(counts)
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(["T", "B", None, "T", "B", "T", None, "B"][:n_obs]),
            "n_counts": counts.sum(axis=1),
            "batch": ["b1", "b2"] * (n_obs // 2),
        },
        index=[f"cell{i}" for i in range(n_obs)],
    )
    var = pd.DataFrame({"highly_variable": [True, False, True, True, False, True]}, index=GENES)
    adata = ad.AnnData(sp.csr_matrix(X) if sparse else X, obs=obs, var=var)
    if with_layer:
        adata.layers["counts"] = sp.csr_matrix(counts) if sparse else counts
    return adata


def _write(adata, tmp_path, name="cells.h5ad"):
    path = tmp_path / name
    adata.write_h5ad(path)
    return path


# --------------------------------------------------------------------------------------------------------------
# read_h5ad
# --------------------------------------------------------------------------------------------------------------


def test_read_dense_round_trip(ad, tmp_path):
    adata = _adata(ad)
    data = read_h5ad(_write(adata, tmp_path))
    assert type(data) is ExpressionData
    assert isinstance(data.X, np.ndarray) and data.X.dtype == np.float32
    np.testing.assert_allclose(data.X, adata.X, rtol=1e-6)
    assert list(data.genes) == GENES
    assert list(data.samples) == list(adata.obs_names)
    assert set(data.metadata) == {"cell_type", "n_counts", "batch"}
    # ExpressionData's conventions: numeric -> float64, text -> object with None for missing
    assert data.metadata["n_counts"].dtype == np.float64
    np.testing.assert_allclose(data.metadata["n_counts"], adata.obs["n_counts"])
    assert list(data.metadata["cell_type"]) == ["T", "B", None, "T", "B", "T", None, "B"]
    assert list(data.gene_metadata["highly_variable"]) == [True, False, True, True, False, True]
    assert data.attrs["layer"] == "X" and data.attrs["source"].endswith("cells.h5ad")
    assert data.labels is None
    frame = data.to_frame()
    assert list(frame.columns) == GENES and list(frame.index) == list(adata.obs_names)


def test_read_sparse_stays_sparse(ad, tmp_path):
    adata = _adata(ad, sparse=True)
    data = read_h5ad(_write(adata, tmp_path))
    assert sp.issparse(data.X) and data.X.format == "csr" and data.X.dtype == np.float32
    assert data.shape == (8, len(GENES)) and data.n_genes == len(GENES)
    np.testing.assert_allclose(data.X.toarray(), adata.X.toarray(), rtol=1e-6)
    assert list(data.genes) == GENES and list(data.samples) == list(adata.obs_names)
    assert data.gene_metadata["highly_variable"].shape == (len(GENES),)


def test_read_csc_becomes_csr(ad, tmp_path):
    adata = _adata(ad)
    adata.X = sp.csc_matrix(adata.X)
    data = read_h5ad(_write(adata, tmp_path))
    assert sp.issparse(data.X) and data.X.format == "csr"
    np.testing.assert_allclose(data.X.toarray(), adata.X.toarray(), rtol=1e-6)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("backed", [False, True])
def test_read_layer(ad, tmp_path, sparse, backed):
    adata = _adata(ad, sparse=sparse, with_layer=True)
    data = read_h5ad(_write(adata, tmp_path), layer="counts", backed=backed)
    assert data.attrs["layer"] == "counts"
    assert sp.issparse(data.X) == sparse
    expected = adata.layers["counts"].toarray() if sparse else adata.layers["counts"]
    got = data.X.toarray() if sparse else data.X
    np.testing.assert_array_equal(got, expected)
    assert np.all(got == np.round(got))  # raw counts, not the log-normalised X


def test_read_backed_X(ad, tmp_path):
    adata = _adata(ad, sparse=True)
    data = read_h5ad(_write(adata, tmp_path), backed=True)
    assert sp.issparse(data.X)
    np.testing.assert_allclose(data.X.toarray(), adata.X.toarray(), rtol=1e-6)


def test_read_label_column(ad, tmp_path):
    path = _write(_adata(ad), tmp_path)
    data = read_h5ad(path, label_column="cell_type")
    # missing annotations -> -1, the semi-supervised unlabeled marker
    assert data.labels.dtype == object
    assert list(data.labels) == ["T", "B", -1, "T", "B", "T", -1, "B"]
    numeric = read_h5ad(path, label_column="n_counts")
    assert numeric.labels.dtype == np.float64
    assert read_h5ad(path, label_column="batch").labels.tolist() == ["b1", "b2"] * 4


def test_read_errors_name_the_available_ones(ad, tmp_path):
    path = _write(_adata(ad, with_layer=True), tmp_path)
    with pytest.raises(ValueError, match=r"no layer 'spliced'.*\['counts'\]"):
        read_h5ad(path, layer="spliced")
    with pytest.raises(ValueError, match=r"label_column='celltype'.*\['cell_type', 'n_counts', 'batch'\]"):
        read_h5ad(path, label_column="celltype")
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_h5ad(tmp_path / "missing.h5ad")


# --------------------------------------------------------------------------------------------------------------
# write_embedding
# --------------------------------------------------------------------------------------------------------------


def test_write_array_in_place_and_to_file(ad, tmp_path):
    adata = _adata(ad)
    embedding = np.arange(16, dtype=np.float32).reshape(8, 2)
    out = write_embedding(adata, embedding, path=tmp_path / "with_embedding.h5ad")
    assert out is adata
    np.testing.assert_array_equal(adata.obsm["X_skssl"], embedding)
    back = ad.read_h5ad(tmp_path / "with_embedding.h5ad")
    np.testing.assert_array_equal(back.obsm["X_skssl"], embedding)
    assert back.uns["skssl"]["X_skssl"]["estimator"] == "array"


def test_write_to_the_file_given(ad, tmp_path):
    path = _write(_adata(ad), tmp_path)
    embedding = np.ones((8, 3))
    adata = write_embedding(path, embedding, key="X_mine")
    np.testing.assert_array_equal(ad.read_h5ad(path).obsm["X_mine"], embedding)
    assert "X_mine" in adata.obsm
    # a second key keeps the first
    write_embedding(path, np.zeros((8, 2)))
    back = ad.read_h5ad(path)
    assert set(back.obsm) == {"X_mine", "X_skssl"} and set(back.uns["skssl"]) == {"X_mine", "X_skssl"}


def test_write_checks_rows_and_shape(ad):
    adata = _adata(ad)
    with pytest.raises(ValueError, match="7 rows but the AnnData has 8 cells"):
        write_embedding(adata, np.ones((7, 2)))
    with pytest.raises(ValueError, match="must be 2-D"):
        write_embedding(adata, np.ones(8))
    with pytest.raises(TypeError, match="anndata.AnnData or the path"):
        write_embedding(np.ones((8, 6)), np.ones((8, 2)))
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(TypeError, match="LogisticRegression has no transform method"):
        write_embedding(adata, LogisticRegression())
    assert "X_skssl" not in adata.obsm


def test_write_estimator_matches_genes_by_name(ad, tmp_path):
    from sklearn.decomposition import PCA

    adata = _adata(ad, sparse=True)
    frame = adata.to_df()
    pca = PCA(n_components=2).fit(frame)  # feature_names_in_ = GENES
    expected = pca.transform(frame)
    shuffled = adata[:, GENES[::-1]].copy()  # same cells, genes in another order
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no feature-name warning
        write_embedding(shuffled, pca)
    np.testing.assert_allclose(shuffled.obsm["X_skssl"], expected, rtol=1e-5, atol=1e-6)
    assert shuffled.uns["skssl"]["X_skssl"]["estimator"] == "PCA"

    missing = adata[:, GENES[:4]].copy()
    with pytest.raises(ValueError, match=r"2 of the 6 genes .* not in var_names.*GeneAligner"):
        write_embedding(missing, pca)


def test_write_estimator_without_names_checks_gene_count(ad):
    from sklearn.decomposition import PCA

    adata = _adata(ad)
    pca = PCA(n_components=2).fit(np.asarray(adata.X)[:, :5])
    with pytest.raises(ValueError, match="fitted on 5 features but the matrix has 6 genes"):
        write_embedding(adata, pca)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        write_embedding(adata, PCA(n_components=2))


def test_write_estimator_on_a_layer(ad):
    from sklearn.decomposition import PCA

    adata = _adata(ad, with_layer=True)
    pca = PCA(n_components=2).fit(adata.layers["counts"])
    write_embedding(adata, pca, layer="counts", key="X_counts_pca")
    np.testing.assert_allclose(adata.obsm["X_counts_pca"], pca.transform(adata.layers["counts"]), rtol=1e-5)
    assert adata.uns["skssl"]["X_counts_pca"]["layer"] == "counts"
    with pytest.raises(ValueError, match="no layer 'raw'"):
        write_embedding(adata, pca, layer="raw")


def test_masked_autoencoder_pipeline_on_adata(ad, tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from skssl import MaskedAutoencoder, make_expression

    X, y = make_expression(n_samples=40, n_genes=30, random_state=0)
    adata = ad.AnnData(sp.csr_matrix(X))
    adata.obs["label"] = np.array(["a", "b", "c"])[y]
    path = _write(adata, tmp_path)

    data = read_h5ad(path, label_column="label")
    assert sp.issparse(data.X)
    embedder = MaskedAutoencoder(n_components=4, hidden_dims=(16,), max_epochs=2, random_state=0)
    model = Pipeline([("ssl", embedder), ("clf", LogisticRegression(max_iter=200))])
    model.fit(data.X, data.labels)
    assert model.predict(data.X).shape == (40,)
    assert set(model.classes_) == {"a", "b", "c"}

    adata = write_embedding(path, model.named_steps["ssl"])
    emb = ad.read_h5ad(path).obsm["X_skssl"]
    assert emb.shape == (40, 4)
    np.testing.assert_allclose(emb, model.named_steps["ssl"].transform(data.X), rtol=1e-5, atol=1e-6)
    assert adata.uns["skssl"]["X_skssl"]["estimator"] == "MaskedAutoencoder"


# --------------------------------------------------------------------------------------------------------------
# Without anndata
# --------------------------------------------------------------------------------------------------------------


def test_without_anndata_import_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "anndata", None)  # `import anndata` raises ImportError
    with pytest.raises(ImportError, match=r'read_h5ad requires the anndata package.*pip install "skssl\[anndata\]"'):
        read_h5ad(tmp_path / "cells.h5ad")
    with pytest.raises(ImportError, match=r'write_embedding requires .*pip install "skssl\[anndata\]"'):
        write_embedding(tmp_path / "cells.h5ad", np.ones((2, 2)))


def test_importing_skssl_does_not_import_anndata():
    code = "import sys, skssl, skssl.io; assert 'anndata' not in sys.modules, 'anndata imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
