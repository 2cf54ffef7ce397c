"""The default training schedule of the embedders on small, wide cohorts: fit time and scores, old rule vs new.

Three parts (``--part``), all on the public API:

- ``fit-time``: default ``MaskedAutoencoder(random_state=seed)`` fits on a whole cohort (bladderbatch 57 x 22 283,
  RMA log2; HSMM 271 x 47 192, log1p of FPKM; all genes): CPU time (``time.process_time``), wall time, epochs run,
  best epoch; the old rule (its parameters given explicitly, see :func:`old_params`) and the installed default
  (``new``: since 0.2.1 MaskedAutoencoder's 100-step patience, which is the candidate ``s100``).
- ``select``: the candidate stopping rules (:data:`CANDIDATES`) against the old rule on other data sets than the two
  scored ones (a synthetic wide cohort from ``skssl.datasets.make_expression`` and tcga_acc.RNASeq2GeneNorm, log1p):
  the ``vime_probe`` scores at 10 % and 100 % of the labels, the epochs run and the best epoch, per seed.
- ``scores``: ``vime_probe`` (logistic regression on the embedding, the benchmark's protocol through
  ``skssl.benchmark.label_efficiency``) at 10 % and 100 % of the labels, old rule vs new default, on bladderbatch
  and HSMM; the embedder is fitted once per split (seed) and both fractions use it.

Every run appends one row per (data set, rule, seed, fraction) to ``--out`` (CSV), with the embedder's CPU and wall
time, epochs and best epoch; a run that finds its rows already there skips them, so the script can be stopped and
started again. ``--summary`` prints the paired comparison (mean of each rule, mean difference, seeds won).

Usage::

    python benchmarks/default_schedule.py --part fit-time --seeds 1 --out fit_time.csv   # random_state=0
    python benchmarks/default_schedule.py --part fit-time --rules new --seeds 3 --threads 2 --out fit_time.csv
    python benchmarks/default_schedule.py --part select --seeds 10 --out select.csv
    python benchmarks/default_schedule.py --part scores --seeds 10 --out scores.csv
    python benchmarks/default_schedule.py --summary --out scores.csv

The CPU time of a ``scores`` row is that of the whole split: the embedder's fit, the embedding and the two
logistic-regression probes. ``--threads 1`` (the default) runs torch on one thread: CPU time is then what an idle
machine's wall time would be, and scores compare across runs only at the same thread count (the last bits of a
matrix product depend on it). ``--threads 2`` is torch's default on the 2-core machine of docs/default_schedule.md.
"""

import argparse
import csv
import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from skssl import MaskedAutoencoder
from skssl.benchmark import label_efficiency, train_test_indices
from skssl.datasets import make_expression
from skssl.io import read_table

# (name, label column, log1p): the benchmark's reading of the shared data sets.
COHORTS = {
    "bladderbatch": ("cancer", False),
    "hsmm_myoblast": ("Hours", True),
    "tcga_acc.RNASeq2GeneNorm": ("C1A.C1B", True),
}
# The wide synthetic cohort of the selection: few samples, thousands of genes, as the cohorts the rule is for.
SYNTHETIC = {"n_samples": 80, "n_genes": 5000, "n_classes": 3, "random_state": 0}

# The old rule: skssl's "auto" schedule before this change (``resolve_schedule`` with AUTO_STEP_BUDGET=3000 and a
# patience of AUTO_PATIENCE_STEPS=200 optimisation steps, at least AUTO_MIN_PATIENCE=10 epochs).
OLD_RULE = {"steps": 3000, "patience_steps": 200, "min_patience": 10}
# The candidate stopping rules for small cohorts: stop once the epochs since the best one reach
# max(min_patience, ceil(relative * best_epoch)). Each is judged on the old rule's own run: its epochs are the same
# up to the candidate's stop (the stopping rule changes nothing before it), so the candidate's stop and best epoch
# follow from the old run's validation losses (``history_``), and its model is a refit for exactly that best epoch.
CANDIDATES = {
    "p10": {"min_patience": 10, "relative": 0.0},
    "p5": {"min_patience": 5, "relative": 0.0},
    "r25": {"min_patience": 5, "relative": 0.25},
    "r50": {"min_patience": 5, "relative": 0.5},
    "r25m3": {"min_patience": 3, "relative": 0.25},
    # The old rule with half its patience: 100 optimisation steps, at least 10 epochs (see docs/default_schedule.md
    # for why and when this candidate was added).
    "s100": {"min_patience": 10, "relative": 0.0, "patience_steps": 100},
}
FRACTIONS = (0.1, 1.0)
METRICS = ("balanced_accuracy", "f1_macro")


def steps_per_epoch(n_rows, validation_fraction=0.1):
    """Optimisation steps of an epoch of a default fit on ``n_rows`` rows: the same arithmetic as the estimators'
    "auto" schedule (validation split, batch size, remainder batch)."""
    n_val = int(round(validation_fraction * n_rows))
    n_val = 0 if n_val < 2 or n_rows - n_val < 2 else n_val
    n_train = n_rows - n_val
    batch = int(min(n_train, np.clip(n_train // 4, 32, 256)))
    return max(1, n_train // batch + (n_train % batch >= 2))


def old_params(n_rows, rule=OLD_RULE):
    """The ``MaskedAutoencoder`` parameters that make the old rule explicit for a fit on ``n_rows`` rows."""
    per_epoch = steps_per_epoch(n_rows)
    return {
        "max_epochs": int(np.clip(math.ceil(rule["steps"] / per_epoch), 3, 500)),
        "n_iter_no_change": max(rule["min_patience"], math.ceil(rule["patience_steps"] / per_epoch)),
    }


def candidate_stop(losses, min_patience, relative, patience_steps=0, per_epoch=1, tol=1e-4):
    """(stop epoch, best epoch) of a candidate rule on a run's validation losses, with the training loop's test of
    an improvement (a relative ``tol``); None when the run ended before the candidate would stop. A rule with
    ``patience_steps`` waits at least that many optimisation steps (``per_epoch`` a epoch)."""
    min_patience = max(min_patience, math.ceil(patience_steps / per_epoch))
    best, best_epoch, stale = math.inf, 1, 0
    for epoch, loss in enumerate(losses, 1):
        if loss < best - tol * (abs(best) if math.isfinite(best) else 0.0):
            best, best_epoch, stale = loss, epoch, 0
        else:
            stale += 1
        if stale >= max(min_patience, math.ceil(relative * best_epoch)):
            return epoch, best_epoch
    return None


def load(name, data_dir):
    """X (float32, samples x genes) and the labels of a shared data set, or of the synthetic cohort."""
    if name == "synthetic":
        X, y = make_expression(**SYNTHETIC)  # log2-CPM already: no log1p (as the benchmark's loader decides)
        return X.astype(np.float32), np.asarray(y).astype(str)
    column, log1p = COHORTS[name]
    table = read_table(Path(data_dir, f"{name}.expression.csv.gz"), sample_table=Path(data_dir, f"{name}.samples.csv"))
    labels = pd.Series(np.asarray(table.metadata[column], dtype=object))
    keep = labels.notna().to_numpy()
    X = np.asarray(table.X, dtype=np.float32)[keep]
    return (np.log1p(X) if log1p else X), labels[keep].astype(str).to_numpy()


def cpu_seconds():
    return time.process_time()


def fit_time(names, rules, random_states, data_dir, out):
    done = _done(out)
    for name in names:
        X, _ = load(name, data_dir)
        for random_state in random_states:
            for rule in rules:
                if (name, rule, random_state) in done:
                    continue
                params = {} if rule == "new" else old_params(X.shape[0])
                cpu, wall = cpu_seconds(), time.perf_counter()
                model = MaskedAutoencoder(random_state=random_state, **params).fit(X)
                cpu, wall = cpu_seconds() - cpu, time.perf_counter() - wall
                row = _row(name, rule, random_state, math.nan, X, model.n_iter_, model.best_epoch_, cpu, wall)
                _append(out, [row])
                print(
                    f"{name} {X.shape[0]} x {X.shape[1]} {rule} random_state={random_state}: {cpu:.1f} s CPU, "
                    f"{wall:.1f} s wall, {model.n_iter_} epochs (best {model.best_epoch_})",
                    flush=True,
                )


def _probe(X, y, name, seed, params):
    """``vime_probe`` at FRACTIONS for one split: its records, the fitted embedder and the CPU time of it all."""
    fitted = {}

    def keep(info):
        fitted.setdefault("model", info["pretrained"])

    cpu = cpu_seconds()
    records = label_efficiency(
        X,
        y,
        methods=["vime_probe"],
        fractions=FRACTIONS,
        seeds=[seed],
        embedder_params=params,
        device="cpu",
        dataset=name,
        as_frame=False,
        callback=keep,
    )
    return records, fitted["model"], cpu_seconds() - cpu


def scores(names, rules, seeds, data_dir, out):
    """The runs of ``rules`` per split: "old" (the old rule, explicit), "new" (the default) and names of CANDIDATES
    (judged on the old rule's run, see there); rows already in ``out`` are skipped."""
    done = _done(out)
    for name in names:
        X, y = load(name, data_dir)
        for seed in seeds:
            if all((name, rule, seed) in done for rule in rules):
                continue
            n_rows = len(train_test_indices(y, random_state=seed)[0])
            runs = {}
            if any(rule in CANDIDATES or rule == "old" and (name, rule, seed) not in done for rule in rules):
                records, old, cpu = _probe(X, y, name, seed, old_params(n_rows))
                runs["old"] = (records, old.n_iter_, old.best_epoch_, cpu)
                refits = {old.best_epoch_: records}
            for rule in rules:
                if rule == "old" or (name, rule, seed) in done:
                    continue
                if rule == "new":
                    records, model, cpu = _probe(X, y, name, seed, {})
                    runs[rule] = (records, model.n_iter_, model.best_epoch_, cpu)
                    continue
                losses = old.history_["validation_loss"]
                stop = candidate_stop(losses, **CANDIDATES[rule], per_epoch=steps_per_epoch(n_rows))
                if stop is None:
                    print(f"{name} seed {seed} {rule}: would run longer than the old rule; skipped", flush=True)
                    continue
                epochs, best = stop
                if best not in refits:  # the weights of epoch `best` of the same run
                    refits[best] = _probe(X, y, name, seed, {"max_epochs": best, "n_iter_no_change": best})[0]
                runs[rule] = (refits[best], epochs, best, math.nan)
            rows = []
            for rule, (records, epochs, best, cpu) in runs.items():
                if (name, rule, seed) in done:
                    continue
                for record in records:
                    row = _row(name, rule, seed, record["fraction"], X, epochs, best, cpu, record["pretrain_seconds"])
                    row.update({metric: record[metric] for metric in METRICS})
                    rows.append(row)
                scored = ", ".join(f"{r['fraction']:.0%} {r['balanced_accuracy']:.3f}" for r in records)
                print(
                    f"{name} seed {seed} {rule}: {scored}; {epochs} epochs (best {best}), CPU {cpu:.1f} s", flush=True
                )
            _append(out, rows)


def _row(name, rule, seed, fraction, X, epochs, best, cpu, wall):
    return {
        "dataset": name,
        "rule": rule,
        "seed": seed,
        "fraction": fraction,
        "n_samples": X.shape[0],
        "n_genes": X.shape[1],
        "epochs": epochs,
        "best_epoch": best,
        "cpu_seconds": round(cpu, 2),
        "wall_seconds": round(wall, 2),
    }


FIELDS = [
    "dataset",
    "rule",
    "seed",
    "fraction",
    "n_samples",
    "n_genes",
    "epochs",
    "best_epoch",
    "cpu_seconds",
    "wall_seconds",
    *METRICS,
]


def _done(out):
    if not os.path.exists(out):
        return set()
    table = pd.read_csv(out)
    return set(zip(table["dataset"], table["rule"], table["seed"].astype(int)))


def _append(out, rows):
    new = not os.path.exists(out)
    with open(out, "a", newline="") as handle:
        writer = csv.DictWriter(handle, FIELDS)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def summary(out, baseline="old"):
    """Paired comparison per data set, fraction and rule against ``baseline`` on the seeds both have."""
    table = pd.read_csv(out)
    scored = table[table["fraction"].notna()]
    lines = [
        (
            "| data set | labels | rule | seeds | balanced accuracy (rule / old) | difference | seeds won / lost "
            "| F1 macro difference | embedder CPU s (rule / old) | epochs (best) |"
        ),
        "|" + "---|" * 10,
    ]
    for (name, fraction), part in scored.groupby(["dataset", "fraction"], sort=False):
        base = part[part["rule"] == baseline].set_index("seed")
        for rule, rows in part[part["rule"] != baseline].groupby("rule", sort=False):
            rows = rows.set_index("seed")
            seeds = rows.index.intersection(base.index)
            if not len(seeds):
                continue
            a, b = rows.loc[seeds], base.loc[seeds]
            diff = a["balanced_accuracy"] - b["balanced_accuracy"]
            lines.append(
                f"| {name} | {fraction:.0%} | {rule} | {len(seeds)} | {a['balanced_accuracy'].mean():.3f} / "
                f"{b['balanced_accuracy'].mean():.3f} | {diff.mean():+.3f} (sd {diff.std():.3f}) | "
                f"{int((diff > 0).sum())} / {int((diff < 0).sum())} | "
                f"{(a['f1_macro'] - b['f1_macro']).mean():+.3f} | {a['cpu_seconds'].mean():.1f} / "
                f"{b['cpu_seconds'].mean():.1f} | {a['epochs'].mean():.0f} ({a['best_epoch'].mean():.0f}) / "
                f"{b['epochs'].mean():.0f} ({b['best_epoch'].mean():.0f}) |"
            )
    timed = table[table["fraction"].isna()]
    if len(timed):
        lines += ["", "| data set | rule | random_state | CPU s | wall s | epochs | best epoch |", "|" + "---|" * 7]
        for row in timed.itertuples():
            lines.append(
                f"| {row.dataset} | {row.rule} | {row.seed} | {row.cpu_seconds:.1f} | {row.wall_seconds:.1f} | "
                f"{row.epochs} | {row.best_epoch} |"
            )
    print("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["fit-time", "select", "scores"])
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--datasets", nargs="+", default=None)
    parser.add_argument("--rules", nargs="+", default=None, help="candidates (see CANDIDATES) or 'new' (the default)")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--out", default="default_schedule.csv")
    parser.add_argument("--summary", action="store_true", help="print the paired comparison of --out and exit")
    parser.add_argument("--baseline", default="old")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU time = an idle machine's wall)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.summary:
        return summary(args.out, args.baseline)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    if args.part == "fit-time":
        # --seeds here: the random_state of each fit (0, 1, ...); the fit-time bars are about random_state=0.
        fit_time(
            args.datasets or ["bladderbatch", "hsmm_myoblast"],
            args.rules or ["old", "new"],
            seeds,
            args.data_dir,
            args.out,
        )
    elif args.part in ("select", "scores"):
        # select: the candidates against the old rule on the selection sets; scores: old vs new on the scored cohorts.
        if args.part == "select":
            datasets, rules = ["synthetic", "tcga_acc.RNASeq2GeneNorm"], ["old", *(args.rules or CANDIDATES)]
        else:
            datasets, rules = ["bladderbatch", "hsmm_myoblast"], args.rules or ["old", "new"]
        scores(args.datasets or datasets, rules, seeds, args.data_dir, args.out)
    else:
        parser.error("give --part or --summary")


if __name__ == "__main__":
    main()
