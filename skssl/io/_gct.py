"""GCT files (Broad/GenePattern format, versions 1.2 and 1.3)."""

# License: BSD-3-Clause

import csv
from pathlib import Path

import numpy as np

from ._container import ExpressionData
from ._parse import (
    _check_header,
    _check_metadata_names,
    _check_numeric_metadata,
    _format_cell,
    _format_values,
    _metadata_columns,
    _open_text,
    _parse_matrix,
    _read_delimited,
    _where,
)


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
            f"{_where(path, lineno)}: expected {n_expected} non-negative integers (the dimensions), found {row!r}."
        )
    return dims


def _read_preamble(path, rows):
    """The version line and the dimensions line: ``(version, (n_rows, n_cols,
    n_row_meta, n_col_meta))``, with version 1.2's one annotation
    (``Description``) and no column annotations filled in."""
    try:
        lineno, row = next(rows)
    except StopIteration:
        raise ValueError(f"{path}: the file is empty.") from None
    version = row[0].strip()
    if version not in ("#1.2", "#1.3"):
        raise ValueError(
            f"{_where(path, lineno)}: not a GCT file; the first line must be '#1.2' or '#1.3', found {row[0]!r}."
        )
    try:
        lineno, row = next(rows)
    except StopIteration:
        raise ValueError(f"{path}: missing the dimensions line.") from None
    if version == "#1.2":
        n_rows, n_cols = _parse_dims(path, lineno, row, 2)
        return version, (n_rows, n_cols, 1, 0)  # "Description" is the one annotation
    return version, tuple(_parse_dims(path, lineno, row, 4))


def _read_header(path, rows, n_lead, n_cols):
    """The header line's fields, checked against the dimensions line."""
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
    return names


def _read_column_annotations(path, rows, names, n_lead, n_col_meta, numeric_metadata):
    """Version 1.3's column-annotation lines (per-sample metadata)."""
    sample_meta, origin = {}, {}
    for _ in range(n_col_meta):
        try:
            lineno, row = next(rows)
        except StopIteration:
            raise ValueError(f"{path}: expected {n_col_meta} column-annotation lines.") from None
        if len(row) != len(names):
            raise ValueError(
                f"{_where(path, lineno)}: expected {len(names)} fields (as in "
                f"the header) but found {len(row)}; the table is ragged."
            )
        key = row[0].strip()
        if not key or key in sample_meta:
            raise ValueError(f"{_where(path, lineno)}: empty or duplicated column-annotation name {key!r}.")
        sample_meta[key], origin[key] = row[n_lead:], lineno
    return _metadata_columns(
        sample_meta,
        numeric_metadata,
        path,
        lambda name, i: f"line {origin[name]}, column {n_lead + i + 1}",
        check_names=False,
    )


def read_gct(path, *, numeric_metadata=False):
    """Read a GCT file (Broad/GenePattern format, version 1.2 or 1.3).

    A GCT file is genes x samples: a ``#1.2`` (or ``#1.3``) line, a line
    with the dimensions, a header ``Name Description sample...`` and one
    row per gene. Version 1.3 adds row-annotation columns after the gene id
    and column-annotation rows before the data.

    Parameters
    ----------
    path : str or path-like
        File to read; a ``.gz`` suffix means gzip compression.

    numeric_metadata : bool or list of str, default=False
        Which annotations (row annotations such as ``Description``, and
        version 1.3's column annotations) to read as numbers (float64, NaN
        when missing). ``False``: none; every annotation stays text as
        written, so identifiers such as ``"007"`` keep their zeros.
        ``True``: every annotation whose cells all parse as numbers. A
        list: those names, and a cell in them that is not a number raises
        a ValueError.

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
    numeric_metadata = _check_numeric_metadata(numeric_metadata)
    path = Path(path)
    rows = _read_delimited(path, "\t")
    version, (n_rows, n_cols, n_row_meta, n_col_meta) = _read_preamble(path, rows)
    n_lead = 1 + n_row_meta
    names = _read_header(path, rows, n_lead, n_cols)
    sample_meta = _read_column_annotations(path, rows, names, n_lead, n_col_meta, numeric_metadata)
    genes, annotations, values, linenos = _parse_matrix(
        path, rows, names, row_what="gene", col_what="sample", n_lead=n_lead
    )
    if len(genes) != n_rows:
        raise ValueError(f"{path}: the dimensions line says {n_rows} genes but the file has {len(genes)} data rows.")
    gene_meta = _metadata_columns(
        {names[1 + j]: [a[j] for a in annotations] for j in range(n_row_meta)},
        numeric_metadata,
        path,
        lambda name, g: f"line {linenos[g]}, column {names.index(name) + 1}",
        check_names=False,
    )
    if not isinstance(numeric_metadata, bool):
        # A name may be a row annotation or a column annotation; one in neither is a mistake.
        _check_metadata_names(numeric_metadata, {**gene_meta, **sample_meta}, path)
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
        row_meta = {"Description": (np.full(n_genes, "na", dtype=object) if descriptions is None else descriptions)}
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
            writer.writerow([key, *(["na"] * len(row_meta)), *map(_format_cell, values)])
        for g, values in enumerate(data.X.T):
            annotations = [_format_cell(row_meta[k][g]) for k in row_meta]
            writer.writerow([data.genes[g], *annotations, *_format_values(values)])
