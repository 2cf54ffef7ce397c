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
import zlib
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


def _sep_is_guessed(path, sep):
    """True when `sep` (as given to a reader) leaves the separator to be guessed from the file's first line."""
    return sep is None and _base_suffix(path) not in _SUFFIX_SEP


def _peek_first_line(path):
    try:
        with _open_text(path) as f:
            for line in f:
                if line.strip():
                    return line
    except _READ_ERRORS as exc:
        raise _read_error(path, 0, exc) from exc
    return ""


# What reading a text file can raise beyond the readers' own checks: an undecodable byte, a broken or truncated
# gzip stream, the csv module's errors (a NUL byte, a field over csv.field_size_limit()). None of them names the
# file; _read_error says which file, where, and what to do. (Missing or unreadable files raise OSErrors that
# already name the file, and stay as they are.)
_READ_ERRORS = (UnicodeDecodeError, csv.Error, EOFError, zlib.error, gzip.BadGzipFile)


def _read_error(path, last_line, exc):
    """A ValueError naming `path` for `exc`, raised after `last_line` lines were read whole."""
    line = last_line + 1
    if isinstance(exc, UnicodeDecodeError):
        return ValueError(_undecodable_message(path, exc))
    if isinstance(exc, (EOFError, zlib.error, gzip.BadGzipFile)):
        where = f"{path}, after line {last_line}" if last_line else str(path)
        return ValueError(
            f"{where}: the gzip stream is broken ({exc}); the file is truncated or corrupt "
            "(an interrupted download or copy?), or not gzip-compressed despite its .gz suffix."
        )
    text = str(exc)
    if "field larger than field limit" in text:
        return ValueError(
            f"{_where(path, line)}: a field runs over {csv.field_size_limit()} characters ({text}). Most likely "
            f'a double quote (") near line {line} opens a field that never closes, swallowing the lines after '
            "it; close or remove the quote."
        )
    if "NUL" in text:
        return _nul_error(path, line)
    return ValueError(f"{_where(path, line)}: cannot be parsed as a delimited table ({text}).")


def _nul_error(path, line):
    return ValueError(
        f"{_where(path, line)}: the line holds a NUL byte: this is not a text table (a spreadsheet workbook, an "
        "HDF5 or another binary file?). Export it as CSV/TSV first."
    )


def _undecodable_message(path, exc):
    """Where the first byte that is not UTF-8 lies (the text layer decodes ahead of the line being parsed, so
    the line is found again on the raw bytes)."""
    opener = gzip.open if Path(path).suffix == ".gz" else open
    head = b""
    with opener(path, "rb") as raw:
        for lineno, line in enumerate(raw, start=1):
            if lineno == 1:
                head = line[:2]
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as bad:
                where, snippet = _where(path, lineno), line[max(bad.start - 10, 0) : bad.end + 10]
                break
        else:  # pragma: no cover - the text layer and the raw bytes disagree
            where, snippet = str(path), exc.object[exc.start : exc.end]
    if head in (b"\xff\xfe", b"\xfe\xff"):
        return (
            f"{path}: the file is UTF-16 text (as Excel's 'Unicode Text' export writes), not UTF-8. Save it as "
            "'CSV UTF-8' or convert it (iconv -f utf-16 -t utf-8)."
        )
    return (
        f"{where}: not UTF-8 text (the bytes {snippet!r}; {exc.reason}). Convert the file to UTF-8, e.g. "
        "iconv -f latin1 -t utf-8 (for a Latin-1/Windows-1252 export)."
    )


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
            hint = next(
                (
                    f" It holds {_separator_name(sep)}: a decimal comma, or a separator other than the file's "
                    "(pass sep=)?"
                    for sep in (",", "\t", ";")
                    if sep in text
                ),
                "",
            )
            raise ValueError(
                f"{_where(path, lineno)}, column {column + 1}{name}: non-numeric "
                f"value {cell!r}. Only numbers and missing-value markers "
                f"(NA, NaN, null or an empty cell) are allowed.{hint}"
            ) from None
    return out


def _as_float32(values, path, lineno, names, offset):
    """`values` (float64) as float32, refusing finite numbers beyond float32's range rather than turning them
    into infinities."""
    with np.errstate(over="ignore"):
        out = values.astype(np.float32)
    if not np.isinf(out).any():
        return out
    overflow = np.isinf(out) & np.isfinite(values)
    if overflow.any():
        j = int(np.argmax(overflow))
        column = j + offset
        name = f" ({names[column]!r})" if names is not None else ""
        raise ValueError(
            f"{_where(path, lineno)}, column {column + 1}{name}: the value {values[j]:.6g} is beyond the float32 "
            f"range (+-{np.finfo(np.float32).max:.4g}) the matrix is stored in. Rescale the data (log-transform "
            "or divide) before writing it."
        )
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


def _is_missing(value):
    return value is None or str(value).strip().lower() in _MISSING


def _convert_column(values):
    """Turn a list of str into float64 if numeric-looking, else object."""
    missing = [_is_missing(v) for v in values]
    present = [v.strip() for v, m in zip(values, missing) if not m]
    if present:
        try:
            numbers = iter([float(v) for v in present])
        except ValueError:
            pass
        else:
            return np.array([np.nan if m else next(numbers) for m in missing], dtype=np.float64)
    return _text_column(values)


def _text_column(values):
    """A list of str as an object array, missing-value markers as None and every other cell as written."""
    out = np.empty(len(values), dtype=object)
    out[:] = [None if _is_missing(v) else v for v in values]
    return out


def _numeric_column(values, path, name, where):
    """A list of str as float64 (missing markers as NaN), refusing a cell that is not a number."""
    out = np.full(len(values), np.nan)
    for i, value in enumerate(values):
        if _is_missing(value):
            continue
        try:
            out[i] = float(value)
        except ValueError:
            raise ValueError(
                f"{path}, {where(name, i)}: numeric_metadata asks for {name!r} as numbers but it holds "
                f"{value!r}. Leave {name!r} out of numeric_metadata to keep the column as text."
            ) from None
    return out


def _check_numeric_metadata(numeric_metadata):
    """`numeric_metadata` as True, False or a tuple of column names."""
    if isinstance(numeric_metadata, (bool, np.bool_)):
        return bool(numeric_metadata)
    if not isinstance(numeric_metadata, str):
        try:
            names = tuple(numeric_metadata)
        except TypeError:
            names = None
        if names is not None and all(isinstance(name, str) for name in names):
            return names
    raise TypeError(
        "numeric_metadata must be False (every metadata column as text), True (every all-numeric column as "
        f"float64) or a list of column names, got {numeric_metadata!r}."
    )


def _metadata_columns(columns, numeric_metadata, path, where, *, check_names=True):
    """Metadata columns (name -> list of str or None) as arrays: text, as written, unless `numeric_metadata`
    asks for numbers (True: every column whose cells all parse as numbers; names: those columns, refusing a
    cell that does not parse). ``where(name, i)`` says where cell `i` of column `name` is in the file;
    `check_names` refuses names in `numeric_metadata` that `columns` lacks."""
    if numeric_metadata is True:
        return {name: _convert_column(values) for name, values in columns.items()}
    requested = () if numeric_metadata is False else numeric_metadata
    if check_names:
        _check_metadata_names(requested, columns, path)
    return {
        name: _numeric_column(values, path, name, where) if name in requested else _text_column(values)
        for name, values in columns.items()
    }


def _check_metadata_names(requested, columns, path):
    unknown = [name for name in requested if name not in columns]
    if unknown:
        raise ValueError(
            f"{path}: numeric_metadata names {unknown}, which the file's metadata does not have (its columns: "
            f"{list(columns)[:12]}{'...' if len(columns) > 12 else ''})."
        )


#: The separators a file's content can be read with; a field holding the other one means a file that mixes them.
_OTHER_SEPARATOR = {",": "\t", "\t": ","}


def _read_delimited(path, sep, *, single_separator=False):
    """Yield ``(lineno, cells)`` for the non-blank rows of a delimited file.

    Whatever fails while reading raises a ValueError naming the file and line. With `single_separator` (for a
    separator guessed from the first line), the other common separator outside quotes (a comma in a tab-separated
    file, a tab in a comma-separated one) is refused: such a file mixes separators, and splitting it on one of them
    silently shifts identifiers and values.
    """
    other = _OTHER_SEPARATOR.get(sep) if single_separator else None
    lineno = 0
    try:
        with _open_text(path) as f:
            lines = _Lines(f, path, record=other is not None)
            reader = csv.reader(lines, delimiter=sep)
            for row in reader:
                start, lineno = lineno + 1, reader.line_num
                raw = lines.take()
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if other is not None and other in raw:
                    _check_single_separator(path, start, raw, sep, other)
                yield start, row
    except _READ_ERRORS as exc:
        raise _read_error(path, lineno, exc) from exc


class _Lines:
    """A text file's lines, as iterating over the file gives them, refusing a NUL byte (the csv module of
    Python >= 3.11 reads it as a character) and, with `record`, keeping the lines read since the last
    :meth:`take` (the raw text of the csv record just parsed, quotes included)."""

    def __init__(self, f, path, record):
        self._f, self._path, self._record = f, path, record
        self._count, self._lines = 0, []

    def __iter__(self):
        return self

    def __next__(self):
        line = next(self._f)
        self._count += 1
        if "\x00" in line:
            raise _nul_error(self._path, self._count)
        if self._record:
            self._lines.append(line)
        return line

    def take(self):
        text, self._lines = "".join(self._lines), []
        return text


def _separator_name(sep):
    return {"\t": "a tab", ",": "a comma", ";": "a semicolon"}.get(sep, repr(sep))


def _check_single_separator(path, lineno, raw, sep, other):
    """Refuse `other` outside double quotes in the raw text of a record (inside quotes it is part of a field)."""
    # Splitting on quotes leaves the unquoted text at even positions (a doubled quote inside a quoted field
    # leaves an empty piece there).
    column = 0
    for i, piece in enumerate(raw.split('"')):
        if i % 2:
            continue
        if other in piece:
            column += piece[: piece.index(other)].count(sep)
            raise ValueError(
                f"{_where(path, lineno)}, column {column + 1}: {_separator_name(other)} outside quotes, but the "
                f"separator read from the first line is {_separator_name(sep)}: the file mixes separators, and "
                "splitting it on one would shift its ids and values. Use one separator throughout (or quote the "
                "fields that hold the other), or pass sep= to split on one and keep the other inside fields."
            )
        column += piece.count(sep)


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
        parsed = _parse_values(row[n_lead:], path, lineno, header, n_lead)
        values.append(_as_float32(parsed, path, lineno, header, n_lead))
        linenos.append(lineno)
    if not ids:
        raise ValueError(f"{path}: the table has a header but no data rows.")
    _check_unique(ids, f"{row_what} id", path, lambda i: f"line {linenos[i]}")
    return ids, annotations, np.vstack(values), linenos


def _check_header(path, lineno, header, *, col_what, n_lead=1, data_check=True):
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
    if data_check and _looks_like_data(cols):
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
