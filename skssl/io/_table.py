"""Delimited tables (CSV/TSV, optionally gzipped) and their per-sample tables."""

# License: BSD-3-Clause

import csv
import itertools
from pathlib import Path

import numpy as np

from ._container import ExpressionData
from ._parse import (
    _base_suffix,
    _check_header,
    _check_unique,
    _convert_column,
    _format_cell,
    _format_values,
    _infer_sep,
    _open_text,
    _parse_matrix,
    _peek_first_line,
    _read_delimited,
    _where,
)


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
    columns = {name: [record[j] for record in records] for j, name in enumerate(header) if j != id_col}
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


def _read_header(path, rows, col_what):
    """``(names, first data row)``: the checked header fields, with the id
    column's name added when the header lacks it (R's ``write.table``)."""
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
    return names, first


def read_table(path, orient="samples", sep=None, sample_table=None, sample_id_column=None):
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
    row_what, col_what = ("sample", "gene") if orient == "samples" else ("gene", "sample")
    rows = _read_delimited(path, sep)
    names, first = _read_header(path, rows, col_what)
    ids, _, values, _ = _parse_matrix(path, itertools.chain([first], rows), names, row_what=row_what, col_what=col_what)
    if orient == "samples":
        samples, genes, X = ids, names[1:], values
    else:
        samples, genes, X = names[1:], ids, values.T
    metadata = {}
    if sample_table is not None:
        table_ids, columns = _read_sample_table(sample_table, sample_id_column)
        metadata = _join_metadata(samples, table_ids, columns, sample_table)
    return ExpressionData(X, genes, samples, metadata=metadata, attrs={"source": str(path)})


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
        table_sep = "\t" if _base_suffix(table_path) in (".tsv", ".tab", ".txt") else ","
        keys = list(data.metadata)
        with _open_text(table_path, "w") as f:
            writer = csv.writer(f, delimiter=table_sep, lineterminator="\n")
            writer.writerow(["sample_id", *keys])
            for i, sample in enumerate(data.samples):
                writer.writerow([sample, *(_format_cell(data.metadata[k][i]) for k in keys)])
