"""GEO series-matrix files (``GSExxx_series_matrix.txt[.gz]``)."""

# License: BSD-3-Clause

from pathlib import Path

from ._container import ExpressionData
from ._parse import _check_header, _check_numeric_metadata, _metadata_columns, _parse_matrix, _read_delimited, _where


def _unique_key(key, table):
    if key not in table:
        return key
    k = 2
    while f"{key}_{k}" in table:
        k += 1
    return f"{key}_{k}"


def _characteristics(field_name, cells, metadata, origin, lineno):
    """Split ``key: value`` cells of one characteristics line into columns (`origin`: column -> its line)."""
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
        name = _unique_key(key, metadata)
        metadata[name], origin[name] = column, lineno


def _scan(path):
    """One pass over the file: ``(series, sample_lines, header_line, header,
    table_rows)``, where `series` holds the ``!Series_*`` fields,
    `sample_lines` the ``(lineno, name, cells)`` of the ``!Sample_*`` lines
    and the rest the expression table between its begin and end markers."""
    series, sample_lines = {}, []
    state, header, header_line, table_rows, end_line = "head", None, None, [], None
    for lineno, row in _read_delimited(path, "\t"):
        key = row[0].strip()
        if state == "done":
            # Nothing may follow the table: rows there (a second table, an edited or concatenated file) would
            # otherwise be dropped without a word.
            what = "a second table begins" if key.lower() == "!series_matrix_table_begin" else "a line follows"
            raise ValueError(
                f"{_where(path, lineno)}: {what} after '!series_matrix_table_end' (line {end_line}); a series matrix "
                "holds one table, which ends the file. Split the file, or move these rows into the table."
            )
        if state == "table":
            if key.lower() == "!series_matrix_table_end":
                state, end_line = "done", lineno
            elif header is None:
                header, header_line = row, lineno
            else:
                table_rows.append((lineno, row))
        elif key.lower() == "!series_matrix_table_begin":
            state = "table"
        elif key.startswith("!Series_"):
            name, value = key[len("!Series_") :], "\t".join(row[1:]).strip()
            if name in series:
                # Repeated lines (e.g. the summary) are paragraphs of one field.
                previous = series[name]
                series[name] = (previous if isinstance(previous, list) else [previous]) + [value]
            else:
                series[name] = value
        elif key.startswith("!Sample_"):
            sample_lines.append((lineno, key[len("!Sample_") :], row[1:]))
        elif not key.startswith("!") and any(cell.strip() for cell in row):
            # Before the table only '!' fields belong; a row here (misplaced, or the table's begin marker lost)
            # would otherwise be skipped without a word.
            raise ValueError(
                f"{_where(path, lineno)}: a row ({key!r}, ...) before '!series_matrix_table_begin': not a GEO "
                "series matrix file, or its begin marker is lost (only '!Series_' and '!Sample_' fields may come "
                "before the table)."
            )
    if state == "head":
        raise ValueError(f"{path}: no '!series_matrix_table_begin' line; not a GEO series matrix file.")
    if state == "table":
        raise ValueError(f"{path}: no '!series_matrix_table_end' line; the file is truncated.")
    if header is None:
        raise ValueError(f"{path}: the expression table is empty (no header).")
    return series, sample_lines, header_line, header, table_rows


def _sample_metadata(path, sample_lines, samples, numeric_metadata):
    """The ``!Sample_*`` lines as metadata columns in the table's sample order."""
    metadata, origin = {}, {}
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
            _characteristics(name, cells, metadata, origin, lineno)
        else:
            key = _unique_key(name, metadata)
            metadata[key], origin[key] = cells, lineno
    accessions = metadata.get("geo_accession")
    if accessions is not None and list(accessions) != list(samples):
        # Metadata lines are in the table's column order in GEO files; a
        # mismatch means the file was edited or truncated.
        position = {a: i for i, a in enumerate(accessions)}
        if set(position) != set(samples):
            raise ValueError(
                f"{path}: the !Sample_geo_accession line does not list the same samples as the table header."
            )
        order = [position[s] for s in samples]
        metadata = {k: [v[i] for i in order] for k, v in metadata.items()}
    else:
        order = range(len(samples))
    # Cell i of a column is sample order[i]'s, in column order[i] + 2 of its line (after the !Sample_ key).
    return _metadata_columns(
        metadata, numeric_metadata, path, lambda name, i: f"line {origin[name]}, column {order[i] + 2}"
    )


def read_geo_series_matrix(path, *, numeric_metadata=False):
    """Read a GEO series-matrix file (``GSExxx_series_matrix.txt[.gz]``).

    Parameters
    ----------
    path : str or path-like
        File to read; a ``.gz`` suffix means gzip compression.

    numeric_metadata : bool or list of str, default=False
        Which metadata columns to read as numbers (float64, NaN when
        missing). ``False``: none; every column stays text as written, so
        identifiers such as ``"007"`` keep their zeros. ``True``: every
        column whose cells all parse as numbers. A list: those columns,
        and a cell in them that is not a number raises a ValueError.

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
        ``null`` or empty values become NaN (None in text metadata).

    Raises
    ------
    ValueError
        On a malformed file (including any line after
        ``!series_matrix_table_end``, which would otherwise be lost); the
        message names the file and line.

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
    (array(['GSM1', 'GSM2'], dtype=object), array(['61', '54'], dtype=object))
    >>> read_geo_series_matrix(path, numeric_metadata=["age"]).metadata["age"]
    array([61., 54.])
    >>> data.attrs["series"]["title"]
    'A study'
    """
    numeric_metadata = _check_numeric_metadata(numeric_metadata)
    path = Path(path)
    series, sample_lines, header_line, header, table_rows = _scan(path)
    names = _check_header(path, header_line, header, col_what="sample")
    if names[0] != "ID_REF":
        raise ValueError(f"{_where(path, header_line)}: the table header must start with 'ID_REF', found {names[0]!r}.")
    genes, _, values, _ = _parse_matrix(path, table_rows, names, row_what="gene", col_what="sample")
    samples = names[1:]
    metadata = _sample_metadata(path, sample_lines, samples, numeric_metadata)
    return ExpressionData(
        values.T,
        genes,
        samples,
        metadata=metadata,
        attrs={"source": str(path), "series": series},
    )
