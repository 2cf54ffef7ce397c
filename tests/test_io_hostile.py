"""The text readers on hostile files: they never lose or invent a row, and every error names the file (and the
line where it is known), whatever the underlying exception.

Before the readers were hardened (issue 22) a headerless matrix was read with its first sample as gene names, a .txt
mixing comma and tab merged ids, rows after a GEO table's end were dropped, 1e39 was stored as inf, "007" was read
as 7.0, and csv/decoding/gzip errors named no file: every test of these fails on that code. Three tests guard what
must keep working (quoted or explicitly allowed separators, written infinities, FileNotFoundError).
"""

import gzip
import warnings
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from skssl.io import read_gct, read_geo_series_matrix, read_table


def _write(path, text, encoding="utf-8"):
    path = Path(path)
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def _geo(table_rows, after_end=""):
    return (
        '!Series_title\t"t"\n'
        '!Sample_geo_accession\t"GSM1"\t"GSM2"\n'
        '!Sample_characteristics_ch1\t"patient: 007"\t"patient: 012"\n'
        "!series_matrix_table_begin\n"
        '"ID_REF"\t"GSM1"\t"GSM2"\n' + table_rows + "!series_matrix_table_end\n" + after_end
    )


# --------------------------------------------------------------------------
# Headers
# --------------------------------------------------------------------------

HEADERLESS = "s1,10,3,7\ns2,4,5,6\ns3,1,2,9\n"


def test_headerless_numeric_matrix_is_refused_by_default(tmp_path):
    path = _write(tmp_path / "m.csv", HEADERLESS)
    with pytest.raises(ValueError, match=r"line 1: the first line looks like data.*header=False.*header=True") as exc:
        read_table(path)
    assert str(path) in str(exc.value)


def test_header_false_reads_every_line_as_data(tmp_path):
    data = read_table(_write(tmp_path / "m.csv", HEADERLESS), header=False)
    assert data.shape == (3, 3)
    assert_array_equal(data.samples, ["s1", "s2", "s3"])
    assert_array_equal(data.genes, ["x0", "x1", "x2"])
    assert_array_equal(data.X, [[10, 3, 7], [4, 5, 6], [1, 2, 9]])
    by_gene = read_table(_write(tmp_path / "g.csv", HEADERLESS), orient="genes", header=False)
    assert_array_equal(by_gene.samples, ["x0", "x1", "x2"])
    assert_array_equal(by_gene.genes, ["s1", "s2", "s3"])


def test_header_true_takes_numeric_ids_and_empty_corner_means_header(tmp_path):
    assert_array_equal(read_table(_write(tmp_path / "m.csv", HEADERLESS), header=True).genes, ["10", "3", "7"])
    # An empty first field cannot start a data row: the line is a header even under "infer" (R's write.table
    # with numeric column names writes one field fewer, which reads the same way).
    assert_array_equal(read_table(_write(tmp_path / "e.csv", ",7157,1956\ns1,1,2\n")).genes, ["7157", "1956"])
    assert_array_equal(read_table(_write(tmp_path / "r.csv", "7157,1956\ns1,1,2\n")).genes, ["7157", "1956"])
    # Missing-value markers in a first line of numbers are data too.
    with pytest.raises(ValueError, match="looks like data"):
        read_table(_write(tmp_path / "na.csv", "s1,NA,3\ns2,1,2\n"))
    with pytest.raises(ValueError, match="header must be 'infer', True or False"):
        read_table(tmp_path / "m.csv", header="yes")


# --------------------------------------------------------------------------
# Separators
# --------------------------------------------------------------------------


def test_txt_mixing_comma_and_tab_is_refused_with_its_line(tmp_path):
    # Split on tabs, this file read as one gene 'B' and sample ids 's1,1', 's2,3' (gene 'A' lost).
    path = _write(tmp_path / "mixed.txt", "sample_id,A\tB\ns1,1\t2\ns2,3\t4\n")
    with pytest.raises(ValueError, match=r"mixed.txt, line 1, column 1: a comma outside quotes.*a tab") as exc:
        read_table(path)
    assert "sep=" in str(exc.value)
    later = _write(tmp_path / "later.txt", "sample_id\tA\tB\ns1\t1\t2\ns2,x\t3\t4\n")
    with pytest.raises(ValueError, match=r"later.txt, line 3, column 1: a comma outside quotes"):
        read_table(later)
    comma_file = _write(tmp_path / "comma.dat", "sample_id,A,B\ns1,1,2\ns2\t3,4,5\n")
    with pytest.raises(ValueError, match=r"comma.dat, line 3, column 1: a tab outside quotes"):
        read_table(comma_file)


def test_separator_inside_quotes_or_given_explicitly_is_kept(tmp_path):
    quoted = _write(tmp_path / "q.txt", 'sample_id\t"HLA-A,1"\tB\n"s,1"\t1\t2\n')
    data = read_table(quoted)
    assert_array_equal(data.genes, ["HLA-A,1", "B"])
    assert_array_equal(data.samples, ["s,1"])
    # sep= given: the user says how to split, commas stay inside fields.
    unquoted = _write(tmp_path / "u.txt", "sample_id\tHLA-A,1\tB\ns1\t1\t2\n")
    assert_array_equal(read_table(unquoted, sep="\t").genes, ["HLA-A,1", "B"])
    # The suffix says tab: ids with commas are ordinary there.
    assert_array_equal(read_table(_write(tmp_path / "u.tsv", unquoted.read_text())).genes, ["HLA-A,1", "B"])


def test_decimal_comma_cell_gets_a_separator_hint(tmp_path):
    path = _write(tmp_path / "eu.tsv", "sample_id\tA\ns1\t1,5\n")
    with pytest.raises(ValueError, match=r"eu.tsv, line 2, column 2 \('A'\): non-numeric value '1,5'.*comma"):
        read_table(path)


# --------------------------------------------------------------------------
# Rows and values
# --------------------------------------------------------------------------


def test_geo_rows_after_the_table_end_are_refused(tmp_path):
    text = _geo('"g1"\t1\t2\n', after_end='"g2"\t3\t4\n')
    path = _write(tmp_path / "GSE1_series_matrix.txt", text)
    with pytest.raises(ValueError, match=r"line 8: a line follows after '!series_matrix_table_end' \(line 7\)"):
        read_geo_series_matrix(path)
    second = _geo('"g1"\t1\t2\n', after_end='!series_matrix_table_begin\n"ID_REF"\t"GSM1"\t"GSM2"\n')
    with pytest.raises(ValueError, match="line 8: a second table begins after"):
        read_geo_series_matrix(_write(tmp_path / "GSE2_series_matrix.txt", second))
    before = '"g0"\t5\t6\n' + _geo('"g1"\t1\t2\n')
    with pytest.raises(ValueError, match=r"line 1: a row \('g0', \.\.\.\) before '!series_matrix_table_begin'"):
        read_geo_series_matrix(_write(tmp_path / "GSE4_series_matrix.txt", before))
    # Blank lines after the end are not rows.
    assert read_geo_series_matrix(_write(tmp_path / "GSE3.txt", _geo('"g1"\t1\t2\n', after_end="\n\n"))).shape == (2, 1)


@pytest.mark.parametrize(
    "reader, name, text, where",
    [
        (read_table, "x.csv", "sample_id,A,B\ns1,1,2\ns2,3,-1e39\n", r"line 3, column 3 \('B'\)"),
        (read_gct, "x.gct", "#1.2\n1\t2\nName\tDescription\ts1\ts2\nA\td\t1e39\t2\n", r"line 4, column 3 \('s1'\)"),
        (read_geo_series_matrix, "x.txt", _geo('"g1"\t1\t1e300\n'), r"line 6, column 3 \('GSM2'\)"),
    ],
)
def test_values_beyond_float32_are_refused_not_made_infinite(tmp_path, reader, name, text, where):
    path = _write(tmp_path / name, text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy overflow warning on the way
        with pytest.raises(ValueError, match=where + r": the value .*e\+\d+ is beyond the float32 range"):
            reader(path)


def test_explicit_infinity_and_largest_float32_are_read_as_written(tmp_path):
    largest = float(np.finfo(np.float32).max)
    path = _write(tmp_path / "x.csv", f"sample_id,A,B\ns1,{largest!r},-inf\n")
    assert_array_equal(read_table(path).X, np.array([[largest, -np.inf]], dtype=np.float32))


# --------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------


def test_sample_table_columns_stay_text_unless_asked(tmp_path):
    expr = _write(tmp_path / "e.csv", "sample_id,A\ns1,1\ns2,2\ns3,3\n")
    samples = _write(tmp_path / "s.csv", "sample_id,patient,age,stage\ns1,007,61,ii\ns2,012,NA,i\ns4,099,50,iv\n")
    data = read_table(expr, sample_table=samples)
    assert_array_equal(data.metadata["patient"], ["007", "012", None])  # s3 has no row
    assert_array_equal(data.metadata["age"], ["61", None, None])
    asked = read_table(expr, sample_table=samples, numeric_metadata=["age"])
    assert asked.metadata["age"].dtype == np.float64
    assert_array_equal(asked.metadata["age"], [61.0, np.nan, np.nan])
    assert_array_equal(asked.metadata["patient"], ["007", "012", None])
    every = read_table(expr, sample_table=samples, numeric_metadata=True)
    assert_array_equal(every.metadata["patient"], [7.0, 12.0, np.nan])  # asked for: numbers
    assert_array_equal(every.metadata["stage"], ["ii", "i", None])
    with pytest.raises(ValueError, match=r"s.csv, line 2, column 4: numeric_metadata asks for 'stage'.*'ii'"):
        read_table(expr, sample_table=samples, numeric_metadata=["stage"])
    with pytest.raises(ValueError, match=r"numeric_metadata names \['Age'\].*'patient', 'age', 'stage'"):
        read_table(expr, sample_table=samples, numeric_metadata=["Age"])
    with pytest.raises(TypeError, match="numeric_metadata must be"):
        read_table(expr, sample_table=samples, numeric_metadata="age")
    with pytest.raises(ValueError, match="no sample_table"):
        read_table(expr, numeric_metadata=True)


def test_geo_and_gct_metadata_stay_text_unless_asked(tmp_path):
    geo = _write(tmp_path / "GSE1_series_matrix.txt", _geo('"g1"\t1\t2\n'))
    assert_array_equal(read_geo_series_matrix(geo).metadata["patient"], ["007", "012"])
    assert_array_equal(read_geo_series_matrix(geo, numeric_metadata=["patient"]).metadata["patient"], [7.0, 12.0])
    gct = _write(
        tmp_path / "x.gct",
        "#1.3\n1\t2\t1\t1\nid\tchrom\ts1\ts2\nbatch\tna\t007\t008\nA\t07\t1\t2\n",
    )
    data = read_gct(gct)
    assert_array_equal(data.metadata["batch"], ["007", "008"])
    assert_array_equal(data.gene_metadata["chrom"], ["07"])
    asked = read_gct(gct, numeric_metadata=["chrom"])
    assert_array_equal(asked.gene_metadata["chrom"], [7.0])
    assert_array_equal(asked.metadata["batch"], ["007", "008"])
    with pytest.raises(ValueError, match=r"numeric_metadata names \['nope'\]"):
        read_gct(gct, numeric_metadata=["nope"])


# --------------------------------------------------------------------------
# Errors from below the readers name the file
# --------------------------------------------------------------------------

READERS = {
    "table": (read_table, "x.txt"),
    "gct": (read_gct, "x.gct"),
    "geo": (read_geo_series_matrix, "GSE1_series_matrix.txt"),
}
VALID = {
    "table": "sample_id\tA\ns1\t1\n",
    "gct": "#1.2\n1\t1\nName\tDescription\ts1\nA\td\t1\n",
    "geo": _geo('"g1"\t1\t2\n'),
}


@pytest.mark.parametrize("kind", list(READERS))
def test_unmatched_quote_names_the_file_and_line(tmp_path, kind):
    reader, name = READERS[kind]
    lines = VALID[kind].splitlines(keepends=True)
    # A quote that never closes swallows every later line into one field, past csv's 131 072-character limit.
    text = "".join(lines[:-1]) + '"' + lines[-1] + "".join(f"filler{i}\t{'x' * 100}\n" for i in range(2000))
    path = _write(tmp_path / name, text)
    with pytest.raises(ValueError, match=rf"line {len(lines)}: a field runs over 131072 characters") as exc:
        reader(path)
    assert str(path) in str(exc.value) and "double quote" in str(exc.value)
    assert exc.value.__cause__ is not None


@pytest.mark.parametrize("kind", list(READERS))
def test_non_utf8_file_names_the_file_and_line(tmp_path, kind):
    reader, name = READERS[kind]
    lines = VALID[kind].splitlines(keepends=True)
    # The text layer decodes ahead of the line being parsed: the error must still say line 2.
    text = lines[0].encode() + lines[1].replace("1", "caf\xe9", 1).encode("latin-1") + "".join(lines[2:]).encode()
    path = _write(tmp_path / name, text)
    with pytest.raises(ValueError, match=r"line 2: not UTF-8 text.*iconv") as exc:
        reader(path)
    assert str(path) in str(exc.value)
    assert isinstance(exc.value.__cause__, UnicodeDecodeError)


def test_utf16_file_is_named_as_such(tmp_path):
    path = _write(tmp_path / "excel.txt", VALID["table"], encoding="utf-16")
    with pytest.raises(ValueError, match=r"excel.txt: the file is UTF-16 text"):
        read_table(path)


@pytest.mark.parametrize("kind", list(READERS))
def test_nul_byte_names_the_file_and_line(tmp_path, kind):
    reader, name = READERS[kind]
    lines = VALID[kind].splitlines(keepends=True)
    path = _write(tmp_path / name, "".join(lines[:-1]) + "\x00" + lines[-1])
    with pytest.raises(ValueError, match=rf"line {len(lines)}: the line holds a NUL byte") as exc:
        reader(path)
    assert str(path) in str(exc.value)


@pytest.mark.parametrize("kind", list(READERS))
def test_truncated_or_fake_gzip_names_the_file(tmp_path, kind):
    reader, name = READERS[kind]
    whole = gzip.compress(VALID[kind].encode())
    truncated = _write(tmp_path / (name + ".gz"), whole[: len(whole) // 2])
    with pytest.raises(ValueError, match="the gzip stream is broken") as exc:
        reader(truncated)
    assert str(truncated) in str(exc.value)
    fake = _write(tmp_path / ("plain_" + name + ".gz"), VALID[kind])
    with pytest.raises(ValueError, match="not gzip-compressed despite its .gz suffix") as exc:
        reader(fake)
    assert str(fake) in str(exc.value)


def test_sample_table_errors_name_the_sample_table(tmp_path):
    expr = _write(tmp_path / "e.csv", "sample_id,A\ns1,1\n")
    samples = _write(tmp_path / "s.csv", "sample_id,site\ns1,M\xfcnchen\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"s.csv, line 2: not UTF-8 text"):
        read_table(expr, sample_table=samples)


def test_missing_file_stays_file_not_found(tmp_path):
    # An OSError that names the file already is what a pandas user expects; it is not rewrapped.
    with pytest.raises(FileNotFoundError, match="nothere.csv"):
        read_table(tmp_path / "nothere.csv")
