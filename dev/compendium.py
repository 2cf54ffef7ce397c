"""Compendium scale (issue 14): pre-train on a large multi-study compendium on disk, transfer to new studies.

1. Builds a synthetic compendium of ``--rows`` x ``--genes`` log-CPM profiles (default 100 000 x 5 000) from many
   studies and writes it, study by study, to a float32 ``np.memmap`` file (never whole in memory). The biology
   (gene baselines, negative-binomial dispersions, gene programs and the class means of the phenotypes) is that of
   one :func:`skssl.make_expression` cohort; each compendium study adds its own gene-wise log-fold shift (the
   study effect, spread 0.3 like make_expression's batches), its own sequencing depth (log-normal around 2e6,
   spread 0.5 across studies, 0.35 within) and its own mix of the phenotypes (Dirichlet), and the counts are
   negative-binomial draws converted to log2(CPM + 1).
2. Pre-trains a default :class:`skssl.MaskedAutoencoder` on the memmap itself (batches read from disk; progress on
   stdout).
3. Held-out studies, absent from the compendium: the make_expression cohort that supplied the biology, with its
   own batches as studies (``n_batches``). For each seed (paired: the same train/test split and the same labeled
   subset for every method) and each fraction of labels (1, 5, 20 % of the training half), macro-F1 on the test
   half of:

   - ``SSLClassifier(prefit)``: ``SSLClassifier(embedder=<pre-trained MAE>, prefit=True)`` (the default ensemble
     plus logistic regression on the pre-trained embedding; the training half's unlabeled rows shape it);
   - ``MAE embedding + LR``: logistic regression on the pre-trained embedding (standardised);
   - ``LR (cohort)``: logistic regression on the standardised genes of the labeled rows;
   - ``PCA (cohort) + LR``: 32 principal components of the cohort's training half (all its rows, labels unused);
   - ``PCA (compendium) + LR``: 32 principal components of a 10 000-row random sample of the compendium.

Reports the pre-training's samples/s, peak RSS (``resource.getrusage``), wall time and the table; ``--json PATH``
writes everything.

Usage::

    python dev/compendium.py --small                   # 5 000 x 500, a few minutes on 2 cores
    python dev/compendium.py --json compendium.json    # 100 000 x 5 000 (2 GB file under --dir)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skssl
from skssl import MaskedAutoencoder, SSLClassifier, make_expression

FRACTIONS = (0.01, 0.05, 0.20)
METHODS = ("SSLClassifier(prefit)", "MAE embedding + LR", "LR (cohort)", "PCA (cohort) + LR", "PCA (compendium) + LR")
STUDY_SHIFT_SD = 0.3  # gene-wise log-fold study effect, as make_expression's batch effect
DEPTH_SD_ACROSS, DEPTH_SD_WITHIN = 0.5, 0.35  # log-normal spread of sequencing depth across / within studies
N_COMPONENTS = 32
PCA_SAMPLE = 10_000


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def write_compendium(path, rows, genes, n_studies, biology, seed):
    """Simulate the compendium study by study and append each block to ``path`` (plain writes: no mapping, so the
    file's pages do not count in this process's RSS). Returns the study of each row."""
    rng = np.random.default_rng(seed)
    base_log = np.log(biology.base_expression).astype(np.float32)
    loadings = biology.loadings.astype(np.float32)
    shape = (1.0 / biology.dispersion).astype(np.float32)
    n_classes = len(biology.class_means)
    sizes = np.full(n_studies, rows // n_studies)
    sizes[: rows % n_studies] += 1
    study_of_row = np.repeat(np.arange(n_studies), sizes)
    started = time.perf_counter()
    with open(path, "wb") as handle:
        for study, size in enumerate(sizes):
            y = rng.choice(n_classes, size=size, p=rng.dirichlet(np.ones(n_classes)))
            activities = rng.standard_normal((size, loadings.shape[0])).astype(np.float32)
            activities[:, biology.class_programs] += biology.class_means[y].astype(np.float32)
            shift = (STUDY_SHIFT_SD * rng.standard_normal(genes)).astype(np.float32)
            logits = activities @ loadings + base_log + shift
            logits -= logits.max(axis=1, keepdims=True)
            proportions = np.exp(logits)
            proportions /= proportions.sum(axis=1, keepdims=True)
            depth = 2e6 * np.exp(DEPTH_SD_ACROSS * rng.standard_normal() + DEPTH_SD_WITHIN * rng.standard_normal(size))
            mu = proportions * depth[:, None].astype(np.float32)
            counts = rng.negative_binomial(shape, shape / (shape + mu)).astype(np.float32)
            library = np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
            handle.write(np.log2(counts / library * 1e6 + 1.0).astype(np.float32).tobytes())
            if (study + 1) % max(1, n_studies // 10) == 0 or study + 1 == n_studies:
                done = int(sizes[: study + 1].sum())
                log(
                    f"compendium: {study + 1}/{n_studies} studies, {done:,} rows "
                    f"({time.perf_counter() - started:.0f} s)"
                )
    return study_of_row


def read_sample(path, rows, genes):
    """Rows ``rows`` (sorted) of the float32 file at ``path``, read with plain reads: indexing the memmap with
    10 000 rows scattered over the file would map (fault-around) most of its pages into this process, up to the
    whole 2 GB file in the resident set."""
    out = np.empty((len(rows), genes), dtype=np.float32)
    row_bytes = genes * 4
    with open(path, "rb") as handle:
        for i, row in enumerate(rows):
            handle.seek(int(row) * row_bytes)
            out[i] = np.frombuffer(handle.read(row_bytes), dtype=np.float32)
    return out


def labeled_subset(y_pool, fraction, rng):
    """Indices into the pool: one row of each class, then random rows up to ``fraction`` of the pool."""
    classes = np.unique(y_pool)
    n_labeled = max(len(classes), int(round(fraction * len(y_pool))))
    first = [rng.choice(np.flatnonzero(y_pool == c)) for c in classes]
    rest = rng.permutation(np.setdiff1d(np.arange(len(y_pool)), first))[: n_labeled - len(first)]
    return np.sort(np.concatenate([first, rest]).astype(int))


def logistic_regression(seed):
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))


def evaluate(X_held, y_held, Z_held, embedder, pca_compendium, seeds):
    """Macro-F1 per (fraction, method, seed); every method sees the same split and labeled rows for a seed."""
    scores = {f: {m: [] for m in METHODS} for f in FRACTIONS}
    P_held = pca_compendium.transform(X_held)
    for seed in seeds:
        pool, test = train_test_split(np.arange(len(y_held)), test_size=0.5, stratify=y_held, random_state=seed)
        pool = np.sort(pool)
        pca_cohort = PCA(n_components=min(N_COMPONENTS, len(pool) - 1), random_state=seed).fit(X_held[pool])
        for fraction in FRACTIONS:
            labeled = pool[labeled_subset(y_held[pool], fraction, np.random.default_rng(seed))]
            y_test = y_held[test]

            def score(predicted, y_test=y_test):
                return float(f1_score(y_test, predicted, average="macro"))

            y_semi = np.full(len(pool), -1)
            y_semi[np.searchsorted(pool, labeled)] = y_held[labeled]
            clf = SSLClassifier(embedder=embedder, prefit=True, random_state=seed)
            clf.fit(X_held[pool], y_semi)
            scores[fraction]["SSLClassifier(prefit)"].append(score(clf.predict(X_held[test])))
            lr = logistic_regression(seed).fit(Z_held[labeled], y_held[labeled])
            scores[fraction]["MAE embedding + LR"].append(score(lr.predict(Z_held[test])))
            lr = logistic_regression(seed).fit(X_held[labeled], y_held[labeled])
            scores[fraction]["LR (cohort)"].append(score(lr.predict(X_held[test])))
            lr = logistic_regression(seed).fit(pca_cohort.transform(X_held[labeled]), y_held[labeled])
            scores[fraction]["PCA (cohort) + LR"].append(score(lr.predict(pca_cohort.transform(X_held[test]))))
            lr = logistic_regression(seed).fit(P_held[labeled], y_held[labeled])
            scores[fraction]["PCA (compendium) + LR"].append(score(lr.predict(P_held[test])))
        log(f"seed {seed} done; peak RSS {peak_rss_mb():.0f} MB")
    return scores


def table(scores, n_pool, n_classes):
    """Markdown table: mean macro-F1 (sd) per method and fraction, and on how many seeds the first two methods
    beat the better of the three baselines of that seed."""
    header = (
        "| method | " + " | ".join(f"{f:.0%} ({max(n_classes, round(f * n_pool))} labels)" for f in FRACTIONS) + " |"
    )
    lines = [header, "|---|" + "---|" * len(FRACTIONS)]
    baselines = ("LR (cohort)", "PCA (cohort) + LR", "PCA (compendium) + LR")
    for method in METHODS:
        cells = []
        for fraction in FRACTIONS:
            values = np.array(scores[fraction][method])
            cell = f"{values.mean():.3f} ({values.std():.3f})"
            if method not in baselines:
                best = np.max([scores[fraction][b] for b in baselines], axis=0)
                cell += f", > best baseline on {int(np.sum(values > best + 1e-12))}/{len(values)}"
            cells.append(cell)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="5 000 x 500, 10 studies, 600 held-out rows")
    parser.add_argument("--rows", type=int, help="compendium rows (default 100 000; 5 000 with --small)")
    parser.add_argument("--genes", type=int, help="genes (default 5 000; 500 with --small)")
    parser.add_argument("--studies", type=int, help="compendium studies (default rows / 500, at least 2)")
    parser.add_argument("--heldout-rows", type=int, help="rows of the held-out studies (default 2 000; 600 --small)")
    parser.add_argument("--heldout-studies", type=int, default=4, help="held-out studies (default 4)")
    parser.add_argument("--seeds", type=int, default=5, help="evaluation seeds (default 5)")
    parser.add_argument("--max-epochs", default="auto", help="MaskedAutoencoder max_epochs (default auto)")
    parser.add_argument("--dir", default="/tmp", help="folder of the memmap file (default /tmp)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    rows = args.rows or (5_000 if args.small else 100_000)
    genes = args.genes or (500 if args.small else 5_000)
    n_studies = args.studies or max(2, rows // 500)
    heldout_rows = args.heldout_rows or (600 if args.small else 2_000)
    max_epochs = args.max_epochs if args.max_epochs == "auto" else int(args.max_epochs)
    seeds = list(range(args.seeds))

    started = time.perf_counter()
    load = os.getloadavg()
    log(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, load average {load[0]:.1f}; torch threads "
        f"{__import__('torch').get_num_threads()}; skssl {skssl.__version__}"
    )
    X_held, y_held, biology = make_expression(
        heldout_rows, genes, n_batches=args.heldout_studies, random_state=0, return_info=True
    )
    del biology["counts"]  # the held-out raw counts are not needed; keep memory bounded
    path = Path(args.dir) / f"skssl_compendium_{rows}x{genes}.f32"
    log(
        f"writing the compendium: {rows:,} x {genes:,} from {n_studies} studies to {path} "
        f"({rows * genes * 4 / 1e9:.2f} GB)"
    )
    t0 = time.perf_counter()
    write_compendium(path, rows, genes, n_studies, biology, seed=1)
    generate_seconds = time.perf_counter() - t0
    rss = {"generation": peak_rss_mb()}  # ru_maxrss is monotone: each entry is the peak up to the end of that step
    log(f"generation: {generate_seconds:.0f} s; peak RSS {rss['generation']:.0f} MB")
    compendium = np.memmap(path, dtype=np.float32, mode="r", shape=(rows, genes))

    log(f"pre-training MaskedAutoencoder(max_epochs={max_epochs!r}) on the memmap")
    t0 = time.perf_counter()
    embedder = MaskedAutoencoder(max_epochs=max_epochs, random_state=0, verbose=1).fit(compendium)
    pretrain_seconds = time.perf_counter() - t0
    samples_per_s = embedder.n_iter_ * rows / pretrain_seconds
    rss["pre-training"] = peak_rss_mb()
    log(
        f"pre-training: {embedder.n_iter_} epochs in {pretrain_seconds:.0f} s = {samples_per_s:,.0f} samples/s "
        f"(training and validation rows), batch {embedder.batch_size_}; peak RSS {peak_rss_mb():.0f} MB"
    )

    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(rows, size=min(PCA_SAMPLE, rows), replace=False))
    pca_compendium = PCA(n_components=N_COMPONENTS, random_state=0).fit(read_sample(path, sample, genes))
    rss["PCA sample"] = peak_rss_mb()
    Z_held = embedder.transform(X_held)
    rss["transform"] = peak_rss_mb()
    log(f"PCA of a {len(sample):,}-row sample and transform of the held-out rows; peak RSS {rss['transform']:.0f} MB")
    log(f"held-out: {heldout_rows} rows from {args.heldout_studies} studies; evaluating {len(seeds)} seeds")
    t0 = time.perf_counter()
    scores = evaluate(X_held, y_held, Z_held, embedder, pca_compendium, seeds)
    evaluate_seconds = time.perf_counter() - t0
    rss["evaluation"] = peak_rss_mb()
    wall = time.perf_counter() - started

    n_pool = heldout_rows // 2
    text = table(scores, n_pool, len(np.unique(y_held)))
    summary = (
        f"compendium {rows:,} x {genes:,} ({n_studies} studies), held-out {heldout_rows} rows "
        f"({args.heldout_studies} studies, {n_pool} in the training half); seeds {seeds}; macro-F1 mean (sd)\n"
        f"generate {generate_seconds:.0f} s, pre-train {pretrain_seconds:.0f} s ({embedder.n_iter_} epochs, "
        f"{samples_per_s:,.0f} samples/s), evaluate {evaluate_seconds:.0f} s, wall {wall:.0f} s; "
        f"peak RSS {peak_rss_mb():.0f} MB (after "
        + ", ".join(f"{step} {value:.0f}" for step, value in rss.items())
        + f"); torch threads {__import__('torch').get_num_threads()}; "
        f"load average at start {load[0]:.1f}, at end {os.getloadavg()[0]:.1f}"
    )
    print(summary + "\n" + text, flush=True)
    if args.json:
        record = {
            "rows": rows,
            "genes": genes,
            "studies": n_studies,
            "heldout_rows": heldout_rows,
            "heldout_studies": args.heldout_studies,
            "seeds": seeds,
            "fractions": FRACTIONS,
            "scores": {str(f): scores[f] for f in FRACTIONS},
            "epochs": int(embedder.n_iter_),
            "batch_size": int(embedder.batch_size_),
            "samples_per_s": samples_per_s,
            "generate_seconds": generate_seconds,
            "pretrain_seconds": pretrain_seconds,
            "evaluate_seconds": evaluate_seconds,
            "wall_seconds": wall,
            "peak_rss_mb": peak_rss_mb(),
            "peak_rss_mb_after_step": rss,
            "torch_threads": __import__("torch").get_num_threads(),
            "load_average_start": load,
            "load_average_end": os.getloadavg(),
            "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
            "table": text,
        }
        with open(args.json, "w") as handle:
            json.dump(record, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
