"""Plots for interpretation (the ``[plot]`` extra: ``pip install 'skssl[plot]'``).

- :func:`plot_top_genes`: the top genes of a class (:func:`skssl.inspection.gene_importances`) or of an embedding
  dimension (:func:`skssl.inspection.embedding_loadings`), as horizontal bars.
- :func:`plot_embedding`: two dimensions of an embedding, samples coloured by label or batch.

matplotlib is imported when a function is called, never with :mod:`skssl`.
"""

# License: BSD-3-Clause

from __future__ import annotations

import numpy as np

from .inspection import top_genes

__all__ = ["plot_embedding", "plot_top_genes"]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "skssl.plotting needs matplotlib, which is not installed: pip install 'skssl[plot]' (or pip install "
            "matplotlib)."
        ) from exc
    return plt


def _axes(ax):
    if ax is not None:
        return ax
    return _pyplot().subplots()[1]


def plot_top_genes(table, column=None, k=20, *, names=None, ax=None, title=None, xlabel=None):
    """Horizontal bars of the ``k`` genes with the largest absolute value in one column of ``table``.

    Parameters
    ----------
    table : ndarray of shape (n_genes, n_columns) or DataFrame
        Importances (:func:`~skssl.inspection.gene_importances`) or loadings
        (:func:`~skssl.inspection.embedding_loadings`).
    column : int or label, default=None
        The class or dimension (a position for an array, a column label for a DataFrame); None: the sum of the
        absolute values over the columns.
    k : int, default=20
        Number of genes shown, largest at the top.
    names : array-like of shape (n_genes,), default=None
        Gene names for an array ``table``.
    ax : matplotlib Axes, default=None
        Where to draw; None: a new figure.
    title : str, default=None
        None: the column's name.
    xlabel : str, default=None
        None: "importance" when every value shown is non-negative, else "signed value (+: up with it)".

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from skssl.plotting import plot_top_genes
    >>> ax = plot_top_genes(np.array([[0.1], [-0.9], [0.5]]), column=0, k=2, names=["A", "B", "C"])
    >>> [label.get_text() for label in ax.get_yticklabels()]
    ['C', 'B']
    """
    genes = top_genes(table, column, k, names=names)
    ax = _axes(ax)
    labels = [str(name) for name, _ in genes][::-1]  # largest at the top
    values = np.array([value for _, value in genes])[::-1]
    colours = np.where(values >= 0, "tab:red", "tab:blue")
    ax.barh(np.arange(len(values)), values, color=colours)
    ax.set_yticks(np.arange(len(values)))
    ax.set_yticklabels(labels)
    ax.axvline(0.0, color="black", linewidth=0.8)
    if xlabel is None:
        xlabel = "importance" if (values >= 0).all() else "signed value (+: up with it)"
    ax.set_xlabel(xlabel)
    ax.set_title(title if title is not None else ("all columns" if column is None else str(column)))
    return ax


def _is_missing(value):
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return bool(np.isnan(value)) or value == -1
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return value == -1
    return False


def plot_embedding(embedding, labels=None, *, dims=(0, 1), ax=None, title=None, legend=True, point_size=12):
    """Scatter two dimensions of an embedding, samples coloured by ``labels`` (classes, batches).

    Parameters
    ----------
    embedding : array-like of shape (n_samples, n_components)
        E.g. ``embedder.transform(X)``; a DataFrame's column names label the axes.
    labels : array-like of shape (n_samples,), default=None
        A category per sample (class, batch). Unlabeled samples (``-1``, None, NaN) are drawn in grey, under the
        others. None: one colour.
    dims : tuple of two int, default=(0, 1)
        The dimensions on the x and y axes.
    ax : matplotlib Axes, default=None
        Where to draw; None: a new figure.
    title : str, default=None
    legend : bool, default=True
        Show a legend of the categories.
    point_size : float, default=12

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from skssl.plotting import plot_embedding
    >>> ax = plot_embedding(np.random.default_rng(0).normal(size=(30, 3)), np.arange(30) % 3 - 1)
    >>> len(ax.collections)  # the unlabeled samples, then classes 0 and 1
    3
    """
    axis_names = list(embedding.columns) if hasattr(embedding, "columns") else None
    Z = np.asarray(embedding, dtype=np.float64)
    if Z.ndim != 2 or Z.shape[1] < 2:
        raise ValueError(f"embedding must be a 2-D array with at least 2 columns; got shape {Z.shape}.")
    if len(dims) != 2 or not all(0 <= int(d) < Z.shape[1] for d in dims):
        raise ValueError(f"dims must be two column positions in [0, {Z.shape[1]}); got {dims!r}.")
    ax = _axes(ax)
    x, y = Z[:, int(dims[0])], Z[:, int(dims[1])]
    if labels is None:
        ax.scatter(x, y, s=point_size)
    else:
        labels = np.asarray(labels, dtype=object)
        if labels.shape != (Z.shape[0],):
            raise ValueError(f"labels must have one entry per sample ({Z.shape[0]}); got shape {labels.shape}.")
        missing = np.fromiter((_is_missing(v) for v in labels), dtype=bool, count=len(labels))
        if missing.any():
            ax.scatter(x[missing], y[missing], s=point_size, color="lightgrey", label="unlabeled")
        for category in sorted(set(labels[~missing]), key=str):
            chosen = np.fromiter((v == category for v in labels), dtype=bool, count=len(labels)) & ~missing
            ax.scatter(x[chosen], y[chosen], s=point_size, label=str(category))
        if legend:
            ax.legend(frameon=False, fontsize="small")
    names = axis_names or [f"dimension {d}" for d in range(Z.shape[1])]
    ax.set_xlabel(str(names[int(dims[0])]))
    ax.set_ylabel(str(names[int(dims[1])]))
    if title is not None:
        ax.set_title(title)
    return ax
