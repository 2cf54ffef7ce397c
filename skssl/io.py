"""Readers and writers for gene-expression matrices.

Every reader returns an :class:`ExpressionData`: a float32 matrix laid out
``(n_samples, n_genes)`` together with gene and sample identifiers and
per-sample metadata. The text readers only need the standard library and
numpy; files ending in ``.gz`` are decompressed on the fly. Malformed input
raises a :class:`ValueError` that names the file and line.
"""

# License: BSD-3-Clause

import csv
import gzip
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._anndata import read_h5ad, write_embedding

__all__ = [
    "ExpressionData",
    "read_archs4",
    "read_gct",
    "read_geo_series_matrix",
    "read_h5ad",
    "read_table",
    "write_embedding",
    "write_gct",
    "write_table",
]

# Cells that mean "missing" (compared case-insensitively after stripping).
_MISSING = frozenset({"", "na", "nan", "-nan", "null", "n/a", "#n/a"})

_SUFFIX_SEP = {".csv": ",", ".tsv": "\t", ".tab": "\t"}


# --------------------------------------------------------------------------
# Container
# --------------------------------------------------------------------------


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
                f"X has shape {self.X.shape} but there are {len(self.samples)} "
                f"samples and {len(self.genes)} genes."
            )
        self.metadata = self._columns(self.metadata, len(self.samples), "metadata")
        self.gene_metadata = self._columns(
            self.gene_metadata, len(self.genes), "gene_metadata"
        )

    @staticmethod
    def _columns(table, n, what):
        # A new dict, so the caller's one is not modified.
        out = {}
        for key, values in table.items():
            values = np.asarray(values)
            if values.shape != (n,):
                raise ValueError(
                    f"{what}[{key!r}] has shape {values.shape}, expected ({n},)."
                )
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
        return pd.DataFrame(
            dict(self.metadata), index=pd.Index(self.samples, name="sample_id")
        )

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


def _import_h5py(what):
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - depends on environment
        raise ImportError(f"{what} requires h5py: pip install skssl[io]") from exc
    return h5py


# --------------------------------------------------------------------------
# Low-level helpers
# --------------------------------------------------------------------------


def _open_text(path, mode="r"):
    path = Path(path)
    # newline="" lets the csv module handle quoted fields with line breaks;
    # utf-8-sig drops the byte-order mark some spreadsheet exports add.
    encoding = "utf-8-sig" if mode == "r" else "utf-8"
    if path.suffix == ".gz":
        return gzip.open(path, mode + "t", encoding=encoding, newline="")
    return open(path, mode, encoding=encoding, newline="")


def _base_suffix(path):
    path = Path(path)
    if path.suffix == ".gz":
        path = path.with_suffix("")
    return path.suffix.lower()


def _infer_sep(path, sep, first_line=None):
    if sep is not None:
        return sep
    suffix_sep = _SUFFIX_SEP.get(_base_suffix(path))
    if suffix_sep is not None:
        return suffix_sep
    if first_line is not None and first_line.count("\t") >= first_line.count(","):
        return "\t"
    return ","


def _peek_first_line(path):
    with _open_text(path) as f:
        for line in f:
            if line.strip():
                return line
    return ""


def _where(path, lineno):
    return f"{path}, line {lineno}"


def _parse_values(cells, path, lineno, names, offset):
    """Parse a row of numeric cells; missing markers become NaN.

    `names` and `offset` are only used to name the column in errors.
    """
    try:
        # Fast path: numpy parses the whole row in C.
        return np.asarray(cells, dtype=np.float64)
    except ValueError:
        pass
    out = np.empty(len(cells), dtype=np.float64)
    for j, cell in enumerate(cells):
        text = cell.strip()
        if text.lower() in _MISSING:
            out[j] = np.nan
            continue
        try:
            out[j] = float(text)
        except ValueError:
            column = j + offset
            name = f" ({names[column]!r})" if names is not None else ""
            raise ValueError(
                f"{_where(path, lineno)}, column {column + 1}{name}: non-numeric "
                f"value {cell!r}. Only numbers and missing-value markers "
                "(NA, NaN, null or an empty cell) are allowed."
            ) from None
    return out


def _check_unique(ids, what, path, where):
    """Raise if `ids` has duplicates; `where[i]` says where ids[i] came from."""
    seen = {}
    for i, name in enumerate(ids):
        if name in seen:
            raise ValueError(
                f"{path}: duplicated {what} {name!r} ({where(seen[name])} and "
                f"{where(i)}). Identifiers must be unique."
            )
        seen[name] = i


def _looks_like_data(cells):
    """True if header cells are numbers that cannot be identifiers."""
    values = []
    for cell in cells:
        try:
            values.append(float(cell))
        except ValueError:
            return False
    # Integer-like headers (e.g. Entrez gene ids) are legitimate ids.
    return any(not (math.isfinite(v) and v == int(v)) for v in values)


def _convert_column(values):
    """Turn a list of str into float64 if numeric-looking, else object."""
    missing = [v is None or str(v).strip().lower() in _MISSING for v in values]
    present = [v.strip() for v, m in zip(values, missing) if not m]
    if present:
        try:
            numbers = iter([float(v) for v in present])
        except ValueError:
            pass
        else:
            return np.array(
                [np.nan if m else next(numbers) for m in missing], dtype=np.float64
            )
    out = np.empty(len(values), dtype=object)
    out[:] = [None if m else v for v, m in zip(values, missing)]
    return out


def _read_delimited(path, sep):
    """Yield ``(lineno, cells)`` for the non-blank rows of a delimited file."""
    with _open_text(path) as f:
        reader = csv.reader(f, delimiter=sep)
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            yield reader.line_num, row


def _parse_matrix(path, rows, header, *, row_what, col_what, n_lead=1):
    """Parse data rows ``id, [n_lead-1 annotation cells], values...``.

    Returns ``(ids, annotations, values, linenos)`` where `values` is
    float32 of shape (n_rows, len(header) - n_lead).
    """
    width = len(header)
    ids, annotations, values, linenos = [], [], [], []
    for lineno, row in rows:
        if len(row) != width:
            raise ValueError(
                f"{_where(path, lineno)}: expected {width} fields (as in the "
                f"header) but found {len(row)}; the table is ragged."
            )
        row_id = row[0].strip()
        if not row_id:
            raise ValueError(f"{_where(path, lineno)}: empty {row_what} id.")
        ids.append(row_id)
        annotations.append(row[1:n_lead])
        values.append(
            _parse_values(row[n_lead:], path, lineno, header, n_lead).astype(np.float32)
        )
        linenos.append(lineno)
    if not ids:
        raise ValueError(f"{path}: the table has a header but no data rows.")
    _check_unique(ids, f"{row_what} id", path, lambda i: f"line {linenos[i]}")
    return ids, annotations, np.vstack(values), linenos


def _check_header(path, lineno, header, *, col_what, n_lead=1):
    names = [h.strip() for h in header]
    if len(names) <= n_lead:
        raise ValueError(
            f"{_where(path, lineno)}: the header has no {col_what} columns "
            f"(found {len(names)} field(s)); is the separator right?"
        )
    cols = names[n_lead:]
    for j, name in enumerate(cols):
        if not name:
            raise ValueError(
                f"{_where(path, lineno)}, column {j + n_lead + 1}: empty "
                f"{col_what} id in the header."
            )
    if _looks_like_data(cols):
        raise ValueError(
            f"{_where(path, lineno)}: the first line looks like data, not a "
            f"header; the first line must hold the {col_what} ids."
        )
    _check_unique(
        cols,
        f"{col_what} id",
        path,
        lambda i: f"line {lineno}, column {i + n_lead + 1}",
    )
    return names


# --------------------------------------------------------------------------
# Delimited tables
# --------------------------------------------------------------------------


def _read_sample_table(path, sample_id_column=None, sep=None):
    """Read a per-sample metadata table into ``(ids, {column: values})``."""
    sep = _infer_sep(path, sep, _peek_first_line(path))
    rows = _read_delimited(path, sep)
    try:
        header_line, header = next(rows)
    except StopIteration:
        raise ValueError(f"{path}: the sample table is empty.") from None
    header = [h.strip() for h in header]
    _check_unique(header, "column", path, lambda i: f"column {i + 1}")
    if sample_id_column is None:
        id_col = 0
    elif sample_id_column in header:
        id_col = header.index(sample_id_column)
    else:
        raise ValueError(
            f"{path}: sample_id_column={sample_id_column!r} is not a column of "
            f"the sample table (columns: {header[:8]}...)."
        )
    ids, records, linenos = [], [], []
    for lineno, row in rows:
        if len(row) != len(header):
            raise ValueError(
                f"{_where(path, lineno)}: expected {len(header)} fields (as in "
                f"the header) but found {len(row)}; the table is ragged."
            )
        ids.append(row[id_col].strip())
        records.append(row)
        linenos.append(lineno)
    _check_unique(ids, "sample id", path, lambda i: f"line {linenos[i]}")
    columns = {
        name: [record[j] for record in records]
        for j, name in enumerate(header)
        if j != id_col
    }
    return ids, columns


def _join_metadata(samples, table_ids, columns, path):
    position = {sample_id: i for i, sample_id in enumerate(table_ids)}
    index = np.array([position.get(s, -1) for s in samples], dtype=np.intp)
    if len(samples) and (index < 0).all():
        raise ValueError(
            f"{path}: none of the {len(samples)} sample ids (e.g. "
            f"{list(samples[:2])}) is in the sample table (whose ids are e.g. "
            f"{list(table_ids[:2])}); check sample_id_column."
        )
    metadata = {}
    for name, values in columns.items():
        metadata[name] = _convert_column([values[i] if i >= 0 else None for i in index])
    return metadata


def read_table(
    path, orient="samples", sep=None, sample_table=None, sample_id_column=None
):
    """Read a delimited expression matrix (CSV/TSV, optionally gzipped).

    The first line is a header and the first column holds identifiers.

    Parameters
    ----------
    path : str or path-like
        File to read; a ``.gz`` suffix means gzip compression.

    orient : {"samples", "genes"}, default="samples"
        ``"samples"``: one row per sample, one column per gene (the layout
        of ``*.expression.csv.gz`` files). ``"genes"``: one row per gene.

    sep : str, default=None
        Field separator. None infers it from the suffix (``.csv``: comma,
        ``.tsv``/``.tab``: tab) or, for other suffixes such as ``.txt``,
        from the header line.

    sample_table : str or path-like, default=None
        Optional CSV/TSV of per-sample annotations, one row per sample,
        joined into `metadata` by sample id. Samples without a row get
        missing values; rows without a sample are ignored.

    sample_id_column : str, default=None
        Column of `sample_table` holding the sample id; None means its
        first column.

    Returns
    -------
    data : ExpressionData
        The matrix as (n_samples, n_genes) float32.

    Raises
    ------
    ValueError
        On a ragged table, duplicated ids, a non-numeric cell, a missing
        header or an empty table; the message names the file and line.
        Missing-value markers (``NA``, ``NaN``, ``null``, empty) become NaN.

    See Also
    --------
    write_table : The inverse operation.

    Notes
    -----
    A header with one field fewer than the data rows (as written by R's
    ``write.table``) is accepted: the missing field is the id column.

    Examples
    --------
    >>> import os, tempfile
    >>> from skssl.io import read_table
    >>> path = os.path.join(tempfile.mkdtemp(), "expr.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("sample_id,TP53,EGFR\\ns1,1.5,2\\ns2,NA,4\\n")
    >>> data = read_table(path)
    >>> data
    ExpressionData(n_samples=2, n_genes=2, source='expr.csv')
    >>> data.X
    array([[1.5, 2. ],
           [nan, 4. ]], dtype=float32)
    """
    if orient not in ("samples", "genes"):
        raise ValueError(f"orient must be 'samples' or 'genes', got {orient!r}.")
    path = Path(path)
    sep = _infer_sep(path, sep, _peek_first_line(path))
    row_what, col_what = (
        ("sample", "gene") if orient == "samples" else ("gene", "sample")
    )
    rows = _read_delimited(path, sep)
    try:
        header_line, header = next(rows)
    except StopIteration:
        raise ValueError(f"{path}: the file is empty (no header).") from None
    try:
        first = next(rows)
    except StopIteration:
        first = None
    if first is not None and len(first[1]) == len(header) + 1:
        header = [""] + header  # R-style header without the id column name
    names = _check_header(path, header_line, header, col_what=col_what)
    if first is None:
        raise ValueError(f"{path}: the table has a header but no data rows.")

    def all_rows():
        yield first
        yield from rows

    ids, _, values, _ = _parse_matrix(
        path, all_rows(), names, row_what=row_what, col_what=col_what
    )
    if orient == "samples":
        samples, genes, X = ids, names[1:], values
    else:
        samples, genes, X = names[1:], ids, values.T
    metadata = {}
    if sample_table is not None:
        table_ids, columns = _read_sample_table(sample_table, sample_id_column)
        metadata = _join_metadata(samples, table_ids, columns, sample_table)
    return ExpressionData(
        X, genes, samples, metadata=metadata, attrs={"source": str(path)}
    )


def _format_values(values):
    """Shortest round-trip text for float32 values; NaN as NA."""
    text = np.asarray(values, dtype=np.float32).astype(str)
    text[np.isnan(values)] = "NA"
    return text


def _format_cell(value):
    if value is None:
        return "NA"
    if isinstance(value, (float, np.floating)):
        return "NA" if np.isnan(value) else repr(float(value))
    return str(value)


def write_table(data, path, orient="samples", sep=None, sample_table=None):
    """Write an :class:`ExpressionData` as a delimited text file.

    Parameters
    ----------
    data : ExpressionData
        Data to write.

    path : str or path-like
        Output file; a ``.gz`` suffix writes gzip.

    orient : {"samples", "genes"}, default="samples"
        Whether rows are samples or genes.

    sep : str, default=None
        Field separator; None means tab for ``.tsv``/``.tab``/``.txt``
        and comma otherwise.

    sample_table : str or path-like, default=None
        If given, also write `data.metadata` there (CSV/TSV by suffix),
        in the format :func:`read_table` reads.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from skssl.io import ExpressionData, read_table, write_table
    >>> data = ExpressionData(np.array([[1, 0.5]]), ["A", "B"], ["s1"])
    >>> path = os.path.join(tempfile.mkdtemp(), "expr.tsv.gz")
    >>> write_table(data, path, orient="genes")
    >>> read_table(path, orient="genes").X
    array([[1. , 0.5]], dtype=float32)
    """
    if orient not in ("samples", "genes"):
        raise ValueError(f"orient must be 'samples' or 'genes', got {orient!r}.")
    path = Path(path)
    if sep is None:
        sep = "\t" if _base_suffix(path) in (".tsv", ".tab", ".txt") else ","
    if orient == "samples":
        corner, col_ids, row_ids, M = "sample_id", data.genes, data.samples, data.X
    else:
        corner, col_ids, row_ids, M = "gene_id", data.samples, data.genes, data.X.T
    with _open_text(path, "w") as f:
        writer = csv.writer(f, delimiter=sep, lineterminator="\n")
        writer.writerow([corner, *col_ids])
        for row_id, values in zip(row_ids, M):
            writer.writerow([row_id, *_format_values(values)])
    if sample_table is not None:
        table_path = Path(sample_table)
        table_sep = (
            "\t" if _base_suffix(table_path) in (".tsv", ".tab", ".txt") else ","
        )
        keys = list(data.metadata)
        with _open_text(table_path, "w") as f:
            writer = csv.writer(f, delimiter=table_sep, lineterminator="\n")
            writer.writerow(["sample_id", *keys])
            for i, sample in enumerate(data.samples):
                writer.writerow(
                    [sample, *(_format_cell(data.metadata[k][i]) for k in keys)]
                )


# --------------------------------------------------------------------------
# GCT
# --------------------------------------------------------------------------


def _parse_dims(path, lineno, row, n_expected):
    cells = [c.strip() for c in row]
    while cells and not cells[-1]:
        cells.pop()
    try:
        dims = [int(c) for c in cells]
    except ValueError:
        dims = []
    if len(dims) != n_expected or any(d < 0 for d in dims):
        raise ValueError(
            f"{_where(path, lineno)}: expected {n_expected} non-negative "
            f"integers (the dimensions), found {row!r}."
        )
    return dims


def read_gct(path):
    """Read a GCT file (Broad/GenePattern format, version 1.2 or 1.3).

    A GCT file is genes x samples: a ``#1.2`` (or ``#1.3``) line, a line
    with the dimensions, a header ``Name Description sample...`` and one
    row per gene. Version 1.3 adds row-annotation columns after the gene id
    and column-annotation rows before the data.

    Parameters
    ----------
    path : str or path-like
        File to read; a ``.gz`` suffix means gzip compression.

    Returns
    -------
    data : ExpressionData
        The matrix transposed to (n_samples, n_genes). Gene ids come from
        the ``Name`` column; ``Description`` (1.2) or the row annotations
        (1.3) go to `gene_metadata`, column annotations (1.3) to
        `metadata`, and the version to ``attrs["gct_version"]``.

    Raises
    ------
    ValueError
        On a malformed file; the message names the file and line.

    See Also
    --------
    write_gct : The inverse operation.

    Examples
    --------
    >>> import os, tempfile
    >>> from skssl.io import read_gct
    >>> path = os.path.join(tempfile.mkdtemp(), "expr.gct")
    >>> with open(path, "w") as f:
    ...     _ = f.write("#1.2\\n2\\t2\\nName\\tDescription\\ts1\\ts2\\n"
    ...                 "TP53\\ttumor protein p53\\t1\\t2\\n"
    ...                 "EGFR\\tna\\t3\\t4\\n")
    >>> data = read_gct(path)
    >>> data.genes, data.samples
    (array(['TP53', 'EGFR'], dtype=object), array(['s1', 's2'], dtype=object))
    >>> data.X
    array([[1., 3.],
           [2., 4.]], dtype=float32)
    """
    path = Path(path)
    rows = _read_delimited(path, "\t")
    try:
        lineno, row = next(rows)
    except StopIteration:
        raise ValueError(f"{path}: the file is empty.") from None
    version = row[0].strip()
    if version not in ("#1.2", "#1.3"):
        raise ValueError(
            f"{_where(path, lineno)}: not a GCT file; the first line must be "
            f"'#1.2' or '#1.3', found {row[0]!r}."
        )
    try:
        lineno, row = next(rows)
    except StopIteration:
        raise ValueError(f"{path}: missing the dimensions line.") from None
    if version == "#1.2":
        n_rows, n_cols = _parse_dims(path, lineno, row, 2)
        n_row_meta, n_col_meta = 1, 0  # "Description" is the one annotation
    else:
        n_rows, n_cols, n_row_meta, n_col_meta = _parse_dims(path, lineno, row, 4)
    n_lead = 1 + n_row_meta
    try:
        header_line, header = next(rows)
    except StopIteration:
        raise ValueError(f"{path}: missing the header line.") from None
    names = _check_header(path, header_line, header, col_what="sample", n_lead=n_lead)
    if len(names) != n_lead + n_cols:
        raise ValueError(
            f"{_where(path, header_line)}: the header has {len(names) - n_lead} "
            f"sample columns but the dimensions line says {n_cols}."
        )
    sample_meta = {}
    for _ in range(n_col_meta):
        try:
            lineno, row = next(rows)
        except StopIteration:
            raise ValueError(
                f"{path}: expected {n_col_meta} column-annotation lines."
            ) from None
        if len(row) != len(names):
            raise ValueError(
                f"{_where(path, lineno)}: expected {len(names)} fields (as in "
                f"the header) but found {len(row)}; the table is ragged."
            )
        key = row[0].strip()
        if not key or key in sample_meta:
            raise ValueError(
                f"{_where(path, lineno)}: empty or duplicated column-annotation "
                f"name {key!r}."
            )
        sample_meta[key] = _convert_column(row[n_lead:])
    genes, annotations, values, _ = _parse_matrix(
        path, rows, names, row_what="gene", col_what="sample", n_lead=n_lead
    )
    if len(genes) != n_rows:
        raise ValueError(
            f"{path}: the dimensions line says {n_rows} genes but the file has "
            f"{len(genes)} data rows."
        )
    gene_meta = {
        names[1 + j]: _convert_column([a[j] for a in annotations])
        for j in range(n_row_meta)
    }
    return ExpressionData(
        values.T,
        genes,
        names[n_lead:],
        metadata=sample_meta,
        gene_metadata=gene_meta,
        attrs={"source": str(path), "gct_version": version[1:]},
    )


def write_gct(data, path, version="1.2"):
    """Write an :class:`ExpressionData` as a GCT file (genes x samples).

    Parameters
    ----------
    data : ExpressionData
        Data to write.

    path : str or path-like
        Output file; a ``.gz`` suffix writes gzip.

    version : {"1.2", "1.3"}, default="1.2"
        ``"1.2"`` writes ``Name``/``Description`` (taken from
        ``data.gene_metadata["Description"]`` when present, else ``na``).
        ``"1.3"`` also writes all of `gene_metadata` as row annotations and
        `metadata` as column annotations.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from skssl.io import ExpressionData, read_gct, write_gct
    >>> data = ExpressionData(np.eye(2), ["A", "B"], ["s1", "s2"])
    >>> path = os.path.join(tempfile.mkdtemp(), "eye.gct")
    >>> write_gct(data, path)
    >>> read_gct(path).X
    array([[1., 0.],
           [0., 1.]], dtype=float32)
    """
    if version not in ("1.2", "1.3"):
        raise ValueError(f"version must be '1.2' or '1.3', got {version!r}.")
    n_samples, n_genes = data.shape
    if version == "1.2":
        descriptions = data.gene_metadata.get("Description")
        row_meta = {
            "Description": (
                np.full(n_genes, "na", dtype=object)
                if descriptions is None
                else descriptions
            )
        }
        col_meta = {}
        dims = [n_genes, n_samples]
        header = ["Name", "Description"]
    else:
        row_meta, col_meta = dict(data.gene_metadata), dict(data.metadata)
        dims = [n_genes, n_samples, len(row_meta), len(col_meta)]
        header = ["id", *row_meta]
    with _open_text(path, "w") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        f.write(f"#{version}\n")
        writer.writerow(dims)
        writer.writerow([*header, *data.samples])
        for key, values in col_meta.items():
            writer.writerow(
                [key, *(["na"] * len(row_meta)), *map(_format_cell, values)]
            )
        for g, values in enumerate(data.X.T):
            annotations = [_format_cell(row_meta[k][g]) for k in row_meta]
            writer.writerow([data.genes[g], *annotations, *_format_values(values)])


# --------------------------------------------------------------------------
# GEO series matrix
# --------------------------------------------------------------------------


def _unique_key(key, table):
    if key not in table:
        return key
    k = 2
    while f"{key}_{k}" in table:
        k += 1
    return f"{key}_{k}"


def _characteristics(field_name, cells, metadata):
    """Split ``key: value`` cells of one characteristics line into columns."""
    keys, values = [], []
    for cell in cells:
        text = cell.strip()
        key, sep, value = text.partition(":")
        if sep and key.strip():
            keys.append(key.strip())
            values.append(value.strip())
        else:
            keys.append(field_name if text else None)
            values.append(text)
    # A line usually has one key, but GEO allows a different key per sample.
    for key in dict.fromkeys(k for k in keys if k is not None):
        column = [v if k == key else None for k, v in zip(keys, values)]
        metadata[_unique_key(key, metadata)] = column


def read_geo_series_matrix(path):
    """Read a GEO series-matrix file (``GSExxx_series_matrix.txt[.gz]``).

    Parameters
    ----------
    path : str or path-like
        File to read; a ``.gz`` suffix means gzip compression.

    Returns
    -------
    data : ExpressionData
        The table between ``!series_matrix_table_begin`` and
        ``!series_matrix_table_end`` transposed to (n_samples, n_genes);
        sample ids are the ``ID_REF`` header (GSM accessions), gene ids the
        probe/gene ids. Every ``!Sample_*`` line becomes a metadata column
        named without the prefix (``title``, ``geo_accession``, ...);
        ``!Sample_characteristics_ch*`` cells ``"key: value"`` become one
        column per key. ``!Series_*`` lines go to ``attrs["series"]``.
        ``null`` or empty values become NaN.

    Raises
    ------
    ValueError
        On a malformed file; the message names the file and line.

    Examples
    --------
    >>> import os, tempfile
    >>> from skssl.io import read_geo_series_matrix
    >>> path = os.path.join(tempfile.mkdtemp(), "GSE1_series_matrix.txt")
    >>> with open(path, "w") as f:
    ...     _ = f.write('!Series_title\\t"A study"\\n'
    ...                 '!Sample_geo_accession\\t"GSM1"\\t"GSM2"\\n'
    ...                 '!Sample_characteristics_ch1\\t"age: 61"\\t"age: 54"\\n'
    ...                 '!series_matrix_table_begin\\n'
    ...                 '"ID_REF"\\t"GSM1"\\t"GSM2"\\n'
    ...                 '"1007_s_at"\\t7.5\\tnull\\n'
    ...                 '!series_matrix_table_end\\n')
    >>> data = read_geo_series_matrix(path)
    >>> data.samples, data.metadata["age"]
    (array(['GSM1', 'GSM2'], dtype=object), array([61., 54.]))
    >>> data.attrs["series"]["title"]
    'A study'
    """
    path = Path(path)
    series, sample_lines = {}, []
    state, header, header_line, table_rows = "head", None, None, []
    for lineno, row in _read_delimited(path, "\t"):
        key = row[0].strip()
        if state == "table":
            if key.lower() == "!series_matrix_table_end":
                state = "done"
            elif header is None:
                header, header_line = row, lineno
            else:
                table_rows.append((lineno, row))
        elif key.lower() == "!series_matrix_table_begin":
            if state == "done":
                raise ValueError(f"{_where(path, lineno)}: a second table begins.")
            state = "table"
        elif key.startswith("!Series_"):
            name, value = key[len("!Series_") :], "\t".join(row[1:]).strip()
            if name in series:
                # Repeated lines (e.g. the summary) are paragraphs of one field.
                previous = series[name]
                series[name] = (
                    previous if isinstance(previous, list) else [previous]
                ) + [value]
            else:
                series[name] = value
        elif key.startswith("!Sample_"):
            sample_lines.append((lineno, key[len("!Sample_") :], row[1:]))
    if state == "head":
        raise ValueError(
            f"{path}: no '!series_matrix_table_begin' line; not a GEO series "
            "matrix file."
        )
    if state == "table":
        raise ValueError(
            f"{path}: no '!series_matrix_table_end' line; the file is truncated."
        )
    if header is None:
        raise ValueError(f"{path}: the expression table is empty (no header).")
    names = _check_header(path, header_line, header, col_what="sample")
    if names[0] != "ID_REF":
        raise ValueError(
            f"{_where(path, header_line)}: the table header must start with "
            f"'ID_REF', found {names[0]!r}."
        )
    genes, _, values, _ = _parse_matrix(
        path, table_rows, names, row_what="gene", col_what="sample"
    )
    samples = names[1:]

    metadata = {}
    for lineno, name, cells in sample_lines:
        cells = [c.strip() for c in cells]
        while len(cells) > len(samples) and not cells[-1]:
            cells.pop()  # trailing tab
        if len(cells) != len(samples):
            raise ValueError(
                f"{_where(path, lineno)}: !Sample_{name} has {len(cells)} values "
                f"but the table has {len(samples)} samples."
            )
        if name.startswith("characteristics"):
            _characteristics(name, cells, metadata)
        else:
            metadata[_unique_key(name, metadata)] = cells
    accessions = metadata.get("geo_accession")
    if accessions is not None and list(accessions) != list(samples):
        # Metadata lines are in the table's column order in GEO files; a
        # mismatch means the file was edited or truncated.
        position = {a: i for i, a in enumerate(accessions)}
        if set(position) != set(samples):
            raise ValueError(
                f"{path}: the !Sample_geo_accession line does not list the "
                "same samples as the table header."
            )
        order = [position[s] for s in samples]
        metadata = {k: [v[i] for i in order] for k, v in metadata.items()}
    metadata = {k: _convert_column(v) for k, v in metadata.items()}
    return ExpressionData(
        values.T,
        genes,
        samples,
        metadata=metadata,
        attrs={"source": str(path), "series": series},
    )


# --------------------------------------------------------------------------
# ARCHS4 HDF5
# --------------------------------------------------------------------------


def _decode(values):
    values = np.asarray(values)
    if values.dtype.kind in ("S", "O"):
        return np.array(
            [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values],
            dtype=object,
        )
    return values


def _lookup(requested, available, what, path):
    """Positions of `requested` ids (or integer indices) in `available`."""
    requested = np.asarray(requested).ravel()
    if requested.dtype.kind in ("i", "u"):
        index = requested.astype(np.intp)
        bad = (index < 0) | (index >= len(available))
        if bad.any():
            raise ValueError(
                f"{path}: {what} index {index[bad][0]} is out of range "
                f"(0..{len(available) - 1})."
            )
    else:
        position = {}
        for i, name in enumerate(available):
            position.setdefault(name, i)
        index = np.array([position.get(str(r), -1) for r in requested], dtype=np.intp)
        if (index < 0).any():
            missing = [str(r) for r in requested[index < 0][:5]]
            raise ValueError(
                f"{path}: {int((index < 0).sum())} requested {what}(s) not in "
                f"the file, e.g. {missing}."
            )
    if len(np.unique(index)) != len(index):
        raise ValueError(f"{path}: the requested {what}s contain duplicates.")
    return index


def _index_key(index):
    """A slice for a contiguous sorted index (much faster in h5py), else it."""
    if index.size and index[-1] - index[0] + 1 == index.size:
        return slice(int(index[0]), int(index[-1]) + 1)
    return index


def _read_columns(dataset, rows, cols, row_block=2048):
    """``dataset[rows][:, cols]`` reading only row blocks that are needed.

    `rows` and `cols` must be sorted and unique. h5py allows one index
    list per read, so rows are read as contiguous slices and columns as a
    slice when they are contiguous, else as an index list.
    """
    col_key = _index_key(cols)
    out = np.empty((rows.size, cols.size), dtype=np.float32)
    block_id = rows // row_block
    # Start of each run of needed rows that fall in the same block.
    starts = np.flatnonzero(np.r_[True, block_id[1:] != block_id[:-1]])
    ends = np.r_[starts[1:], rows.size]
    for start, end in zip(starts, ends):
        lo, hi = int(rows[start]), int(rows[end - 1]) + 1
        chunk = dataset[lo:hi, col_key] if cols.size else np.empty((hi - lo, 0))
        out[start:end] = chunk[rows[start:end] - lo]
    return out


def read_archs4(path, samples=None, genes=None, max_samples=None):
    """Read a subset of an ARCHS4 HDF5 expression file.

    ARCHS4 files (https://maayanlab.cloud/archs4) hold a genes x samples
    count matrix ``data/expression`` with gene symbols in
    ``meta/genes/symbol`` (``meta/genes/gene_symbol`` in older releases)
    and sample annotations in ``meta/samples/*``. Only the requested rows
    and columns are read from disk. Requires h5py.

    Parameters
    ----------
    path : str or path-like
        HDF5 file.

    samples : array-like of str or int, default=None
        GEO sample accessions (``meta/samples/geo_accession``) or integer
        column positions to read, in the order wanted. None means all
        samples (subject to `max_samples`); beware that a full ARCHS4
        file does not fit in memory.

    genes : array-like of str, default=None
        Gene symbols to read, in the order wanted. None means all genes.

    max_samples : int, default=None
        Keep at most this many of the selected samples (the first ones).

    Returns
    -------
    data : ExpressionData
        Counts as (n_samples, n_genes) float32. Symbols that occur on
        several rows of the file (ARCHS4 has a few) are summed into one
        gene. The other ``meta/samples`` fields are in `metadata`, the other
        ``meta/genes`` fields (first row of each symbol) in `gene_metadata`.

    Raises
    ------
    ValueError
        If a requested sample or gene is not in the file.

    Examples
    --------
    A tiny file with the ARCHS4 layout (3 genes x 4 samples):

    >>> import os, tempfile
    >>> import h5py
    >>> import numpy as np
    >>> from skssl.io import read_archs4
    >>> path = os.path.join(tempfile.mkdtemp(), "archs4.h5")
    >>> with h5py.File(path, "w") as f:
    ...     _ = f.create_dataset("data/expression", data=np.arange(12).reshape(3, 4))
    ...     _ = f.create_dataset("meta/genes/symbol", data=np.array(["TP53", "EGFR", "MYC"], dtype="S"))
    ...     _ = f.create_dataset("meta/samples/geo_accession",
    ...                          data=np.array(["GSM1", "GSM2", "GSM3", "GSM4"], dtype="S"))
    >>> data = read_archs4(path, samples=["GSM4", "GSM1"], genes=["MYC", "TP53"])
    >>> data.samples, data.genes
    (array(['GSM4', 'GSM1'], dtype=object), array(['MYC', 'TP53'], dtype=object))
    >>> data.X
    array([[11.,  3.],
           [ 8.,  0.]], dtype=float32)
    """
    h5py = _import_h5py("read_archs4")
    path = Path(path)
    if max_samples is not None and (
        not isinstance(max_samples, (int, np.integer)) or max_samples < 1
    ):
        raise ValueError(f"max_samples must be a positive int, got {max_samples!r}.")
    with h5py.File(path, "r") as f:
        for required in ("data/expression", "meta/samples/geo_accession"):
            if required not in f:
                raise ValueError(f"{path}: not an ARCHS4 file (no '{required}').")
        expression = f["data/expression"]
        symbol_key = next(
            (k for k in ("meta/genes/symbol", "meta/genes/gene_symbol") if k in f),
            None,
        )
        if symbol_key is None:
            raise ValueError(
                f"{path}: not an ARCHS4 file (no 'meta/genes/symbol' or "
                "'meta/genes/gene_symbol')."
            )
        symbols = _decode(f[symbol_key][()])
        accessions = _decode(f["meta/samples/geo_accession"][()])
        if expression.shape != (len(symbols), len(accessions)):
            raise ValueError(
                f"{path}: data/expression has shape {expression.shape} but there "
                f"are {len(symbols)} genes and {len(accessions)} samples."
            )

        if samples is None:
            cols = np.arange(len(accessions))
        else:
            cols = _lookup(samples, accessions, "sample", path)
        if max_samples is not None:
            cols = cols[:max_samples]

        # Group file rows by symbol: output gene k sums rows with group k.
        if genes is None:
            out_genes, first_row = np.unique(symbols, return_index=True)
            order = np.argsort(first_row, kind="stable")  # file order
            out_genes, first_row = out_genes[order], first_row[order]
        else:
            first_row = _lookup(genes, symbols, "gene", path)
            out_genes = symbols[first_row]
        group_of = {name: k for k, name in enumerate(out_genes)}
        file_rows = np.flatnonzero(np.isin(symbols, out_genes))
        groups = np.array([group_of[s] for s in symbols[file_rows]], dtype=np.intp)

        col_sorted = np.sort(cols)
        block = _read_columns(expression, file_rows, col_sorted)
        summed = np.zeros((len(out_genes), len(col_sorted)), dtype=np.float32)
        np.add.at(summed, groups, block)
        # Back from sorted columns to the requested sample order.
        X = summed[:, np.searchsorted(col_sorted, cols)].T

        metadata = {}
        for key, dataset in f["meta/samples"].items():
            if key == "geo_accession" or not isinstance(dataset, h5py.Dataset):
                continue
            if dataset.shape != (len(accessions),):
                continue
            values = dataset[_index_key(col_sorted)] if col_sorted.size else dataset[:0]
            metadata[key] = _decode(values)[np.searchsorted(col_sorted, cols)]
        gene_metadata = {}
        for key, dataset in f["meta/genes"].items():
            if key == symbol_key.rsplit("/", 1)[1]:
                continue
            if not isinstance(dataset, h5py.Dataset) or dataset.shape != (
                len(symbols),
            ):
                continue
            gene_metadata[key] = _decode(dataset[()])[first_row]
    return ExpressionData(
        X,
        out_genes,
        accessions[cols],
        metadata=metadata,
        gene_metadata=gene_metadata,
        attrs={"source": str(path)},
    )
