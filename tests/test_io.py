import gzip
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from skssl.io import (
    ExpressionData,
    read_archs4,
    read_gct,
    read_geo_series_matrix,
    read_table,
    write_gct,
    write_table,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def data():
    rng = np.random.RandomState(0)
    X = rng.lognormal(3, 2, size=(5, 7)).astype(np.float32)
    X[1, 2] = np.nan
    X[0, 0] = 0.0
    return ExpressionData(
        X,
        genes=[f"GENE{i}" for i in range(6)] + ["HLA-A,1"],  # a comma to quote
        samples=[f"S{i}" for i in range(5)],
        metadata={
            "group": np.array(["a", "b", None, "a", "b"], dtype=object),
            "age": np.array([61.0, np.nan, 45.5, 70.0, 33.0]),
        },
    )


def _write(path, text, compress=False):
    path = Path(path)
    if compress:
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def assert_same(a, b):
    assert_array_equal(a.X, b.X)  # NaN == NaN for assert_array_equal
    assert_array_equal(a.genes, b.genes)
    assert_array_equal(a.samples, b.samples)


# --------------------------------------------------------------------------
# ExpressionData
# --------------------------------------------------------------------------


def test_expression_data_container(data):
    assert data.shape == (5, 7)
    assert data.X.dtype == np.float32
    assert data.genes.dtype == object and isinstance(data.genes[0], str)
    text = repr(data)
    assert "n_samples=5" in text and "n_genes=7" in text and "'group'" in text
    with pytest.raises(ValueError, match="shape"):
        ExpressionData(np.ones((2, 3)), ["a", "b"], ["s1", "s2"])
    with pytest.raises(ValueError, match=r"metadata\['x'\]"):
        ExpressionData(np.ones((1, 1)), ["a"], ["s"], metadata={"x": [1, 2]})


def test_to_frame(data):
    pd = pytest.importorskip("pandas")
    frame = data.to_frame()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == list(data.genes)
    assert list(frame.index) == list(data.samples)
    assert frame.index.name == "sample_id"
    assert_array_equal(frame.to_numpy(), data.X)
    meta = data.metadata_frame()
    assert list(meta.columns) == ["group", "age"]


# --------------------------------------------------------------------------
# Delimited tables
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["expr.csv", "expr.tsv", "expr.csv.gz", "expr.tsv.gz", "expr.txt"])
@pytest.mark.parametrize("orient", ["samples", "genes"])
def test_table_round_trip(tmp_path, data, name, orient):
    path = tmp_path / name
    write_table(data, path, orient=orient)
    if name.endswith(".gz"):
        with gzip.open(path, "rt") as f:
            first = f.readline()
    else:
        first = path.read_text().splitlines()[0]
    assert first.startswith("sample_id" if orient == "samples" else "gene_id")
    back = read_table(path, orient=orient)
    assert_same(back, data)
    assert back.attrs["source"] == str(path)


def test_table_round_trip_with_sample_table(tmp_path, data):
    write_table(data, tmp_path / "x.csv", sample_table=tmp_path / "samples.csv")
    back = read_table(tmp_path / "x.csv", sample_table=tmp_path / "samples.csv", numeric_metadata=True)
    assert_array_equal(back.metadata["group"], data.metadata["group"])
    assert back.metadata["age"].dtype == np.float64
    assert_array_equal(back.metadata["age"], data.metadata["age"])


def test_table_orient_genes_is_transposed(tmp_path):
    path = _write(tmp_path / "g.tsv", "gene\ts1\ts2\ts3\nA\t1\t2\t3\nB\t4\t5\t6\n")
    data = read_table(path, orient="genes")
    assert_array_equal(data.genes, ["A", "B"])
    assert_array_equal(data.samples, ["s1", "s2", "s3"])
    assert_array_equal(data.X, [[1, 4], [2, 5], [3, 6]])


def test_table_missing_values_and_r_style_header(tmp_path):
    # R's write.table omits the id column name from the header.
    path = _write(
        tmp_path / "r.csv",
        '"A","B","C"\n"s1",1,NA,""\n"s2",null,NaN,3e2\n',
    )
    data = read_table(path)
    assert_array_equal(data.genes, ["A", "B", "C"])
    assert_array_equal(data.X, [[1, np.nan, np.nan], [np.nan, np.nan, 300]])


def test_table_sample_table_join(tmp_path):
    expr = _write(tmp_path / "e.csv", "sample_id,A\ns1,1\ns2,2\ns3,3\n")
    samples = _write(
        tmp_path / "s.csv",
        'id,"stage","score"\n'
        's3,"stage ii",1.5\n'
        's1,"stage i",NA\n'
        's9,"stage iv",2\n',  # not in the expression table: ignored
    )
    data = read_table(expr, sample_table=samples, numeric_metadata=["score"])
    assert_array_equal(data.metadata["stage"], ["stage i", None, "stage ii"])
    assert_array_equal(data.metadata["score"], [np.nan, np.nan, 1.5])
    # A different id column.
    samples2 = _write(tmp_path / "s2.csv", "x,sid\n10,s2\n20,s1\n")
    data = read_table(expr, sample_table=samples2, sample_id_column="sid", numeric_metadata=True)
    assert_array_equal(data.metadata["x"], [20.0, 10.0, np.nan])
    with pytest.raises(ValueError, match="sample_id_column='nope'"):
        read_table(expr, sample_table=samples2, sample_id_column="nope")
    with pytest.raises(ValueError, match="none of the 3 sample ids"):
        read_table(expr, sample_table=samples2)


@pytest.mark.parametrize(
    "text, match",
    [
        ("sample_id,A,B\ns1,1,2\ns2,3\n", r"line 3: expected 3 fields .* ragged"),
        ("sample_id,A,B\ns1,1,2,4,5\n", r"line 2: expected 3 fields"),
        ("sample_id,A,A\ns1,1,2\n", r"duplicated gene id 'A' \(line 1, column 2"),
        (
            "gene,A,B\ns1,1,2\ns1,3,4\n",
            r"duplicated sample id 's1' \(line 2 and line 3",
        ),
        (
            "sample_id,A,B\ns1,1,2\ns2,3,high\n",
            r"line 3, column 3 \('B'\): non-numeric",
        ),
        ("s1,1.5,2.25\ns2,3.5,4.75\n", "line 1: the first line looks like data"),
        ("", "empty"),
        ("\n\n", "empty"),
        ("sample_id,A,B\n", "no data rows"),
        ("sample_id\ns1\n", "no gene columns"),
        ("sample_id,A,,C\ns1,1,2,3\n", "column 3: empty gene id"),
    ],
)
def test_table_malformed(tmp_path, text, match):
    path = _write(tmp_path / "bad.csv", text)
    with pytest.raises(ValueError, match=match) as excinfo:
        read_table(path)
    assert str(path) in str(excinfo.value)


def test_table_malformed_gz_and_orient_genes(tmp_path):
    path = _write(tmp_path / "bad.tsv.gz", "gene\ts1\nA\t1\nA\t2\n", compress=True)
    with pytest.raises(ValueError, match=r"bad.tsv.gz: duplicated gene id 'A'"):
        read_table(path, orient="genes")
    with pytest.raises(ValueError, match="orient"):
        read_table(path, orient="rows")


def test_table_integer_gene_ids_are_a_valid_header(tmp_path):
    # Entrez ids are numbers: header=True says the first line is the header (the default refuses it as ambiguous).
    path = _write(tmp_path / "entrez.csv", "sample_id,7157,1956\ns1,1.5,2\n")
    assert_array_equal(read_table(path, header=True).genes, ["7157", "1956"])


# --------------------------------------------------------------------------
# GCT
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["x.gct", "x.gct.gz"])
def test_gct_round_trip(tmp_path, data, name):
    data.gene_metadata["Description"] = np.array(["tumor protein", None, "x", "y", "z", "w", "v"], dtype=object)
    write_gct(data, tmp_path / name)
    back = read_gct(tmp_path / name)
    assert_same(back, data)
    assert back.attrs["gct_version"] == "1.2"
    assert_array_equal(back.gene_metadata["Description"], data.gene_metadata["Description"])


def test_gct_13_round_trip_with_annotations(tmp_path, data):
    data.gene_metadata["chrom"] = np.array(list("1234567"), dtype=object)
    write_gct(data, tmp_path / "x.gct", version="1.3")
    text = (tmp_path / "x.gct").read_text().splitlines()
    assert text[0] == "#1.3"
    assert text[1] == "7\t5\t1\t2"
    back = read_gct(tmp_path / "x.gct", numeric_metadata=True)
    assert_same(back, data)
    assert_array_equal(back.metadata["group"], data.metadata["group"])
    assert_array_equal(back.metadata["age"], data.metadata["age"])
    assert_array_equal(back.gene_metadata["chrom"], np.arange(1.0, 8.0))


def test_gct_reads_handwritten_file(tmp_path):
    path = _write(
        tmp_path / "h.gct",
        "#1.2\n3\t2\nName\tDescription\tA1\tB2\nTP53\ttumor protein p53\t1.5\t2\nEGFR\tna\t\t4\nMYC\tmyc\t5\t6\n",
    )
    data = read_gct(path)
    assert_array_equal(data.genes, ["TP53", "EGFR", "MYC"])
    assert_array_equal(data.samples, ["A1", "B2"])
    assert_array_equal(data.X, [[1.5, np.nan, 5], [2, 4, 6]])
    assert_array_equal(data.gene_metadata["Description"], ["tumor protein p53", None, "myc"])


@pytest.mark.parametrize(
    "text, match",
    [
        ("1.2\n1\t1\nName\tDescription\ts\nA\td\t1\n", "line 1: not a GCT file"),
        ("#1.2\n1\nName\tDescription\ts\nA\td\t1\n", "line 2: expected 2 non-negative"),
        ("#1.2\n1\t2\nName\tDescription\ts\nA\td\t1\n", "dimensions line says 2"),
        (
            "#1.2\n2\t1\nName\tDescription\ts\nA\td\t1\n",
            "says 2 genes but the file has 1",
        ),
        (
            "#1.2\n2\t1\nName\tDescription\ts\nA\td\t1\nA\td\t2\n",
            "duplicated gene id 'A'",
        ),
        ("#1.2\n1\t1\nName\tDescription\ts\nA\td\tabc\n", r"line 4, column 3 \('s'\)"),
        ("#1.2\n1\t2\nName\tDescription\ts\tt\nA\td\t1\n", "line 4: expected 4 fields"),
    ],
)
def test_gct_malformed(tmp_path, text, match):
    path = _write(tmp_path / "bad.gct", text)
    with pytest.raises(ValueError, match=match) as excinfo:
        read_gct(path)
    assert str(path) in str(excinfo.value)


# --------------------------------------------------------------------------
# GEO series matrix
# --------------------------------------------------------------------------


def _geo_text(values=None):
    """A small but realistic GSE series-matrix file."""
    values = values or [
        ['"1007_s_at"', "10.2", "9.8", "11.1"],
        ['"1053_at"', "5.1", "null", "6.0"],
        ['"117_at"', "7.7", "7.9", ""],
        ['"121_at"', "8.0", "8.1", "8.2"],
    ]
    lines = [
        '!Series_title\t"Gene expression in tumour and normal liver"',
        '!Series_geo_accession\t"GSE99999"',
        '!Series_summary\t"First paragraph."',
        '!Series_summary\t"Second paragraph."',
        "",
        '!Sample_title\t"tumour 1"\t"normal 1"\t"tumour 2"',
        '!Sample_geo_accession\t"GSM100"\t"GSM101"\t"GSM102"',
        '!Sample_source_name_ch1\t"liver"\t"liver"\t"liver"',
        '!Sample_characteristics_ch1\t"tissue: tumour"\t"tissue: normal"\t"tissue: tumour"',
        '!Sample_characteristics_ch1\t"age: 61"\t"age: 54"\t""',
        '!Sample_characteristics_ch1\t"Sex: F"\t"Sex: M"\t"treatment: none"',
        '!Sample_data_processing\t"RMA"\t"RMA"\t"RMA"',
        "!series_matrix_table_begin",
        '"ID_REF"\t"GSM100"\t"GSM101"\t"GSM102"',
        *["\t".join(row) for row in values],
        "!series_matrix_table_end",
    ]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("compress", [False, True])
def test_geo_series_matrix(tmp_path, compress):
    name = "GSE99999_series_matrix.txt" + (".gz" if compress else "")
    path = _write(tmp_path / name, _geo_text(), compress=compress)
    data = read_geo_series_matrix(path, numeric_metadata=["age"])
    assert_array_equal(data.samples, ["GSM100", "GSM101", "GSM102"])
    assert_array_equal(data.genes, ["1007_s_at", "1053_at", "117_at", "121_at"])
    assert_array_equal(
        data.X,
        np.array(
            [[10.2, 5.1, 7.7, 8.0], [9.8, np.nan, 7.9, 8.1], [11.1, 6.0, np.nan, 8.2]],
            dtype=np.float32,
        ),
    )
    meta = data.metadata
    assert_array_equal(meta["title"], ["tumour 1", "normal 1", "tumour 2"])
    assert_array_equal(meta["geo_accession"], data.samples)
    assert_array_equal(meta["tissue"], ["tumour", "normal", "tumour"])
    assert_array_equal(meta["age"], [61.0, 54.0, np.nan])
    assert_array_equal(meta["Sex"], ["F", "M", None])
    assert_array_equal(meta["treatment"], [None, None, "none"])
    assert_array_equal(meta["source_name_ch1"], ["liver"] * 3)
    assert data.attrs["series"]["geo_accession"] == "GSE99999"
    assert data.attrs["series"]["summary"] == ["First paragraph.", "Second paragraph."]


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda t: t.replace("!series_matrix_table_end\n", ""), "truncated"),
        (lambda t: t.replace("!series_matrix_table_begin\n", ""), "not a GEO series"),
        (lambda t: t.replace('"ID_REF"', '"ID"'), "must start with 'ID_REF'"),
        (lambda t: t.replace('\t"GSM102"\n', "\n", 1), "has 2 values but the table"),
        (
            lambda t: t.replace('"GSM102"\n"1007', '"GSM103"\n"1007'),
            "does not list the same",
        ),
        (
            lambda t: t.replace("\t8.2", "\tabc"),
            r"line \d+, column 4 \('GSM102'\): non-numeric",
        ),
        (lambda t: t.replace('"121_at"', '"117_at"'), "duplicated gene id '117_at'"),
        (lambda t: t.replace("\t8.1\t8.2", "\t8.1"), "ragged"),
    ],
)
def test_geo_malformed(tmp_path, mutate, match):
    text = mutate(_geo_text())
    assert text != _geo_text()
    path = _write(tmp_path / "GSE1_series_matrix.txt", text)
    with pytest.raises(ValueError, match=match):
        read_geo_series_matrix(path)


# --------------------------------------------------------------------------
# ARCHS4
# --------------------------------------------------------------------------


@pytest.fixture
def archs4_file(tmp_path):
    h5py = pytest.importorskip("h5py")
    rng = np.random.RandomState(0)
    n_genes, n_samples = 50, 30
    counts = rng.poisson(20, size=(n_genes, n_samples)).astype(np.uint32)
    symbols = [f"G{i}" for i in range(n_genes)]
    symbols[10] = "G3"  # ARCHS4 has a few duplicated symbols
    accessions = [f"GSM{1000 + j}" for j in range(n_samples)]
    path = tmp_path / "human_gene_v2.latest.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data/expression", data=counts, chunks=(10, 5))
        f.create_dataset("meta/genes/symbol", data=np.array(symbols, dtype="S"))
        f.create_dataset(
            "meta/genes/ensembl_gene_id",
            data=np.array([f"ENSG{i:05d}" for i in range(n_genes)], dtype="S"),
        )
        str_dt = h5py.string_dtype()
        f.create_dataset(
            "meta/samples/geo_accession",
            data=np.array(accessions, dtype=object),
            dtype=str_dt,
        )
        f.create_dataset(
            "meta/samples/series_id",
            data=np.array([f"GSE{j // 10}" for j in range(n_samples)], dtype=object),
            dtype=str_dt,
        )
        f.create_dataset("meta/samples/readsaligned", data=np.arange(n_samples) * 100)
    return path, counts, symbols, accessions


def test_archs4_subset(archs4_file):
    path, counts, symbols, accessions = archs4_file
    data = read_archs4(path, samples=["GSM1020", "GSM1003", "GSM1011"], genes=["G5", "G40", "G1"])
    assert data.shape == (3, 3)
    assert data.X.dtype == np.float32
    assert_array_equal(data.samples, ["GSM1020", "GSM1003", "GSM1011"])
    assert_array_equal(data.genes, ["G5", "G40", "G1"])
    assert_array_equal(data.X, counts[np.ix_([5, 40, 1], [20, 3, 11])].T)
    assert_array_equal(data.metadata["series_id"], ["GSE2", "GSE0", "GSE1"])
    assert_array_equal(data.metadata["readsaligned"], [2000, 300, 1100])
    assert_array_equal(data.gene_metadata["ensembl_gene_id"], ["ENSG00005", "ENSG00040", "ENSG00001"])
    assert "geo_accession" not in data.metadata


def test_archs4_duplicated_symbols_are_summed_and_max_samples(archs4_file):
    path, counts, symbols, accessions = archs4_file
    data = read_archs4(path, max_samples=4)
    assert_array_equal(data.samples, accessions[:4])
    assert len(data.genes) == 49 and len(set(data.genes)) == 49
    g3 = list(data.genes).index("G3")
    assert_array_equal(data.X[:, g3], counts[3, :4] + counts[10, :4])
    assert_array_equal(data.X[:, list(data.genes).index("G4")], counts[4, :4])
    # Integer positions work as sample selectors too.
    by_index = read_archs4(path, samples=[7, 2], genes=["G3"])
    assert_array_equal(by_index.X[:, 0], counts[3, [7, 2]] + counts[10, [7, 2]])


def test_archs4_reads_only_the_requested_block(archs4_file, monkeypatch):
    h5py = pytest.importorskip("h5py")
    path = archs4_file[0]
    reads = []
    original = h5py.Dataset.__getitem__

    def spy(self, key):
        out = original(self, key)
        if self.name == "/data/expression":
            reads.append(np.asarray(out).size)
        return out

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    read_archs4(path, samples=["GSM1001", "GSM1002"], genes=["G0", "G1"])
    assert sum(reads) <= 2 * 2 * 2  # never the whole 50 x 30 matrix


def test_archs4_errors(archs4_file, tmp_path):
    path = archs4_file[0]
    with pytest.raises(ValueError, match=r"1 requested sample\(s\) not in the file, e.g. \['GSM1'\]"):
        read_archs4(path, samples=["GSM1000", "GSM1"])
    with pytest.raises(ValueError, match="gene"):
        read_archs4(path, genes=["NOPE"])
    with pytest.raises(ValueError, match="duplicates"):
        read_archs4(path, samples=["GSM1000", "GSM1000"])
    with pytest.raises(ValueError, match="max_samples"):
        read_archs4(path, max_samples=0)
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("x", data=[1])
    with pytest.raises(ValueError, match="not an ARCHS4 file"):
        read_archs4(tmp_path / "other.h5")


# --------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------


@pytest.mark.data
def test_read_shared_tcga_acc():
    expr = SHARED_DATA / "tcga_acc.RNASeq2GeneNorm.expression.csv.gz"
    samples = SHARED_DATA / "tcga_acc.RNASeq2GeneNorm.samples.csv"
    if not expr.is_file() or not samples.is_file():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    data = read_table(expr, sample_table=samples, numeric_metadata=["years_to_birth"])
    assert data.shape == (79, 198)  # as in the data README
    assert data.samples[0].startswith("TCGA-")
    assert np.all(np.isfinite(data.X)) and data.X.min() >= 0
    labels = data.metadata["C1A.C1B"]
    assert set(labels[labels != None]) == {"C1A", "C1B"}  # noqa: E711
    assert data.metadata["years_to_birth"].dtype == np.float64
