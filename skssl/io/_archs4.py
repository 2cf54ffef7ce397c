"""Subsets of ARCHS4 HDF5 expression files, streamed in blocks of samples (needs h5py).

The layout relied on (ARCHS4 v2 gene-level files, ``human_gene_v2.x.h5`` / ``mouse_gene_v2.x.h5``):

- ``data/expression``: the counts, genes x samples, unsigned integers, a chunked (gzip-compressed) dataset;
- ``meta/genes/symbol`` (``meta/genes/gene_symbol`` in releases before v2.2) and ``meta/genes/ensembl_gene`` (or
  ``meta/genes/ensembl_gene_id``), one entry per row; ``meta/genes/biotype`` where present;
- ``meta/samples/geo_accession``, one per column, and other per-sample fields (``series_id``,
  ``singlecellprobability``, ``readsaligned``, ``title``, ...) of the same length.

Nothing is assumed about the chunk shape: it is read from the file (``dataset.chunks``). Samples are read in blocks
whose edges are chunk edges, in file order, and genes in runs of whole chunk heights, so that no read straddles two
blocks and each compressed chunk is decompressed once per pass (HDF5 decompresses whole chunks whatever is read).
"""

# License: BSD-3-Clause

import warnings
from numbers import Integral, Real
from pathlib import Path

import numpy as np

from .._gene_aligner import _display_id, _gene_key
from ._container import ExpressionData

# The per-gene identifier fields of ARCHS4 files, by kind, newest name first.
_GENE_ID_KEYS = {
    "symbol": ("meta/genes/symbol", "meta/genes/gene_symbol"),
    "ensembl": ("meta/genes/ensembl_gene", "meta/genes/ensembl_gene_id"),
}
_SERIES_KEY = "meta/samples/series_id"
_SINGLE_CELL_KEY = "meta/samples/singlecellprobability"
_BIOTYPE_KEY = "meta/genes/biotype"
# HDF5's chunk cache per open dataset; h5py's default (1 MiB) is smaller than one ARCHS4 chunk of many genes.
_CHUNK_CACHE_BYTES = 64 * 2**20


def _import_h5py(what):
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - depends on environment
        raise ImportError(f"{what} requires h5py: pip install skssl[io]") from exc
    return h5py


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
            raise ValueError(f"{path}: {what} index {index[bad][0]} is out of range (0..{len(available) - 1}).")
    else:
        position = {}
        for i, name in enumerate(available):
            position.setdefault(name, i)
        index = np.array([position.get(str(r), -1) for r in requested], dtype=np.intp)
        if (index < 0).any():
            missing = [str(r) for r in requested[index < 0][:5]]
            raise ValueError(f"{path}: {int((index < 0).sum())} requested {what}(s) not in the file, e.g. {missing}.")
    if len(np.unique(index)) != len(index):
        raise ValueError(f"{path}: the requested {what}s contain duplicates.")
    return index


def _index_key(index):
    """A slice for a contiguous sorted index (much faster in h5py), else it."""
    if index.size and index[-1] - index[0] + 1 == index.size:
        return slice(int(index[0]), int(index[-1]) + 1)
    return index


def _read_columns(dataset, rows, cols, row_block):
    """``dataset[rows][:, cols]`` as float32, reading only the row blocks that hold needed rows.

    `rows` and `cols` must be sorted and unique. h5py allows one index list per read, so rows are read as
    contiguous slices (one per block of `row_block` rows, a multiple of the chunk height) and columns as a slice
    when they are contiguous, else as an index list.
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


def _read_1d(dataset, positions, block):
    """``dataset[positions]`` (sorted positions) read one block of the sample axis at a time."""
    parts = []
    for lo, hi, sel in _blocks(positions, block):
        parts.append(dataset[lo:hi][positions[sel] - lo])
    return np.concatenate(parts) if parts else dataset[:0]


def _blocks(positions, block):
    """``(lo, hi, selection)`` for each block ``[k * block, (k + 1) * block)`` of the file that holds some of the
    sorted `positions`; ``positions[selection]`` are those in it, and ``lo, hi`` the span they cover."""
    block_id = positions // block
    starts = np.flatnonzero(np.r_[True, block_id[1:] != block_id[:-1]]) if positions.size else []
    ends = np.r_[starts[1:], positions.size] if positions.size else []
    for start, end in zip(starts, ends):
        yield int(positions[start]), int(positions[end - 1]) + 1, slice(int(start), int(end))


def _first_key(f, keys):
    return next((k for k in keys if k in f), None)


def _read_ids(f, path, gene_id):
    """``(expression dataset, gene id key, gene ids, sample accessions)`` of an open ARCHS4 file, checked for the
    ARCHS4 layout."""
    for required in ("data/expression", "meta/samples/geo_accession"):
        if required not in f:
            raise ValueError(f"{path}: not an ARCHS4 file (no '{required}').")
    expression = f["data/expression"]
    id_key = _first_key(f, _GENE_ID_KEYS[gene_id])
    if id_key is None:
        fields = sorted(f["meta/genes"].keys()) if "meta/genes" in f else []
        names = " or ".join(repr(k) for k in _GENE_ID_KEYS[gene_id])
        raise ValueError(
            f"{path}: not an ARCHS4 file with gene_id={gene_id!r} (no {names}; its meta/genes fields: {fields})."
        )
    gene_ids = _decode(f[id_key][()])
    accessions = _decode(f["meta/samples/geo_accession"][()])
    if expression.ndim != 2 or expression.shape != (len(gene_ids), len(accessions)):
        raise ValueError(
            f"{path}: data/expression has shape {expression.shape} but there "
            f"are {len(gene_ids)} genes and {len(accessions)} samples (ARCHS4 stores genes x samples)."
        )
    return expression, id_key, gene_ids, accessions


def _series_lists(values):
    """Each sample's series: GEO gives a sample in a super-series several ids, comma-separated."""
    return [{s.strip() for s in str(v).split(",") if s.strip()} for v in values]


def _field(f, key, n_samples, path, why):
    if key not in f:
        raise ValueError(f"{path}: {why} needs '{key}', which this file lacks.")
    values = f[key][()]
    if values.shape != (n_samples,):
        raise ValueError(f"{path}: '{key}' has shape {values.shape}, expected ({n_samples},).")
    return _decode(values)


def _take(cols, n, rng):
    """The first `n` of `cols`, or `n` drawn at random (kept in their order) when a generator is given."""
    if n is None or len(cols) <= n:
        return cols
    if rng is None:
        return cols[:n]
    return cols[np.sort(rng.choice(len(cols), size=n, replace=False))]


def _select_samples(
    f, samples, accessions, path, *, series, max_per_series, max_singlecell_probability, max_samples, rng
):
    """File columns of the selected samples, in the order wanted (requested order, else file order)."""
    n_samples = len(accessions)
    cols = np.arange(n_samples) if samples is None else _lookup(samples, accessions, "sample", path)
    series_of = None
    if series is not None or max_per_series is not None:
        series_of = _field(f, _SERIES_KEY, n_samples, path, "choosing samples by series")
    if series is not None:
        wanted = {str(s).strip() for s in np.atleast_1d(np.asarray(series, dtype=object))}
        per_sample = _series_lists(series_of[cols])
        found = set().union(*per_sample) if per_sample else set()
        absent = sorted(wanted - found)
        if absent:
            raise ValueError(f"{path}: {len(absent)} requested series not in the file, e.g. {absent[:5]}.")
        cols = cols[np.array([bool(s & wanted) for s in per_sample], dtype=bool)]
    if max_singlecell_probability is not None:
        probability = _field(f, _SINGLE_CELL_KEY, n_samples, path, "max_singlecell_probability")
        probability = np.asarray(probability, dtype=np.float64)[cols]
        cols = cols[probability <= max_singlecell_probability]
    if max_per_series is not None:
        keep = np.zeros(len(cols), dtype=bool)
        by_series = {}
        for i, value in enumerate(series_of[cols]):
            by_series.setdefault(value, []).append(i)
        for members in by_series.values():
            keep[_take(np.asarray(members), max_per_series, rng)] = True
        cols = cols[keep]
    cols = _take(cols, max_samples, rng)
    if cols.size == 0:
        raise ValueError(f"{path}: no sample is left after the selection (samples, series, single-cell filter).")
    return cols


def _select_genes(f, genes, gene_ids, path, *, biotypes, missing_genes):
    """``(out_genes, first_row, file_rows, groups)``: the output genes, the first file row of each, and the sorted
    file rows to read with the output gene each one is summed into (ARCHS4 names some genes on several rows)."""
    keys = np.array([_gene_key(g) for g in gene_ids], dtype=object)
    usable = keys != ""  # rows without an id cannot be matched to anything
    if biotypes is not None:
        biotype = _field(f, _BIOTYPE_KEY, len(gene_ids), path, "biotypes")
        usable &= np.isin(biotype, np.asarray(list(np.atleast_1d(biotypes)), dtype=object))
    first_row_of = {}
    for row in np.flatnonzero(usable):
        first_row_of.setdefault(keys[row], row)
    if genes is None:
        out_keys = list(first_row_of)  # file order of first occurrence
    else:
        requested = np.asarray(genes, dtype=object).ravel()
        requested_keys = [_gene_key(g) for g in requested]
        if len(set(requested_keys)) != len(requested_keys):
            raise ValueError(f"{path}: the requested genes contain duplicates (ids compared without version or case).")
        absent = [str(g) for g, k in zip(requested, requested_keys) if k not in first_row_of]
        if absent:
            where = "in the file" if biotypes is None else f"in the file with biotype in {list(biotypes)}"
            message = f"{path}: {len(absent)} of {len(requested)} requested genes are not {where}, e.g. {absent[:5]}"
            if missing_genes == "raise":
                raise ValueError(f"{message}. Pass missing_genes='drop' to read the others.")
            warnings.warn(f"{message}; they are left out (missing_genes='drop').", UserWarning, stacklevel=3)
        out_keys = [k for k in requested_keys if k in first_row_of]
        if not out_keys:
            raise ValueError(f"{path}: none of the {len(requested)} requested genes is in the file.")
    group_of = {key: k for k, key in enumerate(out_keys)}
    first_row = np.array([first_row_of[key] for key in out_keys], dtype=np.intp)
    file_rows = np.array([row for row in np.flatnonzero(usable) if keys[row] in group_of], dtype=np.intp)
    groups = np.array([group_of[keys[row]] for row in file_rows], dtype=np.intp)
    out_genes = np.array([_display_id(gene_ids[row]) for row in first_row], dtype=object)
    return out_genes, first_row, file_rows, groups


def _block_width(expression, n_rows, n_genes, row_block, max_block_mb):
    """Samples per block: a whole number of chunk widths, sized so that one block's arrays fit in `max_block_mb`."""
    chunk_width = expression.chunks[1] if expression.chunks else 1
    # float32 rows read, the summed genes, the transformed copy and h5py's buffer of one row block.
    bytes_per_sample = 4 * (n_rows + 2 * n_genes + min(row_block, expression.shape[0]))
    width = int(max_block_mb * 2**20 // max(bytes_per_sample, 1))
    return max(chunk_width, width // chunk_width * chunk_width)


def _stream_counts(expression, file_rows, groups, n_genes, col_sorted, *, block, row_block, transform):
    """Yield ``(selection, values)`` per block of samples: ``values`` (samples x genes, float32) holds the
    samples ``col_sorted[selection]``, rows of one gene summed, `transform` applied."""
    # Most genes are on one row: those rows are copied, only the few repeated ones added.
    once = np.zeros(len(groups), dtype=bool)
    once[np.unique(groups, return_index=True)[1]] = True
    for _, _, sel in _blocks(col_sorted, block):
        counts = _read_columns(expression, file_rows, col_sorted[sel], row_block)
        summed = np.empty((n_genes, counts.shape[1]), dtype=np.float32)
        summed[groups[once]] = counts[once]
        if not once.all():
            np.add.at(summed, groups[~once], counts[~once])
        summed = summed.T
        values = summed if transform is None else transform(np.ascontiguousarray(summed))
        values = np.asarray(values)
        if values.shape != summed.shape:
            raise ValueError(
                f"transform returned shape {values.shape} for a block of shape {summed.shape}: it must keep one "
                "row per sample and one column per gene (e.g. LogCPM().fit_transform)."
            )
        yield sel, values


def _allocate(out, shape):
    if out is None:
        return np.empty(shape, dtype=np.float32)
    if isinstance(out, np.ndarray):
        if out.shape != shape or out.dtype != np.float32:
            raise ValueError(f"out has shape {out.shape} and dtype {out.dtype}; expected {shape} float32.")
        return out
    return np.lib.format.open_memmap(Path(out), mode="w+", dtype=np.float32, shape=shape)


def _sample_metadata(f, h5py, accessions, cols, col_sorted, fields, block, path):
    """The requested (default: all) ``meta/samples`` fields, for the selected samples, in output order."""
    group = f["meta/samples"]
    if fields is None:
        fields = [k for k in group if k != "geo_accession"]
    else:
        fields = [str(k) for k in np.atleast_1d(np.asarray(fields, dtype=object))]
        absent = [k for k in fields if k not in group]
        if absent:
            raise ValueError(f"{path}: no meta/samples field {absent} (fields: {sorted(group.keys())}).")
        if "series_id" in group and "series_id" not in fields:
            fields.append("series_id")  # the study of each sample: always returned when the file has it
    metadata = {}
    order = np.searchsorted(col_sorted, cols)
    for key in fields:
        dataset = group[key]
        if not isinstance(dataset, h5py.Dataset) or dataset.shape != (len(accessions),):
            continue
        metadata[key] = _decode(_read_1d(dataset, col_sorted, block))[order]
    return metadata


def _gene_metadata(f, h5py, id_key, gene_ids, first_row):
    """The other ``meta/genes`` fields, from the first row of each output gene."""
    gene_metadata = {}
    for key, dataset in f["meta/genes"].items():
        if key == id_key.rsplit("/", 1)[1]:
            continue
        if not isinstance(dataset, h5py.Dataset) or dataset.shape != (len(gene_ids),):
            continue
        gene_metadata[key] = _decode(dataset[()])[first_row]
    return gene_metadata


def _check_positive_int(value, name):
    if value is not None and (not isinstance(value, Integral) or isinstance(value, bool) or value < 1):
        raise ValueError(f"{name} must be a positive int or None, got {value!r}.")


def _check_options(*, gene_id, missing_genes, max_singlecell_probability, max_block_mb, transform):
    if gene_id not in _GENE_ID_KEYS:
        raise ValueError(f"gene_id must be 'symbol' or 'ensembl', got {gene_id!r}.")
    if missing_genes not in ("raise", "drop"):
        raise ValueError(f"missing_genes must be 'raise' or 'drop', got {missing_genes!r}.")
    if max_singlecell_probability is not None and not (
        isinstance(max_singlecell_probability, Real) and 0 <= max_singlecell_probability <= 1
    ):
        raise ValueError(f"max_singlecell_probability must be in [0, 1] or None, got {max_singlecell_probability!r}.")
    if not isinstance(max_block_mb, Real) or max_block_mb <= 0:
        raise ValueError(f"max_block_mb must be a positive number, got {max_block_mb!r}.")
    if transform is not None and not callable(transform):
        raise TypeError(
            f"transform must be a callable applied to each block of counts (e.g. LogCPM().fit_transform), "
            f"got {type(transform).__name__}."
        )


def read_archs4(
    path,
    samples=None,
    genes=None,
    max_samples=None,
    *,
    series=None,
    max_per_series=None,
    max_singlecell_probability=None,
    random_state=None,
    gene_id="symbol",
    biotypes=None,
    missing_genes="raise",
    sample_fields=None,
    transform=None,
    out=None,
    max_block_mb=256,
):
    """Read a subset of an ARCHS4 HDF5 expression file, streaming it in blocks of samples.

    ARCHS4 files (https://maayanlab.cloud/archs4) hold a genes x samples
    count matrix ``data/expression`` with gene symbols in
    ``meta/genes/symbol`` (``meta/genes/gene_symbol`` in older releases),
    Ensembl ids in ``meta/genes/ensembl_gene`` (or ``ensembl_gene_id``)
    and sample annotations in ``meta/samples/*``. Only the requested genes
    and samples are read, one block of samples at a time (its edges are
    chunk edges), in file order: the memory used besides the result is
    bounded by `max_block_mb`, and with `out` the result is written to a
    ``.npy`` file instead of memory. Requires h5py.

    Parameters
    ----------
    path : str or path-like
        HDF5 file.

    samples : array-like of str or int, default=None
        GEO sample accessions (``meta/samples/geo_accession``) or integer
        column positions to read, in the order wanted. None means all
        samples, in file order, subject to the filters below.

    genes : array-like of str, default=None
        Genes to read, in the order wanted: symbols with
        ``gene_id="symbol"``, Ensembl ids with ``gene_id="ensembl"``.
        Compared without Ensembl version suffix and ignoring case (as
        :class:`~skssl.GeneAligner` with ``match_ids="normalized"``). None
        means every gene with an id (ids on several rows counted once).

    max_samples : int, default=None
        Keep at most this many of the selected samples: the first ones, or
        a uniform random draw when `random_state` is given.

    series : str or array-like of str, default=None
        Keep only samples of these GEO series (``meta/samples/series_id``;
        a sample listed under several series matches any of them).

    max_per_series : int, default=None
        Keep at most this many samples per series (the first, or a random
        draw with `random_state`), so that a few large studies do not make
        up most of a pre-training pool.

    max_singlecell_probability : float, default=None
        Drop samples whose ``meta/samples/singlecellprobability`` exceeds
        this (ARCHS4 predicts which GEO samples are single-cell; 0.5 keeps
        the likely bulk ones).

    random_state : int, RandomState instance or None, default=None
        Seed of the random draws of `max_samples` and `max_per_series`.
        None takes the first samples instead of drawing.

    gene_id : {"symbol", "ensembl"}, default="symbol"
        Which gene identifiers to return and to match `genes` against.
        Ensembl ids are returned without version suffix.

    biotypes : array-like of str, default=None
        Keep only genes whose ``meta/genes/biotype`` is one of these, e.g.
        ``["protein_coding"]``.

    missing_genes : {"raise", "drop"}, default="raise"
        What to do when some of `genes` are not in the file: raise a
        ValueError, or leave them out with a :class:`UserWarning`.

    sample_fields : array-like of str, default=None
        ``meta/samples`` fields to return in `metadata`; None means all of
        them. ``series_id`` is always included when the file has it.

    transform : callable, default=None
        Applied to each block of counts (samples x genes, float32) before
        it is stored, e.g. ``LogCPM().fit_transform``. It must act on each
        sample (row) on its own, as library-size normalisation does, since
        it sees one block of samples at a time.

    out : str, path-like or ndarray, default=None
        Where to write the (n_samples, n_genes) float32 result: None keeps
        it in memory; a path writes a ``.npy`` file and returns it memory
        mapped (read it later with ``np.load(out, mmap_mode="r")``); an
        array of that shape and dtype is filled in place.

    max_block_mb : float, default=256
        Memory budget of one block of samples, in MiB. A block is at least
        one chunk of the file wide.

    Returns
    -------
    data : ExpressionData
        Counts (or ``transform``-ed counts) as (n_samples, n_genes)
        float32. Genes that occur on several rows of the file (ARCHS4
        repeats a few thousand symbols) are summed into one. The other
        ``meta/samples`` fields are in `metadata` (the study of each sample
        in ``metadata["series_id"]``), the other ``meta/genes`` fields
        (first row of each gene) in `gene_metadata`.

    Raises
    ------
    ValueError
        If a requested sample, series or gene is not in the file, or no
        sample is left after the selection.

    Examples
    --------
    A tiny file with the ARCHS4 layout (3 genes x 4 samples):

    >>> import os, tempfile
    >>> import h5py
    >>> import numpy as np
    >>> from skssl.io import read_archs4
    >>> path = os.path.join(tempfile.mkdtemp(), "archs4.h5")
    >>> with h5py.File(path, "w") as f:
    ...     _ = f.create_dataset("data/expression", data=np.arange(12).reshape(3, 4), chunks=(3, 2))
    ...     _ = f.create_dataset("meta/genes/symbol", data=np.array(["TP53", "EGFR", "MYC"], dtype="S"))
    ...     _ = f.create_dataset("meta/samples/geo_accession",
    ...                          data=np.array(["GSM1", "GSM2", "GSM3", "GSM4"], dtype="S"))
    ...     _ = f.create_dataset("meta/samples/series_id", data=np.array(["GSE1", "GSE1", "GSE2", "GSE2"], dtype="S"))
    >>> data = read_archs4(path, samples=["GSM4", "GSM1"], genes=["MYC", "TP53"])
    >>> data.samples, data.genes
    (array(['GSM4', 'GSM1'], dtype=object), array(['MYC', 'TP53'], dtype=object))
    >>> data.X
    array([[11.,  3.],
           [ 8.,  0.]], dtype=float32)
    >>> read_archs4(path, series="GSE2", max_per_series=1).metadata["series_id"]
    array(['GSE2'], dtype=object)
    """
    h5py = _import_h5py("read_archs4")
    path = Path(path)
    _check_positive_int(max_samples, "max_samples")
    _check_positive_int(max_per_series, "max_per_series")
    _check_options(
        gene_id=gene_id,
        missing_genes=missing_genes,
        max_singlecell_probability=max_singlecell_probability,
        max_block_mb=max_block_mb,
        transform=transform,
    )
    rng = None if random_state is None else _check_random_state(random_state)
    with h5py.File(path, "r", rdcc_nbytes=_CHUNK_CACHE_BYTES) as f:
        expression, id_key, gene_ids, accessions = _read_ids(f, path, gene_id)
        cols = _select_samples(
            f,
            samples,
            accessions,
            path,
            series=series,
            max_per_series=max_per_series,
            max_singlecell_probability=max_singlecell_probability,
            max_samples=max_samples,
            rng=rng,
        )
        out_genes, first_row, file_rows, groups = _select_genes(
            f, genes, gene_ids, path, biotypes=biotypes, missing_genes=missing_genes
        )
        col_sorted = np.sort(cols)
        # Row blocks are whole chunk heights: each chunk is decompressed once per block of samples.
        chunk_height = expression.chunks[0] if expression.chunks else expression.shape[0]
        row_block = max(chunk_height, 4096 // chunk_height * chunk_height)
        block = _block_width(expression, len(file_rows), len(out_genes), row_block, max_block_mb)
        X = _allocate(out, (len(cols), len(out_genes)))
        # Output row of each sorted column: samples come back in the order requested.
        out_row = np.argsort(cols, kind="stable")
        for sel, values in _stream_counts(
            expression,
            file_rows,
            groups,
            len(out_genes),
            col_sorted,
            block=block,
            row_block=row_block,
            transform=transform,
        ):
            X[out_row[sel]] = values
        if isinstance(X, np.memmap):
            X.flush()
        metadata = _sample_metadata(f, h5py, accessions, cols, col_sorted, sample_fields, block, path)
        gene_metadata = _gene_metadata(f, h5py, id_key, gene_ids, first_row)
    attrs = {"source": str(path), "gene_id": gene_id}
    if out is not None and not isinstance(out, np.ndarray):
        attrs["out"] = str(out)
    return ExpressionData(X, out_genes, accessions[cols], metadata=metadata, gene_metadata=gene_metadata, attrs=attrs)


def _check_random_state(random_state):
    from sklearn.utils import check_random_state

    return check_random_state(random_state)
