"""Tables, CSV files, the plot and the markdown report of a benchmark run (pandas and matplotlib optional)."""

from __future__ import annotations

import csv
import math
import os
import platform
import sys
import time

import numpy as np

from .._atomic import atomic_path, atomic_write
from ._methods import (
    BASELINE_METHODS,
    CLASSIFIER_STEP_BUDGET,
    EMBEDDER_STEP_BUDGET,
    METHOD_DESCRIPTIONS,
    RECOMMENDED_METHOD,
    embedder_method_parts,
    named,
    plain_name,
)
from ._protocol import METRICS, RESULT_COLUMNS

PLOT_FILE = "macro_f1.png"
RESULTS_FILE = "results.csv"
SUMMARY_FILE = "summary.csv"
REPORT_FILE = "report.md"

METRIC_LABELS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "f1_macro": "macro-F1",
    "roc_auc": "ROC-AUC",
}

SUMMARY_COLUMNS = (
    "method",
    "fraction",
    "n_labeled",
    "n_runs",
    *(f"{m}_{stat}" for m in METRICS for stat in ("mean", "sd")),
    "fit_seconds_mean",
    "pretrain_seconds_mean",
)


# ---------------------------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------------------------


def _import_pandas():
    """pandas, imported lazily (an optional dependency: the ``[io]`` extra)."""
    import pandas

    return pandas


def have_pandas():
    try:
        _import_pandas()
    except ImportError:
        return False
    return True


def as_table(rows, columns, as_frame):
    """``rows`` (list of dicts) as a pandas DataFrame or as the list itself.

    ``as_frame``: "auto" (DataFrame when pandas is installed), True (DataFrame, error without pandas) or False.
    """
    if as_frame == "auto":
        as_frame = have_pandas()
    if not as_frame:
        return [dict(r) for r in rows]
    try:
        pd = _import_pandas()
    except ImportError as exc:
        raise ImportError(
            "as_frame=True needs pandas, which is not installed: pip install 'skssl[io]' (or pandas), or pass "
            "as_frame=False to get a list of dicts."
        ) from exc
    return pd.DataFrame(list(rows), columns=list(columns))


def to_records(table):
    """A results / summary table (DataFrame or list of dicts) as a list of dicts with plain Python values."""
    if hasattr(table, "to_dict") and hasattr(table, "columns"):
        rows = table.to_dict(orient="records")
    else:
        rows = [dict(r) for r in table]
    return [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in r.items()} for r in rows]


def _isnan(value):
    return isinstance(value, float) and math.isnan(value)


def _mean_sd(values):
    values = [float(v) for v in values if v is not None and not _isnan(float(v))]
    if not values:
        return math.nan, math.nan
    mean = float(np.mean(values))
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
    return mean, sd


def summarize_records(records):
    """Mean and sample standard deviation (ddof=1; NaN for a single seed) over seeds, per method and fraction."""
    groups = {}
    for r in records:
        groups.setdefault((r["method"], float(r["fraction"])), []).append(r)
    method_order = list(dict.fromkeys(r["method"] for r in records))
    out = []
    for (method, fraction), runs in sorted(groups.items(), key=lambda kv: (method_order.index(kv[0][0]), kv[0][1])):
        row = {
            "method": method,
            "fraction": fraction,
            "n_labeled": float(np.mean([r["n_labeled"] for r in runs])),
            "n_runs": len(runs),
        }
        for metric in METRICS:
            row[f"{metric}_mean"], row[f"{metric}_sd"] = _mean_sd(r[metric] for r in runs)
        row["fit_seconds_mean"] = _mean_sd(r["fit_seconds"] for r in runs)[0]
        row["pretrain_seconds_mean"] = _mean_sd(r["pretrain_seconds"] for r in runs)[0]
        out.append(row)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------------


def _cell(value):
    if value is None or _isnan(value):
        return ""
    if isinstance(value, float):
        return format(value, ".6g")
    return str(value)


def write_csv(rows, path, columns):
    """Write ``rows`` (dicts) to ``path`` with the csv module; NaN and None become empty cells.

    The file is replaced atomically: a reader, or a run killed meanwhile, sees the old table or the new one.
    """
    with atomic_write(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for r in rows:
            writer.writerow([_cell(r.get(c)) for c in columns])


def plot_macro_f1(summary, path, title=None):
    """Macro-F1 (mean ± sd over seeds) against the labeled fraction, one line per method.

    Returns the path written, or None (with a note on stderr) when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        print(
            "note: matplotlib is not installed, so the plot is skipped; pip install 'skssl[plot]' to get "
            f"{os.path.basename(path)}.",
            file=sys.stderr,
        )
        return None
    methods = list(dict.fromkeys(r["method"] for r in summary))
    fractions = sorted({r["fraction"] for r in summary})
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for method in methods:
        rows = sorted((r for r in summary if r["method"] == method), key=lambda r: r["fraction"])
        x = [r["fraction"] for r in rows]
        mean = [r["f1_macro_mean"] for r in rows]
        sd = [0.0 if _isnan(r["f1_macro_sd"]) else r["f1_macro_sd"] for r in rows]
        color, marker, style = _style(method)
        label = plain_name(method)
        ax.errorbar(x, mean, yerr=sd, label=label, color=color, marker=marker, linestyle=style, capsize=3, ms=5)
    ax.set_xscale("log")
    ax.set_xticks(fractions)
    ax.set_xticklabels([f"{f:g}" for f in fractions])
    ax.minorticks_off()
    ax.set_xlabel("labeled fraction of the train split (log scale)")
    ax.set_ylabel("macro-F1 on the test split (mean ± sd over seeds)")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    with atomic_path(path, suffix=os.path.splitext(path)[1]) as tmp:  # the suffix tells matplotlib the format
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return path


# One colour per family (a baseline, or an embedder: its probe solid, its fine-tuning dashed).
_COLORS = {
    "logreg": "#7f7f7f",
    "pca_logreg": "#000000",
    "pool_pca_logreg": "#8c564b",
    "mlp_scratch": "#bcbd22",
    "scarf": "#1f77b4",
    "byol": "#9467bd",
    "vime": "#d62728",
    "vae": "#2ca02c",
}


def _style(method):
    """Colour, marker and line style of a method in the plot."""
    if method in ("ssl_ensemble", RECOMMENDED_METHOD):  # the recommended start: its own colour, not a baseline's
        return "#ff7f0e", "*", "-"
    if method in _COLORS:
        marker = {"logreg": "o", "pca_logreg": "s", "pool_pca_logreg": "P"}.get(method, "D")
        return _COLORS[method], marker, ":" if "logreg" in method else "-."
    parts = embedder_method_parts(method)
    if parts is None:
        return None, "x", "-"
    family, study_aware, kind = parts  # study-aware pre-training (the transfer benchmark): dotted
    marker = {"probe": "o", "finetune": "^", "prefit": "s"}[kind]
    style = ":" if study_aware else "-" if kind == "probe" else "--" if kind == "finetune" else "-."
    return _COLORS[family], marker, style


def _pm(mean, sd, digits=3):
    if _isnan(mean):
        return "n/a"
    if _isnan(sd):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def _md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_info(device="auto"):
    """Platform, processor, CPU count, torch version / threads / device of this process."""
    import torch

    from .._reading import resolve_device

    processor = platform.processor() or platform.machine()
    try:  # the model name is more telling than "x86_64"
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    processor = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        resolved = str(resolve_device(device))
    except ValueError:
        resolved = str(device)
    if resolved.startswith("cuda"):
        resolved += f" ({torch.cuda.get_device_name(torch.device(resolved))})"
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "platform": platform.platform(),
        "processor": processor,
        "cpu_count": affinity,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": resolved,
    }


def verdict(records):
    """One or two sentences: the best method at each fraction, and the recommended method against the best
    baseline (mean macro-F1 difference, seeds where it scores higher, paired on the same split and labels)."""
    fractions = sorted({r["fraction"] for r in records})
    methods = list(dict.fromkeys(r["method"] for r in records))

    def scores(method, fraction):
        return {r["seed"]: r["f1_macro"] for r in records if r["method"] == method and r["fraction"] == fraction}

    best, versus = [], []
    for f in fractions:
        means = {m: float(np.mean(list(scores(m, f).values()))) for m in methods}
        top = max(means, key=means.get)
        best.append(f"{f:g}: {named(top)} ({means[top]:.3f})")
        baselines = [m for m in BASELINE_METHODS if m in means]
        if RECOMMENDED_METHOD in means and baselines:
            base = max(baselines, key=means.get)
            ours, theirs = scores(RECOMMENDED_METHOD, f), scores(base, f)
            seeds = sorted(set(ours) & set(theirs))
            wins = sum(ours[s] > theirs[s] for s in seeds)
            ties = sum(ours[s] == theirs[s] for s in seeds)
            versus.append(
                f"{f:g}: {means[RECOMMENDED_METHOD] - means[base]:+.3f} against {named(base)} "
                f"(higher on {wins} of {len(seeds)} seeds" + (f", equal on {ties}" if ties else "") + ")"
            )
    text = f"**Verdict.** Best mean macro-F1 at each labeled fraction — {'; '.join(best)}."
    if versus:
        text += f" {named(RECOMMENDED_METHOD)} against the better baseline at each fraction — {'; '.join(versus)}."
    return text + _self_supervised_sentence(records, methods, fractions)


def _self_supervised_sentence(records, methods, fractions):
    """Whether any self-supervised method (an embedder's probe or fine-tuning) beat the better baseline in mean."""
    ssl = [m for m in methods if m.endswith(("_probe", "_finetune")) and m != "pca_logreg"]
    baselines = [m for m in BASELINE_METHODS if m in methods]
    if not ssl or not baselines:
        return ""

    def mean(method, fraction):
        values = [r["f1_macro"] for r in records if r["method"] == method and r["fraction"] == fraction]
        return float(np.mean(values)) if values else math.nan

    wins = []
    for f in fractions:
        base = max(mean(b, f) for b in baselines)
        wins += [f"{named(m)} at {f:g} ({mean(m, f) - base:+.3f})" for m in ssl if mean(m, f) > base]
    if not wins:
        return (
            " No self-supervised method (the embedders' probes and fine-tunings) beat the better of logistic "
            "regression and PCA + logistic regression at any fraction."
        )
    return f" Self-supervised methods above the better baseline: {', '.join(wins)}."


def write_report(records, summary, path, info):
    """Write the markdown report: what was measured, on what, how long, the plot and the tables."""
    methods = list(dict.fromkeys(r["method"] for r in summary))
    fractions = sorted({r["fraction"] for r in summary})
    machine = info.get("machine", {})
    lines = [f"# Label-efficiency benchmark: {info.get('dataset', 'data')}", "", verdict(records), ""]
    if info.get("command"):
        lines += ["Command:", "", "```", info["command"], "```", ""]
    lines += ["## Setup", ""]
    lines.append(f"- **Data**: {info.get('data_description', '')}")
    if info.get("label_description"):
        lines.append(f"- **Labels**: {info['label_description']}")
    if info.get("preprocessing"):
        lines.append(f"- **Preprocessing**: {info['preprocessing']}")
    n_train = sorted({r["n_train"] for r in records})
    n_test = sorted({r["n_test"] for r in records})
    n_features = sorted({r["n_features"] for r in records})
    lines.append(
        f"- **Splits**: stratified test split of {info.get('test_size', 0.25):g} "
        f"({'/'.join(map(str, n_test))} test, {'/'.join(map(str, n_train))} train samples), "
        f"{'/'.join(map(str, n_features))} features used"
    )
    lines.append(f"- **Labeled fractions** of the train split: {', '.join(f'{f:g}' for f in fractions)}")
    lines.append(f"- **Seeds**: {', '.join(str(s) for s in info.get('seeds', []))} ({len(records)} runs)")
    lines.append(
        f"- **Machine**: {machine.get('platform', '?')}; processor {machine.get('processor', '?')}; "
        f"{machine.get('cpu_count', '?')} CPU(s) available; Python {machine.get('python', '?')}, "
        f"torch {machine.get('torch', '?')} with {machine.get('torch_threads', '?')} thread(s)"
    )
    lines.append(f"- **Torch device**: {machine.get('device', '?')}")
    if "wall_seconds" in info:
        lines.append(
            f"- **Wall time**: {info['wall_seconds']:.1f} s (loading the data, all runs, the CSV files and the plot)"
            + (f"; CPU time {info['cpu_seconds']:.1f} s (this process, all threads)" if "cpu_seconds" in info else "")
        )
    lines += [""]
    lines += [
        (
            "Protocol: for each seed a stratified test split is drawn first and nothing is fitted on it. The "
            "unsupervised and self-supervised parts (PCA, the embedders) are fitted once per seed on the whole "
            "train split with its labels hidden, and reused for every labeled fraction; the supervised parts "
            "(logistic regressions, heads, fine-tuning, the from-scratch MLP) are fitted on the labeled subset only "
            "(stratified, nested across fractions, at least one sample per class). Standardisation is fitted inside "
            "each pipeline on its own training data. Metrics are computed on the test split; mean ± sd "
            "(sample sd) over seeds."
        ),
        "",
    ]
    if info.get("plot"):
        lines += [f"![macro-F1 vs labeled fraction]({info['plot']})", ""]
    else:
        lines += ["(Plot skipped: matplotlib is not installed; `pip install 'skssl[plot]'`.)", ""]

    n_lab = {f: [r["n_labeled"] for r in summary if r["fraction"] == f] for f in fractions}
    header = ["method"] + [f"{f:g} (n≈{np.mean(n_lab[f]):.0f})" for f in fractions]
    rows = []
    for method in methods:
        cells = [named(method)]
        for f in fractions:
            match = [r for r in summary if r["method"] == method and r["fraction"] == f]
            cells.append(_pm(match[0]["f1_macro_mean"], match[0]["f1_macro_sd"]) if match else "")
        rows.append(cells)
    lines += ["## Macro-F1 by labeled fraction (mean ± sd over seeds)", "", _md_table(header, rows), ""]

    header = ["method", "fraction", "n labeled", *(METRIC_LABELS[m] for m in METRICS), "fit s", "pre-train s"]
    rows = []
    for r in summary:
        rows.append(
            [
                named(r["method"]),
                f"{r['fraction']:g}",
                f"{r['n_labeled']:.0f}",
                *(_pm(r[f"{m}_mean"], r[f"{m}_sd"]) for m in METRICS),
                f"{r['fit_seconds_mean']:.2f}",
                "" if _isnan(r["pretrain_seconds_mean"]) else f"{r['pretrain_seconds_mean']:.1f}",
            ]
        )
    lines += ["## All metrics", "", _md_table(header, rows), ""]
    lines += [
        (
            "ROC-AUC is one-vs-rest, macro-averaged for more than 2 classes. `fit s` is the supervised fit time of "
            "one run; `pre-train s` the time of the shared unsupervised fit of its seed (done once, reused for "
            "every fraction)."
        ),
        "",
        "## Methods",
        "",
    ]
    lines += [f"- {named(m)}: {METHOD_DESCRIPTIONS.get(m, '')}" for m in methods]
    if info.get("embedder_params") is not None:

        def budget(params, steps):
            if "max_epochs" in params:
                return f"max_epochs={params['max_epochs']!r}"
            if steps is None:
                return "the estimators' own schedule (about 3 000 optimisation steps, early stopping)"
            return f"max_epochs set per fit to about {steps} optimisation steps"

        emb, clf = info["embedder_params"], info.get("classifier_params") or {}
        lines += [
            "",
            (
                f"Embedder parameters (every embedder, and the encoder of `mlp_scratch`): `{emb}`, "
                f"{budget(emb, EMBEDDER_STEP_BUDGET)}; other parameters are the estimators' defaults. "
                f"SSLClassifier (`mlp_scratch`, `*_finetune`): `{clf}`, {budget(clf, CLASSIFIER_STEP_BUDGET)}, "
                "linear head, full fine-tuning. Logistic regressions: scikit-learn defaults (L2, C=1) on "
                "standardised inputs. PCA: up to 32 components."
            ),
        ]
    lines += [
        "",
        "Files: `results.csv` (one row per run), `summary.csv` (mean and sd per method and fraction)"
        + (f", `{info['plot']}`" if info.get("plot") else "")
        + ".",
        "",
    ]
    with atomic_write(path) as f:
        f.write("\n".join(lines))
    return path


def write_outputs(records, out, info):
    """Write results.csv, summary.csv, the plot and report.md into ``out``; return their paths.

    Parameters
    ----------
    records : list of dict
        The runs, as returned by :func:`label_efficiency` with ``as_frame=False``.
    out : str or path-like
        Output folder (created if needed).
    info : dict
        What the report says about the run: ``dataset``, ``command``, ``data_description``, ``label_description``,
        ``preprocessing``, ``test_size``, ``seeds``, ``machine``, ``embedder_params``, ``classifier_params`` and
        ``start_time`` (a ``time.perf_counter()`` value, for the wall time); all optional.

    Returns
    -------
    paths : dict of str to str
        ``"results"``, ``"summary"``, ``"report"`` and, when matplotlib is installed, ``"plot"``: the files written.

    Examples
    --------
    >>> import tempfile
    >>> from skssl.benchmark import label_efficiency, write_outputs
    >>> from skssl.datasets import make_expression
    >>> X, y = make_expression(n_samples=60, n_genes=30, random_state=0)
    >>> results = label_efficiency(X, y, methods=["logreg"], fractions=[0.5, 1.0], seeds=[0], as_frame=False)
    >>> paths = write_outputs(results, tempfile.mkdtemp(), {"dataset": "demo"})
    >>> sorted(paths)
    ['plot', 'report', 'results', 'summary']
    """
    os.makedirs(out, exist_ok=True)
    summary = summarize_records(records)
    paths = {"results": os.path.join(out, RESULTS_FILE), "summary": os.path.join(out, SUMMARY_FILE)}
    write_csv(records, paths["results"], RESULT_COLUMNS)
    write_csv(summary, paths["summary"], SUMMARY_COLUMNS)
    plot = plot_macro_f1(summary, os.path.join(out, PLOT_FILE), title=info.get("dataset"))
    if plot:
        paths["plot"] = plot
    info = {**info, "plot": PLOT_FILE if plot else None}
    if "start_time" in info:
        info["wall_seconds"] = time.perf_counter() - info["start_time"]
    if "start_cpu" in info:
        info["cpu_seconds"] = time.process_time() - info["start_cpu"]
    paths["report"] = write_report(records, summary, os.path.join(out, REPORT_FILE), info)
    return paths
