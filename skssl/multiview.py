"""Several omics at once: views of a feature matrix, their validation, and the assembly of per-omic tables.

A *view* is a named group of columns of one matrix (the RNA-seq genes, the miRNAs, the mutation calls...). A
sample that lacks an omic holds NaN in every column of that view: a *missing view*. Estimators that take a
``views`` parameter (:class:`skssl.VAEEmbedder`) encode each view with its own network and skip missing views in
the encoder and in the loss. Only the VAE takes ``views``: the corruptions of :class:`skssl.ContrastiveEmbedder`
and :class:`skssl.MaskedAutoencoder` draw replacement values from other samples, which a missing view does not
have, so those embedders still reject NaN.

:func:`assemble_views` builds such a matrix from one table per omic keyed by sample id; :func:`resolve_views`,
:func:`scan_views` and :func:`check_view_values` are the checks an estimator runs on its ``views`` and on the data.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from . import _reading, _validation

VIEW_LIKELIHOODS = ("gaussian", "nb", "bernoulli")
_SPEC_KEYS = {"columns", "likelihood"}


# ----------------------------------------------------------------------------------------------- resolution
def resolve_views(views, n_features, feature_names=None, default_likelihood="gaussian"):
    """Turn a ``views`` parameter into integer column indices and a likelihood per view, checking everything.

    Parameters
    ----------
    views : mapping of str to column spec
        View name -> columns, or view name -> ``{"columns": columns, "likelihood": likelihood}``. ``columns`` is a
        sequence of integer positions, a ``slice``, a boolean mask of length ``n_features`` or a sequence of column
        names (when ``feature_names`` is given). ``likelihood`` is one of ``"gaussian"``, ``"nb"``, ``"bernoulli"``
        (default ``default_likelihood``).
    n_features : int
        Number of columns of the matrix.
    feature_names : array-like of str, default=None
        Column names of the matrix (an estimator's ``feature_names_in_``), needed for views given by name.
    default_likelihood : str, default="gaussian"
        Likelihood of the views whose spec does not name one.

    Returns
    -------
    indices : dict of str to ndarray of int64
        The columns of each view, in the order given, views in the order of ``views``.
    likelihoods : dict of str to str
        The likelihood of each view.

    Raises
    ------
    ValueError
        Naming the view, when a view is empty, has out-of-range, duplicate or unknown columns, overlaps another
        view or has an invalid likelihood; and when some columns belong to no view.

    Examples
    --------
    >>> from skssl.multiview import resolve_views
    >>> indices, likelihoods = resolve_views({"a": slice(0, 2), "b": {"columns": [2], "likelihood": "bernoulli"}}, 3)
    >>> {name: idx.tolist() for name, idx in indices.items()}, likelihoods
    ({'a': [0, 1], 'b': [2]}, {'a': 'gaussian', 'b': 'bernoulli'})
    """
    if not isinstance(views, Mapping) or len(views) == 0:
        raise ValueError(f"views must be a non-empty mapping from view name to columns, got {views!r}.")
    names = None if feature_names is None else {str(name): i for i, name in enumerate(feature_names)}
    indices, likelihoods, owner = {}, {}, np.full(n_features, -1)
    for k, (name, spec) in enumerate(views.items()):
        if not isinstance(name, str):
            raise ValueError(f"View names must be strings, got {name!r}.")
        columns, likelihood = _split_spec(name, spec, default_likelihood)
        idx = _resolve_columns(name, columns, n_features, names)
        taken = owner[idx] >= 0
        if taken.any():
            other = list(views)[owner[idx[taken][0]]]
            raise ValueError(
                f"Views {other!r} and {name!r} overlap: column {_column_label(idx[taken][0], feature_names)} "
                f"belongs to both ({int(taken.sum())} shared column(s)). Each column belongs to one view."
            )
        owner[idx] = k
        indices[name] = idx
        likelihoods[name] = likelihood
    uncovered = np.flatnonzero(owner < 0)
    if len(uncovered):
        shown = ", ".join(_column_label(i, feature_names) for i in uncovered[:5])
        raise ValueError(
            f"{len(uncovered)} column(s) belong to no view ({shown}{', ...' if len(uncovered) > 5 else ''}). "
            "Every column must belong to exactly one view: add them to a view or drop them from X."
        )
    return indices, likelihoods


def _split_spec(name, spec, default_likelihood):
    if isinstance(spec, Mapping):
        unknown = set(spec) - _SPEC_KEYS
        if unknown:
            raise ValueError(
                f"View {name!r}: unknown key(s) {sorted(map(str, unknown))} in its spec; a view spec holds "
                "'columns' and optionally 'likelihood'."
            )
        if "columns" not in spec:
            raise ValueError(f"View {name!r}: its spec has no 'columns'.")
        likelihood = spec.get("likelihood")
        likelihood = default_likelihood if likelihood is None else likelihood
        columns = spec["columns"]
    else:
        columns, likelihood = spec, default_likelihood
    if likelihood not in VIEW_LIKELIHOODS:
        raise ValueError(f"View {name!r}: likelihood must be one of {list(VIEW_LIKELIHOODS)}, got {likelihood!r}.")
    return columns, likelihood


def _resolve_columns(name, columns, n_features, names):
    if isinstance(columns, slice):
        for bound in (columns.start, columns.stop):
            if bound is not None and not _validation.is_integer(bound):
                raise ValueError(f"View {name!r}: slice bounds must be integers or None, got {columns!r}.")
            if bound is not None and not 0 <= bound <= n_features:
                raise ValueError(
                    f"View {name!r}: {columns!r} is out of range: X has {n_features} feature(s) (columns 0 to "
                    f"{n_features - 1})."
                )
        idx = np.arange(n_features)[columns]
    elif isinstance(columns, (str, bytes)) or np.isscalar(columns):
        raise ValueError(
            f"View {name!r}: columns must be a list of column positions or names, a slice or a boolean mask, "
            f"got the single value {columns!r} (write [{columns!r}] for a one-column view)."
        )
    else:
        array = np.asarray(list(columns) if not hasattr(columns, "__array__") else columns)
        if array.ndim != 1:
            raise ValueError(f"View {name!r}: columns must be one-dimensional, got shape {array.shape}.")
        if array.dtype == bool:
            if len(array) != n_features:
                raise ValueError(
                    f"View {name!r}: a boolean mask of columns must have one entry per feature ({n_features}), "
                    f"got {len(array)}."
                )
            idx = np.flatnonzero(array)
        elif len(array) and all(isinstance(c, str) for c in array.tolist()):
            if names is None:
                raise ValueError(
                    f"View {name!r} lists columns by name, but X has no column names: fit on a pandas DataFrame "
                    "with string column names, or give column positions."
                )
            unknown = [c for c in array.tolist() if c not in names]
            if unknown:
                shown = ", ".join(map(repr, unknown[:5]))
                raise ValueError(
                    f"View {name!r}: {len(unknown)} unknown column name(s) ({shown}"
                    f"{', ...' if len(unknown) > 5 else ''}) not among the columns of X."
                )
            idx = np.array([names[c] for c in array.tolist()], dtype=np.int64)
        elif len(array) and all(_validation.is_integer(c) for c in array.tolist()):
            idx = array.astype(np.int64)
            bad = idx[(idx < 0) | (idx >= n_features)]
            if len(bad):
                raise ValueError(
                    f"View {name!r}: column {int(bad[0])} is out of range: X has {n_features} feature(s) (columns 0 "
                    f"to {n_features - 1})."
                )
        elif len(array) == 0:
            idx = np.zeros(0, dtype=np.int64)
        else:
            raise ValueError(
                f"View {name!r}: columns must be integer positions, column names, a slice or a boolean mask, got "
                f"{columns!r}."
            )
    idx = np.asarray(idx, dtype=np.int64)
    if len(idx) == 0:
        where = f" ({columns!r} of X's {n_features} feature(s))" if isinstance(columns, slice) else ""
        raise ValueError(f"View {name!r} has no columns{where}.")
    if len(np.unique(idx)) != len(idx):
        raise ValueError(f"View {name!r} lists a column more than once.")
    return idx


def _column_label(i, feature_names):
    return f"{int(i)} ({feature_names[i]!r})" if feature_names is not None else str(int(i))


# ----------------------------------------------------------------------------------------------- scanning data
def scan_views(X, indices, likelihoods, *, chunk_rows=_reading.CHUNK_ROWS):
    """Which views each sample has, checked in one streaming pass over ``X``.

    A view is missing for a sample when all its columns are NaN there.

    Parameters
    ----------
    X : {ndarray, sparse matrix, np.memmap} of shape (n_samples, n_features)
        Validated input (NaN allowed).
    indices, likelihoods : dict
        As returned by :func:`resolve_views`.
    chunk_rows : int
        Rows read at once.

    Returns
    -------
    dict with ``present`` (bool array of shape (n_samples, n_views)) and ``row_sums`` (float64 array of shape
    (n_samples, n_views): the total of each view in each sample, 0 where missing).

    Raises
    ------
    ValueError
        On infinite values; when a view is partly NaN in a sample (a missing view is a whole block of NaN);
        when a sample has no view at all; when a ``"nb"`` view has negative values or a ``"bernoulli"`` view values
        other than 0 and 1.
    """
    n_samples = _reading.n_rows(X)
    names = list(indices)
    present = np.zeros((n_samples, len(names)), dtype=bool)
    row_sums = np.zeros((n_samples, len(names)))
    for rows, block in _reading.iter_batches(X, chunk_rows):
        _reading.check_finite_block(block, X, allow_nan=True, row_offset=rows.start)
        offset = rows.start
        for k, name in enumerate(names):
            values = block[:, indices[name]]
            nan = np.isnan(values)
            n_nan = nan.sum(axis=1)
            partial = np.flatnonzero((n_nan > 0) & (n_nan < values.shape[1]))
            if len(partial):
                i = partial[0]
                raise ValueError(
                    f"View {name!r} is partly missing in sample {offset + i} ({int(n_nan[i])} of {values.shape[1]} "
                    "columns are NaN). A missing view is a block of NaN in all its columns; impute NaN inside a "
                    "view before fitting."
                )
            here = n_nan == 0
            present[offset : offset + len(here), k] = here
            observed = values[here]
            row_sums[offset : offset + len(here), k][here] = observed.sum(axis=1, dtype=np.float64)
            if observed.size:
                check_view_values(name, likelihoods[name], observed)
        empty = np.flatnonzero(~present[offset : offset + block.shape[0]].any(axis=1))
        if len(empty):
            raise ValueError(
                f"Sample {offset + empty[0]} has no view: all its values are NaN ({len(empty)} such sample(s) in "
                "this chunk). Drop samples that have none of the views."
            )
    return {"present": present, "row_sums": row_sums}


def check_view_values(name, likelihood, values):
    """Raise a ``ValueError`` naming view ``name`` (None: the whole ``X`` of a model without views) when ``values``
    do not suit ``likelihood``: negative values for ``"nb"``, values other than 0 and 1 for ``"bernoulli"``.

    ``values`` is any array of the view's values (for ``"nb"`` only its minimum matters).
    """
    values = np.asarray(values)
    if not values.size:
        return
    if likelihood == "nb":
        minimum = float(values.min())
        if minimum < 0:
            if name is None:
                raise ValueError(
                    f"Negative values in data passed to VAEEmbedder (minimum {minimum:g}): likelihood='nb' models "
                    "non-negative counts. Pass raw counts, or use likelihood='gaussian' for log-scale or normalised "
                    "data."
                )
            raise ValueError(
                f"Negative values in view {name!r} (minimum {minimum:g}): likelihood='nb' models non-negative "
                "counts. Pass raw counts, or use likelihood='gaussian' for this view."
            )
    elif likelihood == "bernoulli":
        bad = values[(values != 0) & (values != 1)]
        if bad.size:
            target = "X" if name is None else f"View {name!r}"
            raise ValueError(
                f"{target} has values other than 0 and 1 (e.g. {float(bad[0]):g}): likelihood='bernoulli' "
                "models binary calls (e.g. mutated or not). Binarise it or use likelihood='gaussian'."
            )


# ----------------------------------------------------------------------------------------------- assembly
def assemble_views(tables, *, how="outer", likelihoods=None, sep=":"):
    """Join per-omic tables keyed by sample id into one matrix with a block of NaN where a sample lacks an omic.

    Parameters
    ----------
    tables : mapping of str to table
        Omic (view) name -> its table, samples in rows. A table is a pandas DataFrame (index: sample ids; columns:
        feature names), an :class:`skssl.io.ExpressionData`, or a tuple ``(X, sample_ids, feature_names)``.
        Sample ids must be unique within a table. A table's row that is all NaN counts as that omic missing for
        that sample; NaN in only part of a row is an error (impute it first).
    how : {"outer", "inner"}, default="outer"
        "outer" keeps every sample of any table (NaN blocks where an omic is missing); "inner" keeps only the
        samples present in every table.
    likelihoods : mapping of str to str, default=None
        Likelihood per view (``"gaussian"``, ``"nb"``, ``"bernoulli"``). When given, the returned views are specs
        ``{"columns": ..., "likelihood": ...}`` for the views it names; the other views are plain column slices.
    sep : str, default=":"
        Separator between the view name and the feature name in the returned feature names ("rna:TP53"), which
        keeps them unique when omics share feature names.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), dtype float32
        The views side by side, in the order of ``tables``; NaN blocks where a sample lacks a view.
    sample_ids : ndarray of object, shape (n_samples,)
        In order of first appearance (table by table, row by row).
    feature_names : ndarray of object, shape (n_features,)
        ``"{view}{sep}{feature}"``.
    views : dict
        View name -> ``slice`` of its columns (or a spec with its likelihood, see ``likelihoods``): ready for the
        ``views`` parameter of :class:`skssl.VAEEmbedder`, whether X is fitted as an array or as
        ``pd.DataFrame(X, index=sample_ids, columns=feature_names)``.

    Examples
    --------
    >>> import numpy as np
    >>> from skssl.multiview import assemble_views
    >>> rna = (np.array([[1.0, 2.0], [3.0, 4.0]]), ["p1", "p2"], ["TP53", "EGFR"])
    >>> mut = (np.array([[1.0], [0.0]]), ["p2", "p3"], ["TP53"])
    >>> X, ids, features, views = assemble_views({"rna": rna, "mut": mut}, likelihoods={"mut": "bernoulli"})
    >>> X
    array([[ 1.,  2., nan],
           [ 3.,  4.,  1.],
           [nan, nan,  0.]], dtype=float32)
    >>> ids.tolist(), features.tolist()
    (['p1', 'p2', 'p3'], ['rna:TP53', 'rna:EGFR', 'mut:TP53'])
    >>> views
    {'rna': slice(0, 2, None), 'mut': {'columns': slice(2, 3, None), 'likelihood': 'bernoulli'}}
    """
    if how not in ("outer", "inner"):
        raise ValueError(f"how must be 'outer' or 'inner', got {how!r}.")
    if not isinstance(tables, Mapping) or len(tables) == 0:
        raise ValueError("tables must be a non-empty mapping from view name to table.")
    likelihoods = dict(likelihoods or {})
    unknown = set(likelihoods) - set(tables)
    if unknown:
        raise ValueError(f"likelihoods names view(s) {sorted(unknown)} that are not in tables.")
    parts = {name: _table_parts(name, table) for name, table in tables.items()}

    order, seen = [], set()
    for _, ids, _ in parts.values():
        for sample in ids:
            if sample not in seen:
                seen.add(sample)
                order.append(sample)
    if how == "inner":
        common = set.intersection(*(set(ids) for _, ids, _ in parts.values()))
        order = [sample for sample in order if sample in common]
    position = {sample: i for i, sample in enumerate(order)}

    n_features = sum(values.shape[1] for values, _, _ in parts.values())
    X = np.full((len(order), n_features), np.nan, dtype=np.float32)
    features, views, start = [], {}, 0
    for name, (values, ids, names) in parts.items():
        stop = start + values.shape[1]
        keep = np.array([sample in position for sample in ids], dtype=bool)
        rows = np.array([position[sample] for sample in np.asarray(ids, dtype=object)[keep]], dtype=np.int64)
        X[rows, start:stop] = values[keep]
        features.extend(f"{name}{sep}{feature}" for feature in names)
        columns = slice(start, stop)
        views[name] = {"columns": columns, "likelihood": likelihoods[name]} if name in likelihoods else columns
        start = stop
    return X, np.array(order, dtype=object), np.array(features, dtype=object), views


def _table_parts(name, table):
    """``(values float32, sample ids list, feature names list)`` of one table, checked."""
    if hasattr(table, "index") and hasattr(table, "columns") and hasattr(table, "to_numpy"):  # pandas DataFrame
        values, ids, names = table.to_numpy(dtype=np.float32), list(table.index), list(table.columns)
    elif hasattr(table, "X") and hasattr(table, "samples") and hasattr(table, "genes"):  # ExpressionData
        values, ids, names = table.X, list(table.samples), list(table.genes)
    elif isinstance(table, tuple) and len(table) == 3:
        values, ids, names = table
        ids, names = list(ids), list(names)
    else:
        raise ValueError(
            f"Table {name!r} must be a pandas DataFrame, an ExpressionData or a tuple (X, sample_ids, "
            f"feature_names), got {type(table).__name__}."
        )
    try:
        values = np.asarray(values.toarray() if hasattr(values, "toarray") else values, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Table {name!r} has non-numeric values: {exc}") from exc
    if values.ndim != 2 or values.shape != (len(ids), len(names)):
        raise ValueError(
            f"Table {name!r}: values of shape {values.shape} do not match {len(ids)} sample id(s) and "
            f"{len(names)} feature name(s)."
        )
    if len(set(ids)) != len(ids):
        duplicated = next(sample for sample in ids if ids.count(sample) > 1)
        raise ValueError(f"Table {name!r} lists sample {duplicated!r} more than once.")
    if np.isinf(values).any():
        raise ValueError(f"Table {name!r} contains infinite values.")
    nan = np.isnan(values)
    partial = np.flatnonzero(nan.any(axis=1) & ~nan.all(axis=1))
    if len(partial):
        raise ValueError(
            f"Table {name!r} has NaN in part of the row of sample {ids[partial[0]]!r} ({len(partial)} such "
            "sample(s)). A missing omic is a whole row of NaN (or an absent row); impute NaN within a row first."
        )
    return values, ids, names
