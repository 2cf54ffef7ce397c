"""Parsing helpers shared by the text readers and writers: opening (gzipped)
files, separators, numeric cells, headers, identifiers and metadata columns.
Errors name the file and line.
"""

# License: BSD-3-Clause

import contextlib
import csv
import gzip
import io
import math
from pathlib import Path

import numpy as np

from .._atomic import atomic_write

# Cells that mean "missing" (compared case-insensitively after stripping).
_MISSING = frozenset({"", "na", "nan", "-nan", "null", "n/a", "#n/a"})

_SUFFIX_SEP = {".csv": ",", ".tsv": "\t", ".tab": "\t"}


def _open_text(path, mode="r"):
    path = Path(path)
    if mode == "w":
        return _open_text_atomic(path)
    # newline="" lets the csv module handle quoted fields with line breaks;
    # utf-8-sig drops the byte-order mark some spreadsheet exports add.
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, mode, encoding="utf-8-sig", newline="")


@contextlib.contextmanager
def _open_text_atomic(path):
    # Written to a temporary file and renamed onto `path` at the end, so that an interrupted
    # write leaves the previous file intact instead of a truncated table.
    if path.suffix != ".gz":
        with atomic_write(path, "w", encoding="utf-8", newline="") as f:
            yield f
        return
    # filename= names the target (not the temporary file) in the gzip header, as gzip.open would.
    with (
        atomic_write(path, "wb") as raw,
        gzip.GzipFile(filename=str(path), mode="wb", fileobj=raw) as compressed,
        io.TextIOWrapper(compressed, encoding="utf-8", newline="") as f,
    ):
        yield f


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
                f"{path}: duplicated {what} {name!r} ({where(seen[name])} and {where(i)}). Identifiers must be unique."
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
            return np.array([np.nan if m else next(numbers) for m in missing], dtype=np.float64)
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
        values.append(_parse_values(row[n_lead:], path, lineno, header, n_lead).astype(np.float32))
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
            raise ValueError(f"{_where(path, lineno)}, column {j + n_lead + 1}: empty {col_what} id in the header.")
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
