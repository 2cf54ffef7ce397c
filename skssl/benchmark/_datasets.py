"""Loading the benchmark's data: the built-in synthetic cohort, a samples x genes table, or a named shared data set."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

#: The built-in default data set (``make_expression``), sized so that the default run takes a few minutes on
#: 2 CPU cores.
SYNTHETIC_DEFAULTS = {"n_samples": 600, "n_genes": 1000, "n_classes": 3, "random_state": 0}

#: ``log1p="auto"`` applies log1p when the data are non-negative and their maximum exceeds this value, i.e. when
#: they look like counts, CPM/TPM/FPKM or RSEM values rather than log-scale data (whose values stay below ~25).
LOG1P_AUTO_THRESHOLD = 100.0

_SUFFIXES = (".expression.csv.gz", ".expression.csv", ".expression.tsv.gz", ".expression.tsv")
_LABEL_HINTS = {
    "bladderbatch": "cancer",
    "tcga_acc.RNASeq2GeneNorm": "C1A.C1B",
    "hsmm_myoblast": "Hours",
}


def default_data_dir():
    """``$SKSSL_DATA_DIR`` if set, else ``../shared/data`` (relative to the working directory)."""
    return os.environ.get("SKSSL_DATA_DIR", os.path.join("..", "shared", "data"))


def _available(data_dir):
    if not os.path.isdir(data_dir):
        return []
    names = set()
    for entry in os.listdir(data_dir):
        for suffix in _SUFFIXES:
            if entry.endswith(suffix):
                names.add(entry[: -len(suffix)])
    return sorted(names)


def resolve_data(data, labels=None, data_dir=None):
    """Paths of the expression table and of its sample table (or None) for a file path or a data set name."""
    path = Path(data)
    if path.is_file():
        expression = path
    else:
        data_dir = default_data_dir() if data_dir is None else data_dir
        candidates = [Path(data_dir) / f"{data}{suffix}" for suffix in _SUFFIXES]
        found = [c for c in candidates if c.is_file()]
        if not found:
            names = _available(data_dir)
            listing = f" Data sets found there: {', '.join(names)}." if names else ""
            raise FileNotFoundError(
                f"--data {data!r} is neither a file nor a data set name in the data folder {data_dir!r} "
                f"(looked for {data}.expression.csv[.gz]).{listing} Pass --data-dir to point elsewhere."
            )
        expression = found[0]
    if labels is None:
        # NAME.expression.csv.gz -> NAME.samples.csv next to it, when present.
        name = expression.name
        for suffix in _SUFFIXES:
            if name.endswith(suffix):
                sibling = expression.with_name(name[: -len(suffix)] + ".samples.csv")
                if sibling.is_file():
                    labels = sibling
                break
    elif not Path(labels).is_file():
        raise FileNotFoundError(f"--labels {str(labels)!r}: no such file.")
    return expression, (None if labels is None else Path(labels))


def dataset_name(path):
    name = Path(path).name
    for suffix in (*_SUFFIXES, ".csv.gz", ".tsv.gz", ".csv", ".tsv", ".txt.gz", ".txt"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _label_strings(values):
    """Metadata column -> object array of label strings, None where missing (integral floats shown as ints)."""
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        if v is None:
            out[i] = None
        elif isinstance(v, (float, np.floating)):
            out[i] = None if np.isnan(v) else (str(int(v)) if float(v).is_integer() else repr(float(v)))
        else:
            text = str(v).strip()
            out[i] = text if text and text.lower() not in ("na", "nan", "none", "null") else None
    return out


def decide_log1p(X, log1p):
    """Whether to apply log1p (``log1p`` is True, False or "auto") and the reason, for the report."""
    if log1p == "auto":
        minimum, maximum = float(np.min(X)), float(np.max(X))
        if minimum >= 0 and maximum > LOG1P_AUTO_THRESHOLD:
            return True, f"log1p applied (auto rule: values are >= 0 and the maximum {maximum:.4g} > 100)"
        return False, (
            f"no log1p (auto rule: applied only to non-negative data whose maximum exceeds 100; here "
            f"min {minimum:.4g}, max {maximum:.4g})"
        )
    if log1p:
        return True, "log1p applied (--log1p yes)"
    return False, "no log1p (--log1p no)"


def load_benchmark_data(
    data=None, *, labels=None, label_column=None, data_dir=None, log1p="auto", synthetic_params=None
):
    """Load the benchmark data; return a dict with ``X`` (float32), ``y`` (labels) and descriptions for the report.

    ``data=None`` is the built-in synthetic cohort (``skssl.datasets.make_expression``).
    """
    if data is None:
        if labels is not None or label_column is not None:
            raise ValueError("--labels / --label-column need --data (the built-in synthetic data has its own labels).")
        from ..datasets import make_expression

        params = {**SYNTHETIC_DEFAULTS, **(synthetic_params or {})}
        X, y = make_expression(**params)
        use_log1p, log_note = decide_log1p(X, log1p)
        if use_log1p:
            X = np.log1p(X)
        return {
            "X": X,
            "y": y,
            "name": "synthetic",
            "data_description": (
                f"synthetic `make_expression({', '.join(f'{k}={v!r}' for k, v in params.items())})` (log2-CPM), "
                f"{X.shape[0]} samples × {X.shape[1]} genes"
            ),
            "label_description": _class_counts(y, "class (ground truth)"),
            "preprocessing": log_note,
        }

    from ..io import read_table

    expression, sample_table = resolve_data(data, labels, data_dir)
    name = dataset_name(expression)
    loaded = read_table(expression, sample_table=sample_table)
    if sample_table is None:
        raise ValueError(
            f"No sample table for {str(expression)!r}: pass --labels SAMPLES.csv (first column the sample id) "
            "and --label-column."
        )
    columns = list(loaded.metadata)
    if label_column is None:
        hint = _LABEL_HINTS.get(name)
        suggestion = f" (e.g. --label-column {hint})" if hint else ""
        raise ValueError(
            f"--label-column is required with --data{suggestion}. Columns of {sample_table.name}: {', '.join(columns)}."
        )
    if label_column not in loaded.metadata:
        raise ValueError(
            f"Label column {label_column!r} is not in the sample table {sample_table.name}. Its columns: "
            f"{', '.join(columns)}."
        )
    y = _label_strings(loaded.metadata[label_column])
    keep = np.array([v is not None for v in y])
    X = loaded.X[keep]
    y = y[keep]
    n_dropped = int((~keep).sum())
    if not np.isfinite(X).all():
        bad = ~np.isfinite(X).all(axis=0)
        raise ValueError(
            f"{expression.name} has missing or non-finite values in {int(bad.sum())} gene(s) (e.g. "
            f"{list(loaded.genes[bad][:3])}); impute or drop them first."
        )
    use_log1p, log_note = decide_log1p(X, log1p)
    if use_log1p:
        if float(np.min(X)) < 0:
            raise ValueError("--log1p yes needs non-negative data; this table has negative values.")
        X = np.log1p(X)
    dropped = f" (of {loaded.n_samples}; {n_dropped} sample(s) without a label dropped)" if n_dropped else ""
    return {
        "X": np.ascontiguousarray(X, dtype=np.float32),
        "y": y.astype(str),
        "name": name,
        "data_description": (f"`{expression}` — {X.shape[0]} samples × {X.shape[1]} genes{dropped}"),
        "label_description": _class_counts(y.astype(str), f"column `{label_column}` of `{sample_table}`"),
        "preprocessing": log_note,
    }


def _class_counts(y, what):
    classes, counts = np.unique(y, return_counts=True)
    parts = ", ".join(f"{c} {n}" for c, n in zip(classes, counts))
    return f"{what}: {len(classes)} classes ({parts})"
