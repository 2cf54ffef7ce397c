"""``skssl-benchmark --transfer``: pre-train on a pool of studies, transfer to held-out cohorts, write a report.

Without ``--pool``, the pool and the cohorts come from :func:`skssl.make_compendium` (the pool written to
``--out/pool.npy`` study by study and read back as a memmap). ``--pool-sizes`` and ``--shared`` turn the run into a
curve: one transfer run per pool size (the first studies of the largest pool: the cohorts stay the same) and per
pool relevance (``make_compendium(shared=...)``: the fraction of the phenotype programs the pool carries at all).
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import shutil
import sys
import textwrap
import time

import numpy as np

from .._atomic import atomic_write
from ._methods import named
from ._protocol import METRICS
from ._report import _md_table, _pm, machine_info, plot_macro_f1, summarize_records, write_csv
from ._transfer import (
    BASELINES,
    DEFAULT_TRANSFER_METHODS,
    MIXING_ROWS,
    POOL_PCA_ROWS,
    RECOMMENDED_TRANSFER,
    TRANSFER_COMPENDIUM,
    TRANSFER_FRACTIONS,
    TRANSFER_METHODS,
    TRANSFER_TEST_SIZE,
    check_transfer_methods,
    gap_table,
    transfer_benchmark,
    transfer_verdict,
)

DEFAULT_OUT = "skssl_transfer"
#: Rows of one held-out cohort study: of the default run (TRANSFER_COMPENDIUM) and of --quick.
COHORT_STUDY_SIZE = 200
QUICK_COMPENDIUM = {"n_studies": 6, "samples_per_study": 40, "n_genes": 60, "n_cohort_studies": 2}
QUICK_COHORT_STUDY_SIZE = 40
QUICK_EMBEDDER = {"max_epochs": 2, "hidden_dims": (16,), "n_components": 4}
QUICK_FRACTIONS = (0.1, 1.0)
RESULT_COLUMNS = (
    "dataset",
    "shared",
    "n_pool",
    "method",
    "seed",
    "cohort",
    "fraction",
    "n_labeled",
    "n_train",
    "n_test",
    *METRICS,
    "fit_seconds",
    "pretrain_seconds",
)
CURVE_COLUMNS = (
    "shared",
    "n_pool",
    "fraction",
    "n_labeled",
    "best_baseline",
    "baseline_score",
    "best_pretrained",
    "pretrained_score",
    "gap_closed",
    "seeds_won",
    "seeds",
    "recommended_score",
    "recommended_gap_closed",
    "recommended_seeds_won",
)


def _positive_int(value):
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def _share(value):
    number = float(value)
    if not 0 <= number <= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1], got {value}")
    return number


def build_parser():
    description = (
        "Transfer benchmark: pre-train each embedder ONCE on a pool of other studies (read from disk batch by "
        "batch), then score held-out cohorts at 1, 2, 5, 10, 20 and 100 % of their labels against cohort logistic "
        "regression, cohort PCA + LR, pool PCA + LR and SSLClassifier() on the cohort alone (paired: same split and "
        "labeled rows for every method). Writes results.csv, summary.csv, macro_f1.png and report.md into --out. "
        "Without --pool it simulates a compendium with skssl.make_compendium (20 000 pool rows from 100 studies, 5 "
        "held-out cohorts of 200, 10 seeds; about 15 minutes on 2 CPU cores). --pool-sizes and --shared draw the "
        "curves over pool size and pool relevance (longer)."
    )
    width = min(shutil.get_terminal_size((100, 24)).columns, 100) - 2
    methods = "\n".join(
        textwrap.fill(
            m.description,
            width,
            initial_indent=f"  {name}{'*' if name in DEFAULT_TRANSFER_METHODS else ''}: ",
            subsequent_indent="      ",
        )
        for name, m in TRANSFER_METHODS.items()
    )
    parser = argparse.ArgumentParser(
        prog="skssl-benchmark --transfer",
        description=textwrap.fill(description, width),
        epilog=f"methods (* = default):\n{methods}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument(
        "--methods", nargs="+", default=["default"], help="method names (below), 'default' or 'all' (default: default)"
    )
    parser.add_argument(
        "--fractions",
        nargs="+",
        type=float,
        default=None,
        help=f"labeled fractions of each cohort's train block (default: {' '.join(map(str, TRANSFER_FRACTIONS))})",
    )
    parser.add_argument("--seeds", type=_positive_int, default=10, help="number of seeds (default: 10)")
    parser.add_argument(
        "--test-size",
        type=float,
        default=TRANSFER_TEST_SIZE,
        help=f"test fraction of each cohort (default: {TRANSFER_TEST_SIZE})",
    )
    parser.add_argument(
        "--pool-sizes",
        nargs="+",
        type=_positive_int,
        default=None,
        help="pool-size curve: pool sizes as multiples of one cohort study's rows, e.g. 1 10 100 1000 "
        "(the first studies of the largest pool; default: one pool of 100x)",
    )
    parser.add_argument(
        "--shared",
        nargs="+",
        type=_share,
        default=None,
        help="pool-relevance curve: make_compendium(shared=...) values, e.g. 0 0.33 0.67 1 (default: 1)",
    )
    parser.add_argument("--genes", type=_positive_int, default=None, help="genes of the simulated compendium (2000)")
    parser.add_argument(
        "--pool", default=None, help="your own pool: a samples x genes .npy file (read as a memmap; log-CPM)"
    )
    parser.add_argument(
        "--pool-studies", default=None, help="study of each pool row: a .npy or one-label-per-line text file"
    )
    parser.add_argument(
        "--cohort",
        nargs="+",
        default=None,
        help="your own held-out cohort(s): .npz files with arrays X (samples x the pool's genes) and y",
    )
    parser.add_argument("--max-epochs", type=_positive_int, default=None, help="cap the embedders' epochs")
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda (default: auto)")
    parser.add_argument("--threads", type=_positive_int, default=1, help="torch CPU threads (default: 1)")
    parser.add_argument("--seed", type=int, default=0, help="random_state of the simulated compendium (default: 0)")
    parser.add_argument("--no-progress", action="store_true", help="do not show the progress line on stderr")
    parser.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)
    return parser


def _read_studies(path):
    if path.endswith(".npy"):
        return np.load(path, allow_pickle=False)
    with open(path, encoding="utf-8") as f:
        return np.array([line.rstrip("\n") for line in f if line.strip()], dtype=object)


def _user_data(args):
    X_pool = np.load(args.pool, mmap_mode="r", allow_pickle=False)
    if X_pool.ndim != 2:
        raise ValueError(f"{args.pool}: the pool must be a 2-D samples x genes array; got shape {X_pool.shape}.")
    study = None if args.pool_studies is None else _read_studies(args.pool_studies)
    if study is not None and len(study) != X_pool.shape[0]:
        raise ValueError(
            f"{args.pool_studies}: {len(study)} study labels for {X_pool.shape[0]} pool rows; give one per row."
        )
    if not args.cohort:
        raise ValueError("--pool needs --cohort: one or more .npz files with arrays X and y.")
    X_cohorts, y_cohorts = [], []
    for path in args.cohort:
        with np.load(path, allow_pickle=False) as data:
            if "X" not in data or "y" not in data:
                raise ValueError(f"{path}: a cohort file holds two arrays, X and y (np.savez(path, X=X, y=y)).")
            X_cohorts.append(np.asarray(data["X"], dtype=np.float32))
            y_cohorts.append(np.asarray(data["y"]))
    return X_pool, study, X_cohorts, y_cohorts


def _simulate(args, shared, multiples):
    """The compendium for ``shared``, its pool large enough for the largest of ``multiples`` (pool sizes in cohort
    studies; None: the default pool). Returns the pool, its studies, the cohorts, their labels, the parameters and
    the rows of one cohort study."""
    from .. import make_compendium

    params = dict(QUICK_COMPENDIUM if args.quick else TRANSFER_COMPENDIUM)
    if args.genes is not None:
        params["n_genes"] = args.genes
    size = QUICK_COHORT_STUDY_SIZE if args.quick else COHORT_STUDY_SIZE
    per_study = params["samples_per_study"]
    wanted = max(m or (params["n_studies"] * per_study // size) for m in multiples)
    params["n_studies"] = math.ceil(wanted * size / per_study)
    params["n_cohort_samples"] = size * params["n_cohort_studies"]
    os.makedirs(args.out, exist_ok=True)
    suffix = "" if shared == 1.0 else f"_shared{shared:g}"
    data = make_compendium(
        **params, shared=shared, random_state=args.seed, pool_path=os.path.join(args.out, f"pool{suffix}.npy")
    )
    cohorts = np.unique(data.study_cohort)
    X_cohorts = [data.X_cohort[data.study_cohort == s] for s in cohorts]
    y_cohorts = [data.y_cohort[data.study_cohort == s] for s in cohorts]
    return data.X_pool, data.study_pool, X_cohorts, y_cohorts, params, size


def run(args, argv_text=""):
    """Run the transfer benchmark described by ``args``; return the paths written and the wall time."""
    import torch

    start, start_cpu = time.perf_counter(), time.process_time()
    torch.set_num_threads(args.threads)
    methods = check_transfer_methods([m for names in args.methods for m in names.split(",") if m])
    fractions = tuple(args.fractions or (QUICK_FRACTIONS if args.quick else TRANSFER_FRACTIONS))
    embedder_params = dict(QUICK_EMBEDDER) if args.quick else {}
    classifier_params = {"max_epochs": 3} if args.quick else {}
    if args.max_epochs is not None:
        embedder_params["max_epochs"] = args.max_epochs
    multiples = args.pool_sizes or [None]
    shared_values = args.shared or [1.0]
    records, curves, mixings, described = [], [], [], None
    if args.pool is not None and (args.shared or args.genes):
        raise ValueError("--shared and --genes shape the simulated compendium; they do not apply to --pool.")
    for shared in shared_values:
        if args.pool is not None:
            X_pool, study, X_cohorts, y_cohorts = _user_data(args)
            params, cohort_size = None, min(len(y) for y in y_cohorts)
        else:
            X_pool, study, X_cohorts, y_cohorts, params, cohort_size = _simulate(args, shared, multiples)
        described = described or _describe(args, params, X_pool, study, X_cohorts, y_cohorts)
        for multiple in multiples:
            n_pool = X_pool.shape[0] if multiple is None else min(multiple * cohort_size, X_pool.shape[0])
            pool, pool_study = X_pool[:n_pool], None if study is None else study[:n_pool]
            usable = [m for m in methods if "_study_" not in m or pool_study is not None]
            if len(usable) < len(methods) and args.pool is not None:
                print("note: no --pool-studies, so the *_study_* methods are skipped.", file=sys.stderr)
            if not args.no_progress:
                print(f"pool of {n_pool:,} rows (shared={shared:g}):", file=sys.stderr)
            mixing = {}
            found = transfer_benchmark(
                pool,
                X_cohorts,
                y_cohorts,
                pool_study=pool_study,
                methods=usable,
                fractions=fractions,
                seeds=1 if args.quick else args.seeds,
                test_size=args.test_size,
                embedder_params=embedder_params,
                classifier_params=classifier_params,
                device=args.device,
                progress=not args.no_progress,
                mixing=mixing,
            )
            mixings.append({"shared": shared, "n_pool": n_pool, "scores": mixing})
            for r in found:
                r["shared"] = shared
            records += found
            for row in gap_table(found):
                curves.append({"shared": shared, "n_pool": n_pool, **row})
    info = {
        "command": argv_text,
        "data": described,
        "machine": machine_info(args.device),
        "embedder_params": embedder_params,
        "wall_seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - start_cpu,
        "curve": args.pool_sizes is not None or args.shared is not None,
        "mixing": mixings,
    }
    return write_transfer_outputs(records, curves, args.out, info), info["wall_seconds"]


def _describe(args, params, X_pool, study, X_cohorts, y_cohorts):
    n_studies = "?" if study is None else len(np.unique(study))
    sizes = "/".join(str(len(y)) for y in y_cohorts)
    if params is None:
        return (
            f"your pool `{args.pool}` ({X_pool.shape[0]:,} rows x {X_pool.shape[1]:,} genes, {n_studies} studies) "
            f"and {len(y_cohorts)} cohort(s) of {sizes} samples"
        )
    shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
    return (
        f"simulated: skssl.make_compendium({shown}, random_state={args.seed}); other parameters its defaults. "
        f"Largest pool {X_pool.shape[0]:,} rows x {X_pool.shape[1]:,} genes from {n_studies} studies, written to "
        f"disk and read as a memmap; {len(y_cohorts)} held-out cohort studies of {sizes} samples"
    )


def _fmt(value):
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def _gap_rows(curves, key):
    rows = []
    for c in curves:
        gap = c.get("gap_closed", math.nan)
        rows.append(
            [
                *key(c),
                f"{c['fraction']:g} (n≈{c['n_labeled']:.0f})",
                f"{named(c.get('best_baseline', ''))} {c.get('baseline_score', math.nan):.3f}",
                f"{named(c.get('best_pretrained', ''))} {c.get('pretrained_score', math.nan):.3f}",
                "n/a" if math.isnan(gap) else f"{gap:+.0%}",
                f"{c.get('seeds_won', 0)}/{c.get('seeds', 0)}",
                _recommended(c),
            ]
        )
    return rows


def _recommended(c):
    if "recommended_score" not in c:
        return "not run"
    gap = c["recommended_gap_closed"]
    gap = "" if math.isnan(gap) else f", {gap:+.0%}"
    return f"{c['recommended_score']:.3f}{gap}, {c['recommended_seeds_won']}/{c['recommended_seeds']}"


def write_transfer_outputs(records, curves, out, info):
    """results.csv, summary.csv, curve.csv, macro_f1.png and report.md in ``out``; returns their paths."""
    os.makedirs(out, exist_ok=True)
    paths = {
        "results": os.path.join(out, "results.csv"),
        "summary": os.path.join(out, "summary.csv"),
        "curve": os.path.join(out, "curve.csv"),
        "report": os.path.join(out, "report.md"),
    }
    write_csv(records, paths["results"], RESULT_COLUMNS)
    groups = {}
    for r in records:
        groups.setdefault((r["shared"], r["n_pool"]), []).append(r)
    summary = []
    for (shared, n_pool), group in groups.items():
        summary += [{"shared": shared, "n_pool": n_pool, **row} for row in summarize_records(group)]
    columns = ("shared", "n_pool", "method", "fraction", "n_labeled", "n_runs", "f1_macro_mean", "f1_macro_sd")
    columns += ("accuracy_mean", "balanced_accuracy_mean", "roc_auc_mean", "fit_seconds_mean", "pretrain_seconds_mean")
    write_csv(summary, paths["summary"], columns)
    write_csv(curves, paths["curve"], CURVE_COLUMNS)
    main_key = max(groups, key=lambda k: (k[0], k[1]))  # the most relevant, largest pool: the headline run
    main = groups[main_key]
    main_summary = [s for s in summary if (s["shared"], s["n_pool"]) == main_key]
    plot = plot_macro_f1(
        main_summary, os.path.join(out, "macro_f1.png"), title=f"transfer from a pool of {main_key[1]:,} rows"
    )
    if plot:
        paths["plot"] = plot
    machine = info["machine"]
    lines = ["# Transfer benchmark: pre-train on a pool of studies, score held-out cohorts", ""]
    lines += [transfer_verdict(main), ""]
    if info.get("command"):
        lines += ["Command:", "", "```", info["command"], "```", ""]
    seeds = sorted({r["seed"] for r in main})
    lines += [
        "## Setup",
        "",
        f"- **Data**: {info['data']}",
        (
            f"- **Seeds**: {', '.join(map(str, seeds))}; seed s scores cohort s mod (number of cohorts), with its own "
            "stratified test block and nested labeled subsets; every method sees the same ones (paired)"
        ),
        (
            f"- **Machine**: {machine.get('platform', '?')}; processor {machine.get('processor', '?')}; "
            f"{machine.get('cpu_count', '?')} CPU(s); torch {machine.get('torch', '?')} with "
            f"{machine.get('torch_threads', '?')} thread(s); device {machine.get('device', '?')}"
        ),
        (
            f"- **Wall time**: {info['wall_seconds']:.1f} s in all (simulation, pre-training, every run, the files); "
            f"CPU time {info['cpu_seconds']:.1f} s"
        ),
        (
            f"- **Embedder parameters**: `{info['embedder_params']}` over the estimators' defaults; each embedder is "
            "pre-trained once on the pool (random_state=0) and used frozen on every cohort"
        ),
        "",
    ]
    if plot:
        lines += ["![macro-F1 vs labeled fraction](macro_f1.png)", ""]
    fractions = sorted({r["fraction"] for r in main})
    methods = list(dict.fromkeys(r["method"] for r in main))
    header = ["method"] + [f"{f:g}" for f in fractions] + ["pre-train s"]
    rows = []
    for method in methods:
        cells = [named(method)]
        for f in fractions:
            match = [s for s in main_summary if s["method"] == method and s["fraction"] == f]
            cells.append(_pm(match[0]["f1_macro_mean"], match[0]["f1_macro_sd"]) if match else "")
        pre = [s["pretrain_seconds_mean"] for s in main_summary if s["method"] == method]
        cells.append("" if not pre or math.isnan(pre[0]) else f"{pre[0]:.0f}")
        rows.append(cells)
    lines += [
        f"## Macro-F1 by labeled fraction (pool of {main_key[1]:,} rows; mean ± sd over seeds)",
        "",
        _md_table(header, rows),
        "",
        "## Gap closed",
        "",
        "At each fraction: the best baseline (the best mean among "
        + ", ".join(f"`{b}`" for b in BASELINES)
        + ") and the best pre-trained method; gap closed = (pre-trained − baseline) / (best baseline at 100 % − "
        "baseline); seeds won: seeds where the pre-trained method scores above that baseline. The last column: the "
        f"recommended route named in advance, {named(RECOMMENDED_TRANSFER)} (score, gap closed, seeds won against the "
        "same baseline).",
        "",
        _md_table(
            ["fraction", "best baseline", "best pre-trained", "gap closed", "seeds won", f"`{RECOMMENDED_TRANSFER}`"],
            _gap_rows([c for c in curves if (c["shared"], c["n_pool"]) == main_key], lambda c: []),
        ),
        "",
    ]
    main_mixing = [m["scores"] for m in info.get("mixing", []) if (m["shared"], m["n_pool"]) == main_key]
    if main_mixing and main_mixing[0]:
        rows = [[name, _fmt(v["pool_silhouette"]), _fmt(v["cohort_silhouette"])] for name, v in main_mixing[0].items()]
        lines += [
            "## Study mixing",
            "",
            (
                "Silhouette of the study labels on each representation (Euclidean): of "
                f"{MIXING_ROWS:,} random pool rows by pool study, and of the held-out cohorts stacked by cohort. "
                "Near 0 or below, studies are mixed; near 1, each study is a cluster of its own."
            ),
            "",
            _md_table(["representation", "pool studies", "held-out cohorts"], rows),
            "",
        ]
    if info.get("curve"):
        lines += [
            "## Curves over pool size and pool relevance",
            "",
            (
                "`shared`: the fraction of the cohort's phenotype programs that the pool carries at all "
                "(make_compendium); pool size in rows."
            ),
            "",
            _md_table(
                [
                    "shared",
                    "pool rows",
                    "fraction",
                    "best baseline",
                    "best pre-trained",
                    "gap closed",
                    "seeds won",
                    f"`{RECOMMENDED_TRANSFER}`",
                ],
                _gap_rows(curves, lambda c: [f"{c['shared']:g}", f"{c['n_pool']:,}"]),
            ),
            "",
        ]
    lines += ["## Methods", ""]
    lines += [f"- {named(m)}: {TRANSFER_METHODS[m].description}" for m in methods]
    lines += [
        "",
        f"`pool_pca_logreg` fits its PCA on {POOL_PCA_ROWS:,} random pool rows. "
        "Files: `results.csv` (one row per run), "
        "`summary.csv`, `curve.csv` (the gap table of every pool)" + (", `macro_f1.png`" if plot else "") + ".",
        "",
    ]
    with atomic_write(paths["report"]) as f:
        f.write("\n".join(lines))
    return paths


def main(argv=None):
    """``skssl-benchmark --transfer [options]``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        paths, wall = run(args, "skssl-benchmark --transfer " + shlex.join(argv))
    except (ValueError, FileNotFoundError, ImportError) as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        print(f"\n{parser.prog}: interrupted; nothing was written.", file=sys.stderr)
        return 130
    print(f"Transfer benchmark finished in {wall:.1f} s. Wrote:")
    for key in ("results", "summary", "curve", "plot", "report"):
        if key in paths:
            print(f"  {os.path.normpath(paths[key])}")
    return 0
