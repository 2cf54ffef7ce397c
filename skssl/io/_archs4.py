"""Subsets of ARCHS4 HDF5 expression files (needs h5py)."""

# License: BSD-3-Clause

from pathlib import Path

import numpy as np

from ._container import ExpressionData


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


def _read_columns(dataset, rows, cols, row_block=2048):
    """``dataset[rows][:, cols]`` reading only row blocks that are needed.

    `rows` and `cols` must be sorted and unique. h5py allows one index
    list per read, so rows are read as contiguous slices and columns as a
    slice when they are contiguous, else as an index list.
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


def _read_ids(f, path):
    """``(expression dataset, symbol key, gene symbols, sample accessions)`` of
    an open ARCHS4 file, checked for the ARCHS4 layout."""
    for required in ("data/expression", "meta/samples/geo_accession"):
        if required not in f:
            raise ValueError(f"{path}: not an ARCHS4 file (no '{required}').")
    expression = f["data/expression"]
    symbol_key = next(
        (k for k in ("meta/genes/symbol", "meta/genes/gene_symbol") if k in f),
        None,
    )
    if symbol_key is None:
        raise ValueError(f"{path}: not an ARCHS4 file (no 'meta/genes/symbol' or 'meta/genes/gene_symbol').")
    symbols = _decode(f[symbol_key][()])
    accessions = _decode(f["meta/samples/geo_accession"][()])
    if expression.shape != (len(symbols), len(accessions)):
        raise ValueError(
            f"{path}: data/expression has shape {expression.shape} but there "
            f"are {len(symbols)} genes and {len(accessions)} samples."
        )
    return expression, symbol_key, symbols, accessions


def _select_samples(samples, accessions, max_samples, path):
    """File columns of the requested samples, in the requested order."""
    if samples is None:
        cols = np.arange(len(accessions))
    else:
        cols = _lookup(samples, accessions, "sample", path)
    if max_samples is not None:
        cols = cols[:max_samples]
    return cols


def _group_genes(genes, symbols, path):
    """``(out_genes, first_row, file_rows, groups)``: the output genes, the
    first file row of each, and the file rows to read with the output gene
    each one is summed into (ARCHS4 repeats a few symbols)."""
    # Group file rows by symbol: output gene k sums rows with group k.
    if genes is None:
        out_genes, first_row = np.unique(symbols, return_index=True)
        order = np.argsort(first_row, kind="stable")  # file order
        out_genes, first_row = out_genes[order], first_row[order]
    else:
        first_row = _lookup(genes, symbols, "gene", path)
        out_genes = symbols[first_row]
    group_of = {name: k for k, name in enumerate(out_genes)}
    file_rows = np.flatnonzero(np.isin(symbols, out_genes))
    groups = np.array([group_of[s] for s in symbols[file_rows]], dtype=np.intp)
    return out_genes, first_row, file_rows, groups


def _summed_counts(expression, file_rows, groups, n_genes, cols, col_sorted):
    """The (n_samples, n_genes) counts, rows of one symbol summed."""
    block = _read_columns(expression, file_rows, col_sorted)
    summed = np.zeros((n_genes, len(col_sorted)), dtype=np.float32)
    np.add.at(summed, groups, block)
    # Back from sorted columns to the requested sample order.
    return summed[:, np.searchsorted(col_sorted, cols)].T


def _sample_metadata(f, h5py, accessions, cols, col_sorted):
    """The other ``meta/samples`` fields, for the selected samples."""
    metadata = {}
    for key, dataset in f["meta/samples"].items():
        if key == "geo_accession" or not isinstance(dataset, h5py.Dataset):
            continue
        if dataset.shape != (len(accessions),):
            continue
        values = dataset[_index_key(col_sorted)] if col_sorted.size else dataset[:0]
        metadata[key] = _decode(values)[np.searchsorted(col_sorted, cols)]
    return metadata


def _gene_metadata(f, h5py, symbol_key, symbols, first_row):
    """The other ``meta/genes`` fields, from the first row of each output gene."""
    gene_metadata = {}
    for key, dataset in f["meta/genes"].items():
        if key == symbol_key.rsplit("/", 1)[1]:
            continue
        if not isinstance(dataset, h5py.Dataset) or dataset.shape != (len(symbols),):
            continue
        gene_metadata[key] = _decode(dataset[()])[first_row]
    return gene_metadata


def read_archs4(path, samples=None, genes=None, max_samples=None):
    """Read a subset of an ARCHS4 HDF5 expression file.

    ARCHS4 files (https://maayanlab.cloud/archs4) hold a genes x samples
    count matrix ``data/expression`` with gene symbols in
    ``meta/genes/symbol`` (``meta/genes/gene_symbol`` in older releases)
    and sample annotations in ``meta/samples/*``. Only the requested rows
    and columns are read from disk. Requires h5py.

    Parameters
    ----------
    path : str or path-like
        HDF5 file.

    samples : array-like of str or int, default=None
        GEO sample accessions (``meta/samples/geo_accession``) or integer
        column positions to read, in the order wanted. None means all
        samples (subject to `max_samples`); beware that a full ARCHS4
        file does not fit in memory.

    genes : array-like of str, default=None
        Gene symbols to read, in the order wanted. None means all genes.

    max_samples : int, default=None
        Keep at most this many of the selected samples (the first ones).

    Returns
    -------
    data : ExpressionData
        Counts as (n_samples, n_genes) float32. Symbols that occur on
        several rows of the file (ARCHS4 has a few) are summed into one
        gene. The other ``meta/samples`` fields are in `metadata`, the other
        ``meta/genes`` fields (first row of each symbol) in `gene_metadata`.

    Raises
    ------
    ValueError
        If a requested sample or gene is not in the file.

    Examples
    --------
    A tiny file with the ARCHS4 layout (3 genes x 4 samples):

    >>> import os, tempfile
    >>> import h5py
    >>> import numpy as np
    >>> from skssl.io import read_archs4
    >>> path = os.path.join(tempfile.mkdtemp(), "archs4.h5")
    >>> with h5py.File(path, "w") as f:
    ...     _ = f.create_dataset("data/expression", data=np.arange(12).reshape(3, 4))
    ...     _ = f.create_dataset("meta/genes/symbol", data=np.array(["TP53", "EGFR", "MYC"], dtype="S"))
    ...     _ = f.create_dataset("meta/samples/geo_accession",
    ...                          data=np.array(["GSM1", "GSM2", "GSM3", "GSM4"], dtype="S"))
    >>> data = read_archs4(path, samples=["GSM4", "GSM1"], genes=["MYC", "TP53"])
    >>> data.samples, data.genes
    (array(['GSM4', 'GSM1'], dtype=object), array(['MYC', 'TP53'], dtype=object))
    >>> data.X
    array([[11.,  3.],
           [ 8.,  0.]], dtype=float32)
    """
    h5py = _import_h5py("read_archs4")
    path = Path(path)
    if max_samples is not None and (not isinstance(max_samples, (int, np.integer)) or max_samples < 1):
        raise ValueError(f"max_samples must be a positive int, got {max_samples!r}.")
    with h5py.File(path, "r") as f:
        expression, symbol_key, symbols, accessions = _read_ids(f, path)
        cols = _select_samples(samples, accessions, max_samples, path)
        out_genes, first_row, file_rows, groups = _group_genes(genes, symbols, path)
        col_sorted = np.sort(cols)
        X = _summed_counts(expression, file_rows, groups, len(out_genes), cols, col_sorted)
        metadata = _sample_metadata(f, h5py, accessions, cols, col_sorted)
        gene_metadata = _gene_metadata(f, h5py, symbol_key, symbols, first_row)
    return ExpressionData(
        X,
        out_genes,
        accessions[cols],
        metadata=metadata,
        gene_metadata=gene_metadata,
        attrs={"source": str(path)},
    )
