"""The container every reader returns: :class:`ExpressionData`."""

# License: BSD-3-Clause

import os
from dataclasses import dataclass, field

import numpy as np


def _str_array(values):
    out = np.empty(len(values), dtype=object)
    out[:] = [str(v) for v in values]
    return out


@dataclass(repr=False, eq=False)
class ExpressionData:
    """An expression matrix with its gene and sample identifiers.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_genes)
        Expression values, stored as float32.

    genes : array-like of shape (n_genes,)
        Gene (feature) identifiers, stored as an object array of str.

    samples : array-like of shape (n_samples,)
        Sample identifiers, stored as an object array of str.

    metadata : dict of str to ndarray of shape (n_samples,), default={}
        Per-sample annotations. Numeric columns are float64 (NaN when
        missing); text columns are object arrays (None when missing).

    gene_metadata : dict of str to ndarray of shape (n_genes,), default={}
        Per-gene annotations, e.g. the ``Description`` column of a GCT file.

    attrs : dict, default={}
        Data-set level information, e.g. ``source`` (the file read) and the
        ``series`` header of a GEO series matrix.

    Examples
    --------
    >>> import numpy as np
    >>> from skssl.io import ExpressionData
    >>> data = ExpressionData(np.ones((2, 3)), ["A", "B", "C"], ["s1", "s2"],
    ...                       metadata={"group": np.array(["x", "y"], dtype=object)})
    >>> data
    ExpressionData(n_samples=2, n_genes=3, metadata=['group'])
    >>> data.X.dtype, data.shape
    (dtype('float32'), (2, 3))
    """

    X: np.ndarray
    genes: np.ndarray
    samples: np.ndarray
    metadata: dict = field(default_factory=dict)
    gene_metadata: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)

    def __post_init__(self):
        self.X = np.asarray(self.X, dtype=np.float32)
        if self.X.ndim != 2:
            raise ValueError(f"X must be 2-D, got shape {self.X.shape}.")
        self.genes = _str_array(self.genes)
        self.samples = _str_array(self.samples)
        if self.X.shape != (len(self.samples), len(self.genes)):
            raise ValueError(
                f"X has shape {self.X.shape} but there are {len(self.samples)} samples and {len(self.genes)} genes."
            )
        self.metadata = self._columns(self.metadata, len(self.samples), "metadata")
        self.gene_metadata = self._columns(self.gene_metadata, len(self.genes), "gene_metadata")

    @staticmethod
    def _columns(table, n, what):
        # A new dict, so the caller's one is not modified.
        out = {}
        for key, values in table.items():
            values = np.asarray(values)
            if values.shape != (n,):
                raise ValueError(f"{what}[{key!r}] has shape {values.shape}, expected ({n},).")
            out[str(key)] = values
        return out

    @property
    def n_samples(self):
        """Number of samples (rows of `X`)."""
        return self.X.shape[0]

    @property
    def n_genes(self):
        """Number of genes (columns of `X`)."""
        return self.X.shape[1]

    @property
    def shape(self):
        """``(n_samples, n_genes)``."""
        return self.X.shape

    def to_frame(self):
        """Return `X` as a pandas DataFrame (samples x genes).

        Returns
        -------
        frame : pandas.DataFrame
            Indexed by sample id (index name ``"sample_id"``) with one
            column per gene.
        """
        pd = _import_pandas("ExpressionData.to_frame")
        return pd.DataFrame(
            self.X,
            index=pd.Index(self.samples, name="sample_id"),
            columns=pd.Index(self.genes),
            copy=True,
        )

    def metadata_frame(self):
        """Return the per-sample metadata as a pandas DataFrame.

        Returns
        -------
        frame : pandas.DataFrame
            Indexed by sample id, one column per metadata field.
        """
        pd = _import_pandas("ExpressionData.metadata_frame")
        return pd.DataFrame(dict(self.metadata), index=pd.Index(self.samples, name="sample_id"))

    def __repr__(self):
        parts = [f"n_samples={self.n_samples}", f"n_genes={self.n_genes}"]
        if self.metadata:
            keys = list(self.metadata)
            shown = repr(keys[:6])[:-1] + (", ...]" if len(keys) > 6 else "]")
            parts.append(f"metadata={shown}")
        if "source" in self.attrs:
            parts.append(f"source={os.path.basename(str(self.attrs['source']))!r}")
        return f"ExpressionData({', '.join(parts)})"


def _import_pandas(what):
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - depends on environment
        raise ImportError(f"{what} requires pandas: pip install skssl[io]") from exc
    return pd
