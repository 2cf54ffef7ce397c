"""The path from a public compendium (ARCHS4 HDF5) to a user's cohort, on small files in the real formats.

An HDF5 file with the ARCHS4 v2 layout (genes x samples uint32 counts, gzip-compressed and chunked; gene symbols,
Ensembl ids and biotypes; accession, series and single-cell probability per sample) is written with h5py, and a
cohort count table as a CSV whose genes are versioned Ensembl ids in another order, with partial overlap and a
duplicated gene. The tests check the streaming reader (block reads along the chunking, bounded, in file order),
the sample and gene selection, GeneAligner's id normalisation and duplicate handling, and the whole path:
read -> LogCPM -> align -> pre-train -> save_model -> load_model -> SSLClassifier(prefit=True) -> predict.
"""

import re
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from skssl import GeneAligner, LogCPM, MaskedAutoencoder, SSLClassifier, load_model, make_expression, save_model
from skssl.io import read_archs4, read_table

h5py = pytest.importorskip("h5py")
pd = pytest.importorskip("pandas")

N_GENES, N_SAMPLES = 40, 90
CHUNKS = (16, 10)  # genes x samples per chunk, as ARCHS4 chunks its matrix along both axes


@pytest.fixture(scope="module")
def compendium(tmp_path_factory):
    """``(path, counts (genes x samples), symbols, ensembl ids, y, series)`` of a small ARCHS4-layout file."""
    counts, y, info = make_expression(
        n_samples=N_SAMPLES, n_genes=N_GENES, n_batches=3, output="counts", return_info=True, random_state=0
    )
    counts = counts.T.astype(np.uint32)
    symbols = np.array([f"GENE{i}" for i in range(N_GENES)], dtype=object)
    symbols[7] = "GENE3"  # ARCHS4 names a few thousand genes by a symbol that another row has too
    symbols[8] = "gene5"  # and case differs between sources
    ensembl = np.array([f"ENSG{i:011d}" for i in range(N_GENES)], dtype=object)
    biotype = np.where(np.arange(N_GENES) % 10 == 9, "lncRNA", "protein_coding").astype(object)
    accessions = np.array([f"GSM{5000 + j}" for j in range(N_SAMPLES)], dtype=object)
    series = np.array([f"GSE{10 + j // 15}" for j in range(N_SAMPLES)], dtype=object)
    series[45] = "GSE13,GSE99"  # a sample of a super-series lists both series
    single_cell = np.where(np.arange(N_SAMPLES) % 30 == 29, 0.9, 0.05)
    path = tmp_path_factory.mktemp("archs4") / "human_gene_v2.latest.h5"
    strings = h5py.string_dtype()
    with h5py.File(path, "w") as f:
        f.create_dataset("data/expression", data=counts, chunks=CHUNKS, compression="gzip", compression_opts=4)
        f.create_dataset("meta/genes/symbol", data=symbols, dtype=strings)
        f.create_dataset("meta/genes/ensembl_gene", data=ensembl, dtype=strings)
        f.create_dataset("meta/genes/biotype", data=biotype, dtype=strings)
        f.create_dataset("meta/samples/geo_accession", data=accessions.astype("S"))  # fixed-length bytes, too
        f.create_dataset("meta/samples/series_id", data=series, dtype=strings)
        f.create_dataset("meta/samples/singlecellprobability", data=single_cell)
        f.create_dataset("meta/samples/readsaligned", data=counts.sum(axis=0))
        f.create_dataset(
            "meta/samples/title", data=np.array([f"sample {j}" for j in range(N_SAMPLES)], dtype=object), dtype=strings
        )
    return path, counts, symbols, ensembl, y, series


def _spy_reads(monkeypatch):
    """Record the (rows, columns) key of every read of data/expression."""
    reads = []
    original = h5py.Dataset.__getitem__

    def spy(self, key):
        if self.name == "/data/expression":
            reads.append(key)
        return original(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    return reads


def _columns(key):
    cols = key[1]
    return np.arange(cols.start, cols.stop) if isinstance(cols, slice) else np.asarray(cols)


# --------------------------------------------------------------------------
# Streaming


def test_reads_stream_in_chunk_aligned_blocks_of_samples(compendium, monkeypatch):
    path, counts, *_ = compendium
    reads = _spy_reads(monkeypatch)
    # A budget of one chunk width: every read must stay within one block of 10 samples.
    data = read_archs4(path, max_block_mb=1e-6)
    assert_array_equal(data.samples[:3], ["GSM5000", "GSM5001", "GSM5002"])
    blocks = [np.unique(_columns(key) // CHUNKS[1]) for key in reads]
    assert all(len(b) == 1 for b in blocks), "a read crossed a chunk boundary along the samples"
    order = [int(b[0]) for b in blocks]
    assert order == sorted(order) and sorted(set(order)) == list(range(N_SAMPLES // CHUNKS[1]))
    # Each read holds at most all the genes of one block of samples: memory is bounded by the block.
    assert max((key[0].stop - key[0].start) * len(_columns(key)) for key in reads) <= N_GENES * CHUNKS[1]
    # The values: rows with the same (case-insensitive) symbol summed, in file order of first occurrence.
    genes = list(data.genes)
    assert "gene5" not in genes and len(genes) == N_GENES - 2
    assert_array_equal(data.X[:, genes.index("GENE3")], counts[3] + counts[7])
    assert_array_equal(data.X[:, genes.index("GENE5")], counts[5] + counts[8])
    assert_array_equal(data.X[:, genes.index("GENE0")], counts[0])


def test_scattered_samples_of_one_block_take_one_read(compendium, monkeypatch):
    path, counts, *_ = compendium
    reads = _spy_reads(monkeypatch)
    data = read_archs4(path, samples=[40, 3, 77], genes=["GENE12", "GENE1"])
    assert_array_equal(data.X, counts[np.ix_([12, 1], [40, 3, 77])].T)
    # With the default budget the 90 samples make one block, and rows 1..12 one run: a single read, of the 3
    # requested columns only, in file order (the output is put back in the requested order).
    assert len(reads) == 1 and sorted(_columns(reads[0]).tolist()) == [3, 40, 77]


def test_transform_per_block_and_out_npy(compendium, tmp_path):
    path, counts, *_ = compendium
    in_memory = read_archs4(path, genes=["GENE2", "GENE0", "GENE30"])
    streamed = read_archs4(
        path,
        genes=["GENE2", "GENE0", "GENE30"],
        transform=LogCPM().fit_transform,
        out=tmp_path / "pool.npy",
        max_block_mb=1e-6,
    )
    assert_allclose(streamed.X, LogCPM().fit_transform(in_memory.X), rtol=1e-6)
    on_disk = np.load(tmp_path / "pool.npy", mmap_mode="r")
    assert on_disk.shape == (N_SAMPLES, 3) and on_disk.dtype == np.float32
    assert_array_equal(on_disk, streamed.X)
    with pytest.raises(ValueError, match="transform returned shape"):
        read_archs4(path, genes=["GENE2"], transform=lambda block: block[:, :0])
    with pytest.raises(TypeError, match="transform must be a callable"):
        read_archs4(path, genes=["GENE2"], transform=LogCPM())


# --------------------------------------------------------------------------
# Choosing samples and genes


def test_samples_by_series_count_and_single_cell_probability(compendium):
    path, counts, symbols, ensembl, y, series = compendium
    by_series = read_archs4(path, series=["GSE11", "GSE99"], genes=["GENE0"])
    expected = [j for j in range(N_SAMPLES) if {"GSE11", "GSE99"} & set(series[j].split(","))]
    assert_array_equal(by_series.samples, [f"GSM{5000 + j}" for j in expected])
    assert_array_equal(by_series.metadata["series_id"], series[expected])
    assert_array_equal(by_series.X[:, 0], counts[0, expected])

    bulk = read_archs4(path, max_singlecell_probability=0.5, genes=["GENE0"], sample_fields=["title"])
    assert bulk.n_samples == N_SAMPLES - 3 and set(bulk.metadata) == {"title", "series_id"}

    capped = read_archs4(path, max_per_series=4, genes=["GENE0"])
    assert max(np.unique(capped.metadata["series_id"], return_counts=True)[1]) == 4
    drawn = read_archs4(path, max_samples=12, random_state=0, genes=["GENE0"])
    again = read_archs4(path, max_samples=12, random_state=0, genes=["GENE0"])
    assert_array_equal(drawn.samples, again.samples)
    assert list(drawn.samples) != [f"GSM{5000 + j}" for j in range(12)]  # a draw, not the first 12
    assert list(drawn.samples) == sorted(drawn.samples)  # kept in file order: sequential reads

    with pytest.raises(ValueError, match=re.escape("1 requested series not in the file, e.g. ['GSE404']")):
        read_archs4(path, series=["GSE10", "GSE404"])
    with pytest.raises(ValueError, match="max_per_series must be a positive int"):
        read_archs4(path, max_per_series=0)


def test_genes_by_ensembl_id_biotype_and_missing(compendium):
    path, counts, symbols, ensembl, *_ = compendium
    requested = ["ENSG00000000004.7", "ensg00000000002", "ENSG00000000019.1", "ENSG99999999999.1"]
    with pytest.warns(UserWarning, match=r"2 of 4 requested genes are not in the file with biotype"):
        data = read_archs4(path, genes=requested, gene_id="ensembl", biotypes=["protein_coding"], missing_genes="drop")
    # Bare ids come back; GENE19 (lncRNA) and an unknown id are left out.
    assert_array_equal(data.genes, ["ENSG00000000004", "ENSG00000000002"])
    assert_array_equal(data.X, counts[[4, 2]].T)
    assert_array_equal(data.gene_metadata["symbol"], ["GENE4", "GENE2"])
    with pytest.raises(ValueError, match="missing_genes='drop'"):
        read_archs4(path, genes=requested, gene_id="ensembl")
    with pytest.raises(ValueError, match="gene_id must be 'symbol' or 'ensembl'"):
        read_archs4(path, gene_id="entrez")


# --------------------------------------------------------------------------
# GeneAligner: identifiers from different pipelines


def test_aligner_normalises_ensembl_versions_and_symbol_case():
    cohort = pd.DataFrame(
        [[1.0, 2.0, 3.0]], columns=["ENSG00000000002.5", " ENSG00000000001.1", "ENSG00000000007_PAR_Y"]
    )
    target = ["ENSG00000000001", "ENSG00000000002", "ENSG00000000007.3"]
    # Compared as given, nothing matches: the error names the fix.
    with pytest.raises(ValueError, match="None of the 3 target genes.*pass match_ids='normalized'"):
        GeneAligner(genes=target).fit(cohort)
    aligner = GeneAligner(genes=target, match_ids="normalized").fit(cohort)
    assert_array_equal(aligner.genes_, ["ENSG00000000001", "ENSG00000000002", "ENSG00000000007"])
    assert_array_equal(aligner.transform(cohort), [[2.0, 1.0, 3.0]])
    symbols = pd.DataFrame([[1.0, 2.0]], columns=["c1orf112", "TP53"])
    by_symbol = GeneAligner(genes=["TP53", "C1orf112"], match_ids="normalized").fit(symbols)
    assert_array_equal(by_symbol.transform(symbols), [[2.0, 1.0]])
    assert_array_equal(by_symbol.get_feature_names_out(), ["TP53", "C1orf112"])


def test_aligner_combines_duplicated_genes_with_a_warning():
    counts = pd.DataFrame(
        [[1.0, 2.0, 5.0, 7.0], [0.0, 4.0, 6.0, 1.0]],
        columns=["ENSG00000000001.1", "ENSG00000000002.1", "ENSG00000000002.2", "ENSG00000000003.1"],
    )
    with pytest.raises(ValueError, match=r"duplicated genes once normalised.*duplicates='sum'"):
        GeneAligner(match_ids="normalized").fit(counts)
    with pytest.warns(UserWarning, match=re.escape("X names 1 gene(s) on several columns (1 extra column(s)")):
        summed = GeneAligner(match_ids="normalized", duplicates="sum").fit(counts)
    assert_array_equal(summed.genes_, ["ENSG00000000001", "ENSG00000000002", "ENSG00000000003"])
    with pytest.warns(UserWarning, match="summed"):
        assert_array_equal(summed.transform(counts), [[1.0, 7.0, 7.0], [0.0, 10.0, 1.0]])
    with pytest.warns(UserWarning, match="averaged"):
        averaged = GeneAligner(match_ids="normalized", duplicates="mean").fit(counts)
    with pytest.warns(UserWarning, match="averaged"):
        assert_array_equal(averaged.transform(counts), [[1.0, 3.5, 7.0], [0.0, 5.0, 1.0]])
    # Exactly repeated column names are combined the same way without normalisation.
    repeated = counts.set_axis(["A", "B", "B", "C"], axis=1)
    with pytest.warns(UserWarning, match="summed"):
        assert_array_equal(GeneAligner(duplicates="sum").fit_transform(repeated), [[1.0, 7.0, 7.0], [0.0, 10.0, 1.0]])


def test_aligner_says_when_ids_and_symbols_meet():
    aligner = GeneAligner(genes=["TP53", "EGFR"]).fit(pd.DataFrame([[1.0, 2.0]], columns=["TP53", "EGFR"]))
    ids = pd.DataFrame([[1.0, 2.0]], columns=["ENSG00000141510.17", "ENSG00000146648.18"])
    with pytest.raises(ValueError, match="Ensembl id and the other by symbol"):
        aligner.transform(ids)


# --------------------------------------------------------------------------
# The whole path


def test_compendium_to_cohort_end_to_end(compendium, tmp_path):
    path, counts, symbols, ensembl, y, series = compendium
    # The cohort: versioned Ensembl ids (as GENCODE-based pipelines write them) in another order, 5 of the
    # compendium's genes absent, 6 genes the compendium lacks, and one gene split over two columns (its chrY copy,
    # GENCODE's _PAR_Y). Its first 10 samples have the counts of the compendium's first 10.
    rng = np.random.default_rng(1)
    kept = rng.permutation(N_GENES)[: N_GENES - 5]
    cohort_counts = np.hstack([counts[:, :10], counts[:, 60:]]).T.astype(np.float64)[:, kept]
    table = pd.DataFrame(cohort_counts, columns=[f"{ensembl[g]}.{1 + g % 4}" for g in kept])
    split = table.columns[0]
    table[f"{split.split('.')[0]}_PAR_Y"] = np.floor(table[split] / 2)
    table[split] -= table[f"{split.split('.')[0]}_PAR_Y"]
    for i in range(6):
        table[f"ENSG0000900000{i}.1"] = rng.poisson(30, size=len(table)).astype(float)
    table.index = pd.Index([f"patient{i}" for i in range(len(table))], name="sample_id")
    table.to_csv(tmp_path / "cohort.csv")
    labels = np.array([f"class{c}" for c in np.r_[y[:10], y[60:]]], dtype=object)  # as read from a label CSV
    labels[1::2] = None  # half of the cohort is unlabeled

    # 1. the cohort, its genes (ids normalised, the PAR_Y copy summed into its gene)
    cohort = read_table(tmp_path / "cohort.csv").to_frame()
    with pytest.warns(UserWarning, match="summed"):
        genes = GeneAligner(match_ids="normalized", duplicates="sum").fit(cohort).genes_
    assert len(genes) == N_GENES - 5 + 6 and not any("." in g or "PAR" in g for g in genes)
    # 2. the pool: the cohort's protein-coding genes, streamed, log-CPM per block, into a .npy file
    with pytest.warns(UserWarning, match="left out"):
        pool = read_archs4(
            path,
            genes=genes,
            gene_id="ensembl",
            biotypes=["protein_coding"],
            missing_genes="drop",
            max_samples=60,
            max_singlecell_probability=0.5,
            transform=LogCPM().fit_transform,
            out=tmp_path / "pool.npy",
            max_block_mb=1e-6,
        )
    # The first 60 samples below the single-cell cut (29 and 59 are above it); their studies come along.
    selected = [j for j in range(62) if j not in (29, 59)]
    assert_array_equal(pool.samples, [f"GSM{5000 + j}" for j in selected])
    assert_array_equal(pool.metadata["series_id"], series[selected])
    assert set(pool.genes) <= set(genes) and pool.n_genes == len([g for g in kept if g % 10 != 9])
    assert pool.gene_metadata["biotype"].tolist() == ["protein_coding"] * pool.n_genes
    # 3. the cohort aligned onto the pool's genes, log-CPM over the same genes
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*on several columns", category=UserWarning)
        aligner = GeneAligner(genes=pool.genes, match_ids="normalized", duplicates="sum").fit(cohort)
        X_cohort = LogCPM().fit_transform(aligner.transform(cohort))
    # Consistent normalisation: a cohort sample with an ARCHS4 sample's counts gets that sample's profile.
    assert_allclose(X_cohort[:10], np.asarray(pool.X)[:10], rtol=1e-5, atol=1e-5)
    # 4. pre-train on the memory-mapped pool, save, load
    X_pool = np.load(tmp_path / "pool.npy", mmap_mode="r")
    embedder = MaskedAutoencoder(n_components=4, hidden_dims=(16,), max_epochs=2, random_state=0).fit(X_pool)
    save_model(embedder, tmp_path / "embedder.skssl")
    loaded = load_model(tmp_path / "embedder.skssl")
    assert_allclose(loaded.transform(X_cohort), embedder.transform(X_cohort), rtol=1e-5, atol=1e-6)
    # 5. the classifier on the cohort, from the pre-trained embedder
    clf = SSLClassifier(loaded, prefit=True, random_state=0).fit(X_cohort, labels)
    # prefit: the pre-trained embedder is an ensemble member as it is, not re-fitted on the cohort.
    assert "embedding" in clf.weights_
    assert_array_equal(clf.embedder_.transform(X_cohort), loaded.transform(X_cohort))
    predictions = clf.predict(X_cohort)
    assert predictions.shape == (len(table),) and set(predictions) <= {"class0", "class1", "class2"}
