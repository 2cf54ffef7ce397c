"""Gene recovery: do skssl's gene importances find the genes that truly separate the classes?

Synthetic part (the numbers in docs/interpretation.md): ``make_expression`` returns the genes that truly separate
its classes (``info.informative_genes``: the genes of the class-dependent programs). With 10 % of the rows
labeled, the script ranks the genes three ways on the same labeled rows:

- skssl: ``gene_importances(SSLClassifier().fit(X, y_semi), X)`` (the default ensemble; every row of ``X``
  shapes it, the labeled ones train it), summed over the classes; also each member's own importances;
- LR coefficients: ``StandardScaler`` + ``LogisticRegression()`` fitted on the labeled rows, ranked by the sum
  over classes of the absolute coefficients (standardised genes);
- t-test: the one-way ANOVA F statistic of each gene on the labeled rows (``f_classif``; with two classes it is
  the squared t statistic of the pooled-variance t-test).

It reports precision@k (the fraction of the top k genes that are truly informative) for k = 20, 50, 100, per
seed and averaged, and the stability of the top 50 (overlap |A ∩ B| / 50): across model seeds (same data and
labels) and across labeled subsets (same data, another draw of the 10 %). Then it times the global importances of
300 samples x 10 000 genes once, and prints the machine load.

Real-data part (``--tcga``): TCGA adrenocortical carcinoma, C1A vs C1B (``/work/shared/data``, log1p of the RSEM
values): the top genes of the ensemble fitted on every labeled sample, and their overlap with the t-test and LR
rankings.

Public API only. Run: ``python benchmarks/gene_recovery.py`` (about a minute per seed on one busy core), or
``--seeds 10 --tcga``.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
from sklearn.feature_selection import f_classif
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.preprocessing import StandardScaler

from skssl import SSLClassifier, make_expression
from skssl.inspection import gene_importances

KS = (20, 50, 100)
LABELED_FRACTION = 0.1


def labeled_rows(y, seed, fraction=LABELED_FRACTION):
    """A stratified draw of ``fraction`` of the rows."""
    split = StratifiedShuffleSplit(n_splits=1, train_size=fraction, random_state=seed)
    rows, _ = next(split.split(np.zeros(len(y)), y))
    return np.sort(rows)


def rank_lr(X, y, rows):
    Z = StandardScaler().fit_transform(X[rows])
    model = LogisticRegression(max_iter=5000).fit(Z, y[rows])
    return np.argsort(-np.abs(model.coef_).sum(axis=0), kind="stable")


def rank_ttest(X, y, rows):
    with warnings.catch_warnings():
        # Genes constant among the labeled rows: F is NaN (ranked last), and scikit-learn warns.
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        F, _ = f_classif(X[rows], y[rows])
    return np.argsort(-np.nan_to_num(F, nan=-1.0), kind="stable")


def rank_skssl(X, y, rows, seed, member=None, model=None):
    if model is None:
        y_semi = np.full(len(y), -1)
        y_semi[rows] = y[rows]
        model = SSLClassifier(random_state=seed).fit(X, y_semi)
    importances = gene_importances(model, X, member=member).sum(axis=1)
    return np.argsort(-importances, kind="stable"), model


def precision_at(ranking, truth, k):
    return len(set(ranking[:k].tolist()) & truth) / k


def overlap(a, b, k=50):
    return len(set(a[:k].tolist()) & set(b[:k].tolist())) / k


def synthetic(args):
    methods = ["skssl ensemble", "  member genes", "  member pcs", "  member graph", "LR coefficients", "t-test"]
    precision = {m: [] for m in methods}
    stability_seed, stability_subset = [], {m: [] for m in ("skssl ensemble", "LR coefficients", "t-test")}
    for seed in range(args.seeds):
        X, y, info = make_expression(
            n_samples=args.samples,
            n_genes=args.genes,
            signal_strength=args.signal_strength,
            random_state=seed,
            return_info=True,
        )
        truth = set(info.informative_genes.tolist())
        rows = labeled_rows(y, seed)
        ranking, model = rank_skssl(X, y, rows, seed)
        rankings = {"skssl ensemble": ranking, "LR coefficients": rank_lr(X, y, rows), "t-test": rank_ttest(X, y, rows)}
        for name in model.members_:
            rankings[f"  member {name}"] = rank_skssl(X, y, rows, seed, member=name, model=model)[0]
        for m in methods:
            precision[m].append([precision_at(rankings[m], truth, k) for k in KS])
        # Stability: another model seed on the same labels; another labeled subset of the same data.
        other_seed = rank_skssl(X, y, rows, seed + 1000)[0]
        stability_seed.append(overlap(ranking, other_seed))
        other_rows = labeled_rows(y, seed + 1000)
        others = {
            "skssl ensemble": rank_skssl(X, y, other_rows, seed)[0],
            "LR coefficients": rank_lr(X, y, other_rows),
            "t-test": rank_ttest(X, y, other_rows),
        }
        for m in stability_subset:
            stability_subset[m].append(overlap(rankings[m], others[m]))
        print(
            f"seed {seed}: {len(truth)} informative genes of {args.genes}, {len(rows)} labeled rows; p@20/50/100 "
            + "; ".join(f"{m.strip()} {np.round(precision[m][-1], 2).tolist()}" for m in methods),
            flush=True,
        )
    print(
        f"\nprecision@k, mean (sd) over {args.seeds} seeds, {args.samples} samples x {args.genes} genes, "
        f"signal_strength {args.signal_strength}, {LABELED_FRACTION:.0%} labeled\n"
    )
    print("| ranking | " + " | ".join(f"p@{k}" for k in KS) + " |")
    print("|---|" + "---|" * len(KS))
    for m in methods:
        values = np.array(precision[m])
        cells = [f"{values[:, j].mean():.3f} ({values[:, j].std():.3f})" for j in range(len(KS))]
        print(f"| {m.strip()} | " + " | ".join(cells) + " |")
    wins = np.array(precision["skssl ensemble"]) - np.maximum(
        np.array(precision["LR coefficients"]), np.array(precision["t-test"])
    )
    print("\nskssl minus the better baseline, per seed (p@20, p@50, p@100):")
    for seed, row in enumerate(wins):
        print(f"  seed {seed}: {np.round(row, 3).tolist()}")
    print("\ntop-50 overlap |A ∩ B| / 50, mean (min) over seeds")
    print(f"  skssl across model seeds (same labels): {np.mean(stability_seed):.3f} ({np.min(stability_seed):.3f})")
    for m, values in stability_subset.items():
        print(f"  {m} across labeled subsets: {np.mean(values):.3f} ({np.min(values):.3f})")


def timing():
    X, y = make_expression(n_samples=300, n_genes=10_000, random_state=0)
    y_semi = y.copy()
    y_semi[labeled_rows(y, 0, 0.9)] = -1  # 10 % labeled
    model = SSLClassifier(random_state=0).fit(X, y_semi)
    load = os.getloadavg()
    start = time.perf_counter()
    gene_importances(model, X)
    seconds = time.perf_counter() - start
    print(
        f"\ncost: gene_importances of the default SSLClassifier on 300 samples x 10 000 genes: {seconds:.1f} s "
        f"(fit not included; {os.cpu_count()} cores, load average before {load[0]:.1f}, after "
        f"{os.getloadavg()[0]:.1f}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})"
    )


def timing_finetune():
    """The same for strategy="finetune" (integrated gradients, 64 steps): the cost is the network's, not the
    training's, so the embedder and head are trained for 2 epochs only."""
    from skssl import MaskedAutoencoder

    X, y = make_expression(n_samples=300, n_genes=10_000, random_state=0)
    y_semi = y.copy()
    y_semi[labeled_rows(y, 0, 0.9)] = -1
    embedder = MaskedAutoencoder(max_epochs=2, random_state=0)
    model = SSLClassifier(embedder, strategy="finetune", max_epochs=2, random_state=0).fit(X, y_semi)
    load = os.getloadavg()
    start = time.perf_counter()
    gene_importances(model, X)
    print(
        f"cost: the same for strategy='finetune' (MaskedAutoencoder defaults, hidden {model.embedder_.hidden_dims_}, "
        f"integrated gradients with 64 steps): {time.perf_counter() - start:.1f} s (load average before "
        f"{load[0]:.1f}, after {os.getloadavg()[0]:.1f})"
    )


def tcga(args):
    import pandas as pd

    base = os.path.join(args.data_dir, "tcga_acc.RNASeq2GeneNorm")
    expression = pd.read_csv(base + ".expression.csv.gz", index_col=0)
    samples = pd.read_csv(base + ".samples.csv", index_col=0).loc[expression.index]
    labels = samples["C1A.C1B"]
    X = np.log1p(expression)  # RSEM normalised values
    model = SSLClassifier(random_state=0).fit(X, labels)  # the one sample without a subtype: unlabeled (NaN)
    importances = gene_importances(model, X, as_frame=True)
    rows = np.flatnonzero(labels.notna().to_numpy())
    y = labels.to_numpy()
    ours = importances.sum(axis=1).sort_values(ascending=False)
    Xa = X.to_numpy()
    lr = expression.columns[rank_lr(Xa, y, rows)]
    t = expression.columns[rank_ttest(Xa, y, rows)]
    print(
        f"\nTCGA ACC: {X.shape[0]} samples x {X.shape[1]} genes, {len(rows)} labeled "
        f"({labels.value_counts().to_dict()}), weights {model.weights_}"
    )
    # Which way each top gene goes: the sign of the mean difference C1B - C1A on the labeled rows.
    diff = X[labels == "C1B"].mean() - X[labels == "C1A"].mean()
    print(
        "top 15 genes by skssl importance (importance for C1B; log1p mean difference C1B - C1A; t-test rank; LR rank):"
    )
    for gene in ours.index[:15]:
        print(
            f"  {gene:10s} {importances.loc[gene, 'C1B']:.4f}  {diff[gene]:+.2f}  "
            f"t#{list(t).index(gene) + 1}  LR#{list(lr).index(gene) + 1}"
        )
    for k in (10, 20, 50):
        top = set(ours.index[:k])
        print(
            f"  top {k}: overlap with t-test {len(top & set(t[:k]))}/{k}, with LR coefficients "
            f"{len(top & set(lr[:k]))}/{k}; t-test vs LR {len(set(t[:k]) & set(lr[:k]))}/{k}"
        )


def tcga_few_labels(args, n_draws=10):
    """TCGA ACC with 10 % of the labels: how well each ranking from the few labels agrees with the rankings of
    all 78 labels (the t-test's and the LR coefficients'), over ``n_draws`` stratified draws of the labeled rows."""
    import pandas as pd

    base = os.path.join(args.data_dir, "tcga_acc.RNASeq2GeneNorm")
    expression = pd.read_csv(base + ".expression.csv.gz", index_col=0)
    labels = pd.read_csv(base + ".samples.csv", index_col=0).loc[expression.index, "C1A.C1B"]
    X = np.log1p(expression).to_numpy()
    known = np.flatnonzero(labels.notna().to_numpy())
    y = np.where(labels.to_numpy() == "C1B", 1, 0)  # C1A 0, C1B 1 (the unlabeled sample is never read)
    references = {"t-test, all labels": rank_ttest(X, y, known), "LR, all labels": rank_lr(X, y, known)}
    agreement = {m: {r: [] for r in references} for m in ("skssl ensemble", "LR coefficients", "t-test")}
    for draw in range(n_draws):
        split = StratifiedShuffleSplit(n_splits=1, train_size=LABELED_FRACTION, random_state=draw)
        rows = np.sort(known[next(split.split(known, y[known]))[0]])
        y_semi = np.full(len(y), -1)
        y_semi[rows] = y[rows]
        model = SSLClassifier(random_state=draw).fit(X, y_semi)
        rankings = {
            "skssl ensemble": np.argsort(-gene_importances(model, X).sum(axis=1), kind="stable"),
            "LR coefficients": rank_lr(X, y, rows),
            "t-test": rank_ttest(X, y, rows),
        }
        for m, ranking in rankings.items():
            for r, reference in references.items():
                agreement[m][r].append(overlap(ranking, reference, k=20))
    print(
        f"\nTCGA ACC, {LABELED_FRACTION:.0%} of the labels ({len(rows)} rows), {n_draws} draws: top-20 overlap with "
        "the rankings of all 78 labels, mean (min)"
    )
    for m, by_reference in agreement.items():
        cells = ", ".join(f"{r} {np.mean(v):.2f} ({np.min(v):.2f})" for r, v in by_reference.items())
        print(f"  {m}: {cells}")


def embedding_programs(args):
    """Can a dimension be named by its top genes? On make_expression, each dimension's top 20 genes by absolute
    loading are compared with the simulated gene programs: the share of them in the program they hit most
    ("purity"; genes in no program count against it), and how many distinct programs the dimensions name."""
    from skssl import MaskedAutoencoder, VAEEmbedder
    from skssl.inspection import embedding_loadings

    X, _, info = make_expression(n_samples=args.samples, n_genes=args.genes, random_state=0, return_info=True)
    membership = info.loadings != 0  # (n_programs, n_genes)
    print(
        f"\nembedding loadings on make_expression ({args.samples} x {args.genes}, {len(membership)} programs): "
        "top-20 genes of each dimension"
    )

    def report(name, loadings, seconds):
        purity, named = [], []
        for k in range(loadings.shape[1]):
            top = np.argsort(-np.abs(loadings[:, k]))[:20]
            hits = membership[:, top].sum(axis=1)
            purity.append(hits.max() / 20)
            named.append(int(np.argmax(hits)))
        print(
            f"  {name} ({seconds:.1f} s): purity mean {np.mean(purity):.2f}, min {np.min(purity):.2f}; programs "
            f"named {sorted(set(named))} ({len(set(named))} distinct of {len(membership)})"
        )

    # Reference: the loadings of the top 8 principal components of the standardised genes.
    from sklearn.decomposition import PCA

    report(
        "PCA of the standardised genes (reference)",
        PCA(8, random_state=0).fit(StandardScaler().fit_transform(X)).components_.T,
        0.0,
    )
    for embedder in (MaskedAutoencoder(n_components=8, random_state=0), VAEEmbedder(n_components=8, random_state=0)):
        start = time.perf_counter()
        embedder.fit(X)
        fit_seconds = time.perf_counter() - start
        for method in ("encoder", "decoder"):
            start = time.perf_counter()
            loadings = embedding_loadings(embedder, X, method=method)
            seconds = time.perf_counter() - start
            report(f"{type(embedder).__name__} ({fit_seconds:.0f} s fit), method={method!r}", loadings, seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--signal-strength", type=float, default=1.0, help="make_expression's signal_strength")
    parser.add_argument("--tcga", action="store_true", help="also the TCGA ACC example")
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--embeddings", action="store_true", help="also the embedders' loadings against the programs")
    parser.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    args = parser.parse_args()
    synthetic(args)
    if not args.no_timing:
        timing()
        timing_finetune()
    if args.embeddings:
        embedding_programs(args)
    if args.tcga:
        tcga(args)
        tcga_few_labels(args)


if __name__ == "__main__":
    main()
