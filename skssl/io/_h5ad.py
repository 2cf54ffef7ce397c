"""AnnData (``.h5ad``) input and output: the scverse ecosystem (scanpy, scvi-tools).

:func:`read_h5ad` reads an ``.h5ad`` file into an :class:`skssl.io.ExpressionData`; :func:`write_embedding`
stores an embedding (an array, or a fitted estimator's ``transform``) in ``adata.obsm``, optionally writing the
file. Both need the optional ``anndata`` package (``pip install "skssl[anndata]"``), imported only when they are
called: importing skssl never imports anndata.
"""

# License: BSD-3-Clause

import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .._atomic import atomic_path
from ._container import ExpressionData, _str_array

__all__ = ["read_h5ad", "write_embedding"]

_INSTALL = 'pip install "skssl[anndata]"'


def _import_anndata(what):
    try:
        import anndata
    except ImportError as exc:
        raise ImportError(f"{what} requires the anndata package, which is not installed: {_INSTALL}") from exc
    return anndata


def _available(names):
    names = [str(n) for n in names]
    return repr(names) if names else "none"


def _matrix(adata, layer, source):
    """``adata.X`` or ``adata.layers[layer]``, with a clear error for a missing layer."""
    if layer is None:
        X = adata.X
        if X is None:
            raise ValueError(
                f"{source}: the AnnData has no X matrix; pass layer= one of the layers "
                f"(available: {_available(adata.layers.keys())})."
            )
        return X
    if layer not in adata.layers:
        raise ValueError(
            f"{source}: no layer {layer!r} in the AnnData (available layers: {_available(adata.layers.keys())}; "
            "layer=None reads X)."
        )
    return adata.layers[layer]


def _as_float32(X):
    """Dense -> float32 ndarray; sparse -> float32 CSR (kept sparse)."""
    if hasattr(X, "to_memory"):  # a backed (on-disk) sparse matrix
        X = X.to_memory()
    if sp.issparse(X):
        return sp.csr_matrix(X, dtype=np.float32)
    return np.asarray(X, dtype=np.float32)


def _column(series):
    """An obs/var column following ExpressionData's convention: numeric -> float64 (NaN when missing), else an
    object array (None when missing)."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    values = series.astype(object).to_numpy()
    out = np.empty(len(values), dtype=object)
    out[:] = [None if _is_na(v) else v for v in values]
    return out


def _is_na(value):
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # array-like cells
        return False


def _labels(series):
    """Labels for scikit-learn: numeric columns as numbers (NaN when missing); text and categorical columns as an
    object array with ``-1``, the semi-supervised unlabeled marker, for missing values."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(series.dtype) and not series.isna().any():
        return series.to_numpy(dtype=bool)
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        if series.isna().any() or pd.api.types.is_float_dtype(series.dtype):
            return series.to_numpy(dtype=np.float64, na_value=np.nan)
        return series.to_numpy(dtype=np.int64)
    values = series.astype(object).to_numpy()
    out = np.empty(len(values), dtype=object)
    out[:] = [-1 if _is_na(v) else v for v in values]
    return out


def read_h5ad(path, layer=None, label_column=None, *, backed=False):
    """Read an AnnData ``.h5ad`` file (scanpy, scvi-tools, CELLxGENE...).

    Cells (``obs``) become samples and ``var`` entries become genes. Requires the optional anndata package
    (``pip install "skssl[anndata]"``).

    Parameters
    ----------
    path : str or path-like
        The ``.h5ad`` file.

    layer : str, default=None
        Read ``adata.layers[layer]`` instead of ``adata.X``, e.g. ``"counts"`` for the raw counts a
        ``VAEEmbedder(likelihood="nb")`` models; ``adata.X`` usually holds log-normalised values, right for the
        gaussian models.

    label_column : str, default=None
        A column of ``adata.obs`` returned as ``data.labels``. Missing values (cells without an annotation)
        become ``-1`` in text and categorical columns (an object array), NaN in numeric ones: the unlabeled
        markers of :class:`~skssl.SSLClassifier`.

    backed : bool, default=False
        Open the file in anndata's backed (read-only) mode, where ``adata.X`` stays on disk unless it is the
        matrix read: useful to read a layer of a file whose ``X`` is large. The matrix read is loaded into
        memory.

    Returns
    -------
    data : ExpressionData
        ``X`` is float32: a dense ndarray, or a CSR matrix when the matrix is stored sparse (it stays sparse;
        the skssl estimators accept CSR input and densify one batch at a time; ``data.to_frame()`` and the text
        writers need a dense matrix: ``data.X = data.X.toarray()`` first). ``genes`` are the ``var_names``,
        ``samples`` the ``obs_names``, ``metadata`` the ``obs`` columns, ``gene_metadata`` the ``var`` columns;
        ``attrs`` holds ``source`` (the file) and ``layer`` (``"X"`` or the layer read). ``data.labels`` is the
        `label_column` array (None when not requested).

    Raises
    ------
    ImportError
        If anndata is not installed.
    ValueError
        If `layer` is not a layer of the file or `label_column` not a column of ``obs``; the message lists the
        available ones.

    See Also
    --------
    write_embedding : Store an embedding in ``adata.obsm`` (and the file).

    Examples
    --------
    >>> import pytest; anndata = pytest.importorskip("anndata")  # the example needs anndata
    >>> import os, tempfile
    >>> import numpy as np, pandas as pd
    >>> from scipy import sparse
    >>> from skssl.io import read_h5ad
    >>> adata = anndata.AnnData(
    ...     sparse.csr_matrix(np.array([[0, 2, 1], [3, 0, 0]], dtype=np.float32)),
    ...     obs=pd.DataFrame({"cell_type": ["T cell", None]}, index=["cell1", "cell2"]),
    ...     var=pd.DataFrame(index=["CD3E", "MS4A1", "LYZ"]),
    ... )
    >>> path = os.path.join(tempfile.mkdtemp(), "cells.h5ad")
    >>> adata.write_h5ad(path)
    >>> data = read_h5ad(path, label_column="cell_type")
    >>> data
    ExpressionData(n_samples=2, n_genes=3, metadata=['cell_type'], source='cells.h5ad')
    >>> sparse.issparse(data.X), data.genes, data.labels
    (True, array(['CD3E', 'MS4A1', 'LYZ'], dtype=object), array(['T cell', -1], dtype=object))
    """
    anndata = _import_anndata("read_h5ad")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file.")
    adata = anndata.read_h5ad(path, backed="r" if backed else None)
    try:
        if label_column is not None and label_column not in adata.obs.columns:
            raise ValueError(
                f"{path}: label_column={label_column!r} is not a column of obs (available columns: "
                f"{_available(adata.obs.columns)})."
            )
        X = _as_float32(_matrix(adata, layer, path))
        metadata = {str(name): _column(adata.obs[name]) for name in adata.obs.columns}
        gene_metadata = {str(name): _column(adata.var[name]) for name in adata.var.columns}
        labels = None if label_column is None else _labels(adata.obs[label_column])
        genes, samples = adata.var_names.to_numpy(), adata.obs_names.to_numpy()
    finally:
        if backed:
            adata.file.close()
    attrs = {"source": str(path), "layer": "X" if layer is None else str(layer)}
    data = _expression_data(X, genes, samples, metadata, gene_metadata, attrs)
    data.labels = labels
    return data


def _expression_data(X, genes, samples, metadata, gene_metadata, attrs):
    """An ExpressionData holding `X` as it is: a dense array, or a CSR matrix kept sparse."""
    if not sp.issparse(X):
        return ExpressionData(X, genes, samples, metadata=metadata, gene_metadata=gene_metadata, attrs=attrs)
    # ExpressionData stores a dense float32 X; build it with an empty matrix (which validates the ids and
    # the tables) and then put the CSR matrix in place, so that the data are never densified.
    data = ExpressionData(np.empty((X.shape[0], 0), dtype=np.float32), [], samples, metadata=metadata, attrs=attrs)
    data.genes = _str_array(genes)
    data.gene_metadata = ExpressionData._columns(gene_metadata, len(data.genes), "gene_metadata")
    data.X = X
    return data


def _transform(estimator, adata, layer, source):
    """``estimator.transform`` on the AnnData's matrix, genes in the order the estimator was fitted on."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator)
    X = _matrix(adata, layer, source)
    if hasattr(X, "to_memory"):  # backed
        X = X.to_memory()
    if sp.issparse(X):
        X = sp.csr_matrix(X)
    genes = np.asarray(adata.var_names, dtype=object)
    fitted = getattr(estimator, "feature_names_in_", None)
    if fitted is not None:
        position = {name: i for i, name in enumerate(genes)}
        missing = [str(g) for g in fitted if g not in position]
        if missing:
            raise ValueError(
                f"{source}: {len(missing)} of the {len(fitted)} genes the estimator was fitted on are not in "
                f"var_names, e.g. {missing[:5]}. Align the genes first (skssl.GeneAligner fills missing genes) or "
                "pass the embedding as an array."
            )
        order = np.array([position[g] for g in fitted], dtype=np.intp)
        if not np.array_equal(order, np.arange(len(genes))):
            X = X[:, order]
        with warnings.catch_warnings():
            # The columns were put in the fitted gene order above; the array has no names to check.
            warnings.filterwarnings("ignore", message="X does not have valid feature names", category=UserWarning)
            return estimator.transform(X)
    n_features = getattr(estimator, "n_features_in_", None)
    if n_features is not None and n_features != X.shape[1]:
        raise ValueError(
            f"{source}: the estimator was fitted on {n_features} features but the matrix has {X.shape[1]} genes. "
            "Fit it on the same genes (fitting on a DataFrame, e.g. adata.to_df(), records the gene names so the "
            "columns can be matched by name)."
        )
    return estimator.transform(X)


def write_embedding(adata, embedding, key="X_skssl", *, layer=None, path=None):
    """Store an embedding in ``adata.obsm[key]``, and optionally write the ``.h5ad`` file.

    Requires the optional anndata package (``pip install "skssl[anndata]"``).

    Parameters
    ----------
    adata : anndata.AnnData or str or path-like
        The AnnData to annotate (modified in place), or an ``.h5ad`` file: it is read, annotated and written
        back (to `path` if given, else to the same file).

    embedding : array-like of shape (n_obs, n_components) or fitted estimator
        The embedding, one row per cell in ``obs`` order; or a fitted transformer (an skssl embedder, a
        ``Pipeline``...) whose ``transform`` is applied to ``adata.X`` (or `layer`). When the estimator was
        fitted with gene names (``feature_names_in_``, e.g. fitted on ``adata.to_df()``), the genes are matched
        by name and reordered; otherwise the matrix must have the number of genes it was fitted on.

    key : str, default="X_skssl"
        The ``obsm`` key. scanpy's neighbour graph and UMAP use it with ``sc.pp.neighbors(adata,
        use_rep="X_skssl")``. An existing entry is replaced.

    layer : str, default=None
        The matrix an estimator transforms: ``adata.layers[layer]``, or ``adata.X`` when None.

    path : str or path-like, default=None
        Write the annotated AnnData to this ``.h5ad`` file.

    Returns
    -------
    adata : anndata.AnnData
        The annotated AnnData (the one given, or the one read from the file). ``adata.uns["skssl"][key]``
        records where the embedding came from (estimator class, layer, skssl version).

    Raises
    ------
    ImportError
        If anndata is not installed.
    ValueError
        If the embedding does not have one row per cell, `layer` is missing, or a fitted estimator's genes are
        not in ``var_names``.

    See Also
    --------
    read_h5ad : Read an ``.h5ad`` file into an ExpressionData.

    Examples
    --------
    >>> import pytest; anndata = pytest.importorskip("anndata")  # the example needs anndata
    >>> import numpy as np
    >>> from skssl import make_expression
    >>> from sklearn.decomposition import PCA
    >>> from skssl.io import write_embedding
    >>> X, y = make_expression(n_samples=30, n_genes=50, random_state=0)
    >>> adata = anndata.AnnData(X)
    >>> model = PCA(n_components=4).fit(X)  # any fitted transformer, e.g. skssl.MaskedAutoencoder
    >>> adata = write_embedding(adata, model, key="X_skssl")
    >>> adata.obsm["X_skssl"].shape
    (30, 4)
    """
    anndata = _import_anndata("write_embedding")
    source = "write_embedding"
    if isinstance(adata, (str, Path)):
        source = str(adata)
        if path is None:
            path = adata
        adata = anndata.read_h5ad(adata)
    elif not isinstance(adata, anndata.AnnData):
        raise TypeError(f"adata must be an anndata.AnnData or the path of an .h5ad file, got {type(adata).__name__}.")
    if not isinstance(key, str) or not key:
        raise ValueError(f"key must be a non-empty str, got {key!r}.")

    if hasattr(embedding, "fit") and not hasattr(embedding, "transform"):
        raise TypeError(
            f"{type(embedding).__name__} has no transform method: pass a fitted transformer (an embedder, or a "
            "Pipeline that ends with one, e.g. model.named_steps['ssl']) or the embedding array."
        )
    if hasattr(embedding, "transform") and hasattr(embedding, "fit"):
        values = _transform(embedding, adata, layer, source)
        origin = {"estimator": type(embedding).__name__, "layer": "X" if layer is None else str(layer)}
    else:
        values = embedding
        origin = {"estimator": "array"}
    values = values.to_numpy() if hasattr(values, "to_numpy") else values
    values = values.toarray() if sp.issparse(values) else np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"{source}: the embedding must be 2-D (n_obs, n_components), got shape {values.shape}.")
    if values.shape[0] != adata.n_obs:
        raise ValueError(
            f"{source}: the embedding has {values.shape[0]} rows but the AnnData has {adata.n_obs} cells (obs); "
            "it needs one row per cell, in obs order."
        )
    adata.obsm[key] = values

    from .. import __version__

    record = dict(adata.uns.get("skssl", {}))
    record[key] = {**origin, "skssl_version": __version__}
    adata.uns["skssl"] = record
    if path is not None:
        # Through a temporary file: an interrupted write must not destroy the .h5ad it was read from.
        with atomic_path(path, suffix=".h5ad") as tmp:
            adata.write_h5ad(Path(tmp))
    return adata
