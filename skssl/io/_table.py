"""Delimited tables (CSV/TSV, optionally gzipped) and their per-sample tables."""

# License: BSD-3-Clause

import itertools
from pathlib import Path

import numpy as np

from ._container import ExpressionData
from ._parse import (
    _MISSING,
    _base_suffix,
    _check_header,
    _check_numeric_metadata,
    _check_unique,
    _format_cell,
    _format_values,
    _infer_sep,
    _metadata_columns,
    _open_text,
    _parse_matrix,
    _peek_first_line,
    _read_delimited,
    _sep_is_guessed,
    _where,
)


def _read_sample_table(path, sample_id_column=None, sep=None, numeric_metadata=False):
    """Read a per-sample metadata table into ``(ids, {column: values})``, values in the table's row order."""
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
    position = {name: j for j, name in enumerate(header)}
    columns = {name: [record[j] for record in records] for j, name in enumerate(header) if j != id_col}
    columns = _metadata_columns(
        columns, numeric_metadata, path, lambda name, i: f"line {linenos[i]}, column {position[name] + 1}"
    )
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
    found = index >= 0
    metadata = {}
    for name, values in columns.items():
        # A sample without a row in the table gets a missing value: NaN in a numeric column, None in a text one.
        joined = np.full(len(samples), np.nan if values.dtype.kind == "f" else None, dtype=values.dtype)
        joined[found] = values[index[found]]
        metadata[name] = joined
    return metadata


def _looks_headerless(names):
    """True if every column id of a header line is a number (or a missing-value marker), as in a data row."""
    numbers = 0
    for name in names:
        if name.lower() in _MISSING:
            continue
        try:
            float(name)
        except ValueError:
            return False
        numbers += 1
    return numbers > 0


def _read_header(path, rows, col_what, header):
    """``(names, first data row)``: the checked header fields, with the id column's name added when the header
    lacks it (R's ``write.table``); with ``header=False``, generated names and the first line as data."""
    try:
        header_line, header_row = next(rows)
    except StopIteration:
        raise ValueError(f"{path}: the file is empty{'' if header is False else ' (no header)'}.") from None
    if header is False:
        if len(header_row) < 2:
            raise ValueError(
                f"{_where(path, header_line)}: no {col_what} columns (found {len(header_row)} field(s)); is the "
                "separator right?"
            )
        return ["", *(f"x{j}" for j in range(len(header_row) - 1))], (header_line, header_row)
    try:
        first = next(rows)
    except StopIteration:
        first = None
    if first is not None and len(first[1]) == len(header_row) + 1:
        header_row = [""] + header_row  # R-style header without the id column name
    names = _check_header(path, header_line, header_row, col_what=col_what, data_check=False)
    # A data row cannot start with an empty id, so an empty first field is a header whatever follows it.
    if header == "infer" and names[0] and _looks_headerless(names[1:]):
        shown = ", ".join(repr(name) for name in names[1:4]) + (", ..." if len(names) > 4 else "")
        raise ValueError(
            f"{_where(path, header_line)}: the first line looks like data, not a header: every {col_what} id in "
            f"it ({shown}) is a number, as in a data row. Pass header=False if the file has no header line (the "
            f"{col_what}s are then named x0, x1, ...), or header=True if these numbers are the {col_what} ids"
            f"{' (e.g. Entrez gene ids)' if col_what == 'gene' else ''}."
        )
    if first is None:
        raise ValueError(f"{path}: the table has a header but no data rows.")
    return names, first


def read_table(
    path,
    orient="samples",
    sep=None,
    sample_table=None,
    sample_id_column=None,
    *,
    header="infer",
    numeric_metadata=False,
):
    """Read a delimited expression matrix (CSV/TSV, optionally gzipped).

    The first line is a header (unless ``header=False``) and the first column
    holds identifiers.

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
        from the first line (tab if it has at least as many tabs as
        commas); such a file must then not mix the two: a field holding
        the other one is refused (pass `sep` to allow it).

    sample_table : str or path-like, default=None
        Optional CSV/TSV of per-sample annotations, one row per sample,
        joined into `metadata` by sample id. Samples without a row get
        missing values; rows without a sample are ignored.

    sample_id_column : str, default=None
        Column of `sample_table` holding the sample id; None means its
        first column.

    header : {"infer", True, False}, default="infer"
        Whether the first line holds the column ids. ``True``: it does,
        whatever they look like. ``False``: it is a data row; the columns
        are named ``x0, x1, ...``. ``"infer"``: as ``True``, but a first
        line whose column ids are all numbers (as in a headerless file)
        raises a ValueError asking for ``True`` or ``False``, rather than
        silently turning the first sample into gene names (or the other
        way round). Numeric ids such as Entrez gene ids need
        ``header=True``.

    numeric_metadata : bool or list of str, default=False
        Which `sample_table` columns to read as numbers (float64, NaN
        when missing). ``False``: none; every column stays text as
        written, so identifiers such as ``"007"`` keep their zeros.
        ``True``: every column whose cells all parse as numbers. A list:
        those columns, and a cell in them that is not a number raises a
        ValueError.

    Returns
    -------
    data : ExpressionData
        The matrix as (n_samples, n_genes) float32.

    Raises
    ------
    ValueError
        On a ragged table, duplicated ids, a non-numeric cell, a value
        beyond the float32 range, mixed separators, a missing or
        ambiguous header, an empty table, a file that is not UTF-8 text or
        a broken gzip stream; the message names the file and line.
        Missing-value markers (``NA``, ``NaN``, ``null``, empty) become NaN.

    See Also
    --------
    write_table : The inverse operation.

    Notes
    -----
    A header with one field fewer than the data rows (as written by R's
    ``write.table``) is accepted: the missing field is the id column.
    Metadata cells that are missing-value markers become None (text
    columns) or NaN (numeric columns); a sample without a row in
    `sample_table` gets missing values in every column.

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
    if not (header is True or header is False or (isinstance(header, str) and header == "infer")):
        raise ValueError(f"header must be 'infer', True or False, got {header!r}.")
    numeric_metadata = _check_numeric_metadata(numeric_metadata)
    path = Path(path)
    single_separator = _sep_is_guessed(path, sep)
    sep = _infer_sep(path, sep, _peek_first_line(path))
    row_what, col_what = ("sample", "gene") if orient == "samples" else ("gene", "sample")
    rows = _read_delimited(path, sep, single_separator=single_separator)
    names, first = _read_header(path, rows, col_what, header)
    ids, _, values, _ = _parse_matrix(path, itertools.chain([first], rows), names, row_what=row_what, col_what=col_what)
    if orient == "samples":
        samples, genes, X = ids, names[1:], values
    else:
        samples, genes, X = names[1:], ids, values.T
    metadata = {}
    if sample_table is not None:
        table_ids, columns = _read_sample_table(sample_table, sample_id_column, numeric_metadata=numeric_metadata)
        metadata = _join_metadata(samples, table_ids, columns, sample_table)
    elif numeric_metadata:
        raise ValueError("numeric_metadata applies to the columns of sample_table, and no sample_table is given.")
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
        in the format :func:`read_table` reads (numeric columns come back
        as numbers with ``numeric_metadata=True``).

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
        f.write(sep.join(_quoted(str(cell), sep) for cell in [corner, *col_ids]) + "\n")
        for row_id, values in zip(row_ids, M):
            # Formatted numbers and NA never need quotes: only the id is checked.
            f.write(_quoted(str(row_id), sep) + sep + sep.join(_format_values(values)) + "\n")
    if sample_table is not None:
        table_path = Path(sample_table)
        table_sep = "\t" if _base_suffix(table_path) in (".tsv", ".tab", ".txt") else ","
        keys = list(data.metadata)
        with _open_text(table_path, "w") as f:
            for cells in [["sample_id", *keys]] + [
                [sample, *(_format_cell(data.metadata[k][i]) for k in keys)] for i, sample in enumerate(data.samples)
            ]:
                f.write(table_sep.join(_quoted(str(cell), table_sep) for cell in cells) + "\n")


def _quoted(cell, sep):
    """`cell` as the csv module would write it, and quoted also when it holds a comma or a tab: read_table
    guesses the separator of a ``.txt`` file from its first line and refuses the other one outside quotes."""
    if sep in cell or any(c in cell for c in ',\t"\r\n'):
        return '"' + cell.replace('"', '""') + '"'
    return cell
