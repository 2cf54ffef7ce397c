"""Command line: ``skssl-benchmark`` / ``python -m skssl.benchmark``.

Run with no arguments it benchmarks the default methods on the built-in synthetic cohort and writes
``skssl_benchmark/{results.csv, summary.csv, macro_f1.png, report.md}``, plus the journal of finished runs
(``journal.jsonl``, ``journal_config.json``) that ``--resume`` continues from.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import textwrap
import time
import warnings

DEFAULT_OUT = "skssl_benchmark"

# --quick: a smoke test of the whole pipeline in seconds (tiny data and networks, a couple of epochs).
QUICK_SYNTHETIC = {"n_samples": 90, "n_genes": 60}
QUICK_EMBEDDER = {"max_epochs": 2, "hidden_dims": (16,), "n_components": 4}
QUICK_CLASSIFIER = {"max_epochs": 3}
QUICK_FRACTIONS = (0.25, 1.0)
QUICK_SEEDS = (0,)


class _Interrupted(Exception):
    """Ctrl-C stopped the benchmark; the message says what is kept and how to go on."""


def _epochs(value):
    if value == "auto":
        return value
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {value!r}")
    return number


def _positive_int(value):
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def _non_negative_int(value):
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value!r}")
    return number


def _methods(value):
    """One ``--methods`` item: method names of the registry (or 'default' / 'all'), comma-separated or not."""
    from ._protocol import check_methods

    names = tuple(name for name in value.split(",") if name)
    try:
        check_methods(names)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return names


def _help_width():
    """The width argparse wraps its help to (the terminal's, less 2)."""
    return max(40, shutil.get_terminal_size().columns - 2)


def _methods_epilog(width):
    """The ``--help`` list of methods and their descriptions, from the registry (``*``: run by default)."""
    from ._methods import DEFAULT_METHODS, METHODS

    pad = max(map(len, METHODS)) + 4
    lines = ["methods (--methods; * = in 'default'):"]
    for name, method in METHODS.items():
        label = f"  {name}{'*' if name in DEFAULT_METHODS else ''}".ljust(pad)
        lines.append(textwrap.fill(method.description, width, initial_indent=label, subsequent_indent=" " * pad))
    return "\n".join(lines)


def build_parser():
    from . import DEFAULT_FRACTIONS, DEFAULT_SEEDS
    from ._journal import JOURNAL_FILE

    description = (
        "Label-efficiency benchmark of skssl's self-supervised embedders against supervised baselines. "
        "Writes results.csv, summary.csv, macro_f1.png and report.md into --out, each replaced atomically, and "
        f"appends every finished run to --out/{JOURNAL_FILE}, so that an interrupted run continues with --resume. "
        "Without --data it uses a synthetic cohort (skssl.datasets.make_expression) and takes a few minutes on "
        "2 CPU cores. `skssl-benchmark --transfer` runs the transfer protocol instead (pre-train on a pool of other "
        "studies, score held-out cohorts; see `skssl-benchmark --transfer --help`)."
    )
    parser = argparse.ArgumentParser(
        prog="skssl-benchmark",
        description=textwrap.fill(description, _help_width()),
        epilog=_methods_epilog(_help_width()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data",
        default=None,
        help="samples x genes CSV/TSV(.gz) file (first column the sample id), or a data set name resolved in "
        "--data-dir (e.g. bladderbatch, tcga_acc.RNASeq2GeneNorm, hsmm_myoblast); default: synthetic data",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder of NAME.expression.csv.gz / NAME.samples.csv files (default: $SKSSL_DATA_DIR or ../shared/data)",
    )
    parser.add_argument(
        "--labels",
        default=None,
        help="sample table CSV/TSV (first column the sample id); default: NAME.samples.csv next to --data",
    )
    parser.add_argument("--label-column", default=None, help="column of the sample table holding the class labels")
    parser.add_argument(
        "--fractions",
        nargs="+",
        type=float,
        default=None,
        help=f"labeled fractions of the train split, in (0, 1] (default: {' '.join(map(str, DEFAULT_FRACTIONS))})",
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=_non_negative_int,
        default=None,
        help=f"seeds of the splits and estimators (default: {' '.join(map(str, DEFAULT_SEEDS))})",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        type=_methods,
        default=[("default",)],
        help="methods (listed below; comma-separated names also work), 'default' (those marked *) or 'all' "
        "(default: default)",
    )
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument(
        "--top-genes",
        type=_positive_int,
        default=None,
        help="keep the N most variable genes (fitted on each train split); default: all genes",
    )
    parser.add_argument(
        "--log1p",
        choices=("auto", "yes", "no"),
        default="auto",
        help="apply log1p to the data; auto: only when the data are non-negative with a maximum above 100 "
        "(counts, FPKM, RSEM), not for log-scale data (default: auto)",
    )
    parser.add_argument(
        "--test-size", type=float, default=0.25, help="fraction of samples in the test split (default: 0.25)"
    )
    parser.add_argument(
        "--max-epochs",
        type=_epochs,
        default=None,
        help="epochs of every embedder and classifier ('auto': the estimators' own schedule of about 3000 "
        "steps); default: the embedders' own schedule, and per classifier fit the epochs that make about 300 "
        "optimisation steps",
    )
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        help="torch CPU threads (default: 1). The networks are small: more threads gain little, and on a busy "
        "machine intra-op threads that wait for each other make training many times slower",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help=f"continue an interrupted run in --out: skip the runs recorded in its {JOURNAL_FILE} (one line per "
        "finished (seed, method, fraction), written as each finishes) and run the rest; refused, naming the option, "
        "if the data or options differ from the journal's. Without --resume an existing journal in --out is "
        "replaced. results.csv is the same as an uninterrupted run's (except the wall-time columns)",
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show the progress line on stderr")
    # Hidden: a seconds-long smoke test of the whole pipeline (tiny data and networks), used by the tests.
    parser.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)
    return parser


def run(args, argv_text=""):
    """Run the benchmark described by parsed ``args``; return the paths written and the wall time."""
    from . import DEFAULT_FRACTIONS, DEFAULT_SEEDS
    from ._datasets import load_benchmark_data
    from ._protocol import (
        DEFAULT_CLASSIFIER_PARAMS,
        DEFAULT_EMBEDDER_PARAMS,
        check_fractions,
        check_methods,
        check_seeds,
    )
    from ._report import machine_info, write_outputs

    start, start_cpu = time.perf_counter(), time.process_time()
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    fractions = check_fractions(args.fractions or (QUICK_FRACTIONS if args.quick else DEFAULT_FRACTIONS))
    seeds = check_seeds(args.seeds or (QUICK_SEEDS if args.quick else DEFAULT_SEEDS))
    methods = check_methods([name for names in args.methods for name in names])
    embedder_params, classifier_params = {}, {}
    if args.quick:
        embedder_params.update(QUICK_EMBEDDER)
        classifier_params.update(QUICK_CLASSIFIER)
    if args.max_epochs is not None:
        embedder_params["max_epochs"] = classifier_params["max_epochs"] = args.max_epochs
    data = load_benchmark_data(
        args.data,
        labels=args.labels,
        label_column=args.label_column,
        data_dir=args.data_dir,
        log1p={"auto": "auto", "yes": True, "no": False}[args.log1p],
        synthetic_params=QUICK_SYNTHETIC if args.quick else None,
    )
    preprocessing = data["preprocessing"]
    if args.top_genes is not None:
        preprocessing += (
            f"; the {args.top_genes} most variable genes kept (HighlyVariableGenes fitted on each seed's train split)"
        )
    records = _run_journaled(args, data, methods, fractions, seeds, embedder_params, classifier_params)
    info = {
        "dataset": data["name"],
        "command": argv_text,
        "data_description": data["data_description"],
        "label_description": data["label_description"],
        "preprocessing": preprocessing,
        "test_size": args.test_size,
        "seeds": list(seeds),
        "machine": machine_info(args.device),
        "embedder_params": {**DEFAULT_EMBEDDER_PARAMS, **embedder_params},
        "classifier_params": {**DEFAULT_CLASSIFIER_PARAMS, **classifier_params},
        "start_time": start,
        "start_cpu": start_cpu,
    }
    paths = write_outputs(records, args.out, info)
    return paths, time.perf_counter() - start


def _config(args, data, methods, fractions, seeds, embedder_params, classifier_params):
    """What the runs of a journal depend on (see ``_journal.CONFIG_OPTIONS``): resuming needs all of it unchanged."""
    import hashlib

    import numpy as np
    import torch

    from .. import __version__
    from .._reading import resolve_device

    # The data themselves, not their file name: a changed file, label column or log1p choice changes every run.
    digest = hashlib.sha256(np.ascontiguousarray(data["X"], dtype=np.float32).tobytes())
    digest.update("\n".join(map(str, data["y"])).encode("utf-8"))
    try:
        device = str(resolve_device(args.device))
    except ValueError:
        device = str(args.device)
    return {
        "dataset": data["name"],
        "data_sha256": digest.hexdigest(),
        "methods": list(methods),
        "fractions": list(fractions),
        "seeds": list(seeds),
        "test_size": args.test_size,
        "top_genes": args.top_genes,
        "embedder_params": embedder_params,
        "classifier_params": classifier_params,
        "device": device,
        "skssl_version": __version__,
        "torch_version": torch.__version__,
    }


def _run_journaled(args, data, methods, fractions, seeds, embedder_params, classifier_params):
    """Run every run not yet in the journal of ``args.out``, appending each as it finishes; return all records in
    the order of an uninterrupted run (seed, then method, then fraction), whether or not this one resumed."""
    from ..exceptions import FitInterruptedWarning
    from ._journal import Journal, run_key
    from ._protocol import _check_params, run_protocol

    config = _config(args, data, methods, fractions, seeds, embedder_params, classifier_params)
    journal = Journal(args.out, config, resume=args.resume)
    total = len(seeds) * len(methods) * len(fractions)
    if journal.note:
        print(f"note: {journal.note}", file=sys.stderr)
    elif args.resume:
        print(
            f"Resuming: {len(journal.records)} of {total} runs already finished ({os.path.normpath(journal.path)}).",
            file=sys.stderr,
        )
    try:
        with journal, warnings.catch_warnings():
            # Ctrl-C inside a fit ends that fit early with a warning and a usable model; here it must stop the whole
            # benchmark instead, leaving that run out of the journal (its scores would be a shortened fit's).
            warnings.simplefilter("error", FitInterruptedWarning)
            run_protocol(
                data["X"],
                data["y"],
                methods=methods,
                fractions=fractions,
                seeds=seeds,
                test_size=args.test_size,
                top_genes=args.top_genes,
                embedder_params=_check_params(embedder_params, "embedder_params"),
                classifier_params=_check_params(classifier_params, "classifier_params"),
                device=args.device,
                dataset=data["name"],
                progress=not args.no_progress,
                callback=lambda run: journal.append(run["record"]),
                skip=journal.finished,
            )
    except (KeyboardInterrupt, FitInterruptedWarning):
        raise _Interrupted(
            f"interrupted; {len(journal.records)} of {total} runs finished and are kept in "
            f"{os.path.normpath(journal.path)}. Run the same command with --resume to do the rest."
        ) from None
    order = {key: i for i, key in enumerate((s, m, f) for s in seeds for m in methods for f in fractions)}
    return sorted((r for r in journal.records if run_key(r) in order), key=lambda r: order[run_key(r)])


def main(argv=None):
    """Entry point of ``skssl-benchmark``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--transfer" in argv:  # the transfer protocol has its own options (skssl-benchmark --transfer --help)
        from ._transfer_cli import main as transfer_main

        return transfer_main([a for a in argv if a != "--transfer"])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        paths, wall = run(args, "skssl-benchmark " + shlex.join(argv) if argv else "skssl-benchmark")
    except (ValueError, FileNotFoundError, ImportError) as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    except _Interrupted as exc:
        print(f"\n{parser.prog}: {exc}", file=sys.stderr)
        return 130  # the shell's status for a process ended by Ctrl-C (128 + SIGINT)
    print(f"Benchmark finished in {wall:.1f} s. Wrote:")
    for key in ("results", "summary", "plot", "report"):
        if key in paths:
            print(f"  {os.path.normpath(paths[key])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
