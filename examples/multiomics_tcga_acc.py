"""Multi-omics integration with a multi-view VAE on TCGA adrenocortical carcinoma (ACC), where omics go missing.

The TCGA ACC cohort measured five omics per patient, but not every patient has every omic: 92 patients in all,
79 with RNA-seq, 80 with miRNA, 46 with protein arrays (RPPA), 90 with copy number (GISTIC) and 90 with mutation
calls. :func:`skssl.assemble_views` joins the five tables by patient barcode (a block of NaN where a patient lacks
an omic) and :class:`skssl.VAEEmbedder` with ``views`` fits one latent space to all of them: one encoder and one
likelihood per omic (Gaussian for log1p RNA-seq and miRNA counts, protein log ratios and copy-number calls; Bernoulli
for the 0/1 mutation calls), fused by a product of experts, so every patient is embedded from the omics it has.

Probe: logistic regression on each representation predicts two subtypes of the TCGA ACC study, ``C1A.C1B`` (2
classes) and ``mRNA_K4`` (4 classes), over the 78 patients that have both labels (all of them have RNA-seq), scored
by balanced accuracy under stratified 4-fold cross-validation repeated with 3 seeds (folds stratified on
``mRNA_K4``, the same folds for both labels and every representation):

1. ``RNA-seq, standardised genes``: the 198 log1p RNA-seq genes;
2. ``RNA-seq, single-view VAE``: a ``VAEEmbedder`` fitted to the RNA-seq of the patients that have it;
3. ``5 omics concatenated, mean-imputed``: all 997 columns, missing omics filled with the training-fold means;
4. ``5 omics, multi-view VAE``: the multi-view ``VAEEmbedder``.

Both labels are derived from the transcriptome in the original study, so RNA-seq alone is expected to be strong; the
question is what the other omics add or cost.

Protocol of the VAEs (no label is ever used to fit them): by default they are fitted once per seed on *all* patients,
test folds included -- transductive, unsupervised (the probe's test patients' omics, never their labels, shape the
embedding), as when a cohort is embedded before any analysis. ``--per-fold`` refits them inside every fold on the
patients outside its test fold (unlabelled patients included), which is strictly inductive and 4 times slower.
Scalers, imputers and classifiers are always fitted on the training folds only.

Run: ``python examples/multiomics_tcga_acc.py [--per-fold]`` (under a minute on 2 CPU cores, ``--per-fold`` about
3 minutes). It reads ``../shared/data/tcga_acc.*`` next to the repository and skips with a message when they are not
there. ``SKSSL_EXAMPLE_QUICK=1`` shrinks training for the test suite (the scores are then meaningless).
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skssl import VAEEmbedder, assemble_views

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# View name -> (table name, how its values are transformed, likelihood).
OMICS = {
    "rna": ("RNASeq2GeneNorm", "log1p", "gaussian"),
    "mirna": ("miRNASeqGene", "log1p", "gaussian"),
    "rppa": ("RPPAArray", None, "gaussian"),
    "cnv": ("gistict", None, "gaussian"),
    "mut": ("Mutations", None, "bernoulli"),
}
LABELS = ("C1A.C1B", "mRNA_K4")
QUICK = os.environ.get("SKSSL_EXAMPLE_QUICK") == "1"
SEEDS = (0,) if QUICK else (0, 1, 2)
N_SPLITS = 4
# Small networks and a capped epoch budget keep the example to seconds per fit (the "auto" defaults train longer).
VAE_PARAMS = dict(
    n_components=16,
    hidden_dims=(128,),
    batch_size=32,
    max_epochs=3 if QUICK else 200,
    n_iter_no_change=30,
    device="cpu",
)


def load(data_dir):
    """The five omic tables (patients x features) and the labels of every patient."""
    import pandas as pd

    tables, labels = {}, []
    for view, (table, transform, _) in OMICS.items():
        frame = pd.read_csv(data_dir / f"tcga_acc.{table}.expression.csv.gz", index_col=0)
        tables[view] = np.log1p(frame) if transform == "log1p" else frame
        labels.append(pd.read_csv(data_dir / f"tcga_acc.{table}.samples.csv", index_col=0)[list(LABELS)])
    # The clinical columns repeat in every samples table: take each patient's first non-missing value.
    return tables, pd.concat(labels).groupby(level=0).first()


def probe():
    return make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression(max_iter=5000))


def fit_embed(X, views, seed, fit_rows):
    """Fit a VAE (multi-view when ``views``) on ``fit_rows`` and embed every row that has the needed data."""
    model = VAEEmbedder(views=views, random_state=seed, **VAE_PARAMS).fit(X[fit_rows])
    Z = np.full((len(X), model.n_components_), np.nan, dtype=np.float32)
    has = ~np.isnan(X).any(axis=1) if views is None else ~np.isnan(X).all(axis=1)
    Z[has] = model.transform(X[has])
    return Z


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-fold", action="store_true", help="refit the VAEs inside every fold (inductive)")
    args = parser.parse_args(argv)
    missing = [t for t, _, _ in OMICS.values() if not (DATA_DIR / f"tcga_acc.{t}.expression.csv.gz").is_file()]
    if missing:
        print(f"Skipping: the TCGA ACC tables {missing} are not in {DATA_DIR}.")
        return 0
    try:
        import pandas  # noqa: F401
    except ImportError:
        print("Skipping: this example needs pandas (pip install pandas).")
        return 0

    start = time.perf_counter()
    tables, labels = load(DATA_DIR)
    likelihoods = {view: likelihood for view, (_, _, likelihood) in OMICS.items()}
    X, patients, _, views = assemble_views(tables, likelihoods=likelihoods)
    X_rna = X[:, columns_of(views["rna"])]
    has_rna = ~np.isnan(X_rna).all(axis=1)
    labels = labels.reindex(patients)
    labelled = np.flatnonzero(labels[list(LABELS)].notna().all(axis=1).to_numpy())
    counts = {view: int((~np.isnan(X[:, columns_of(spec)]).all(axis=1)).sum()) for view, spec in views.items()}
    print(f"{len(patients)} patients x {X.shape[1]} features in 5 omics; patients per omic: {counts}")
    print(
        f"{len(labelled)} patients with both labels (all with RNA-seq: {bool(has_rna[labelled].all())}); "
        f"{len(patients) - len(labelled)} unlabelled patients are used by the VAEs only"
    )
    protocol = (
        "refitted inside each fold (inductive)"
        if args.per_fold
        else "fitted once per seed on all 92 patients, without labels (transductive, unsupervised)"
    )
    print(f"VAEs: {protocol}; {len(SEEDS)} seed(s) x {N_SPLITS}-fold stratified CV, balanced accuracy\n")

    methods = (
        "RNA-seq, standardised genes",
        "RNA-seq, single-view VAE",
        "5 omics concatenated, mean-imputed",
        "5 omics, multi-view VAE",
    )
    scores = {(m, label): [] for m in methods for label in LABELS}
    fit_seconds = 0.0
    for seed in SEEDS:
        folds = StratifiedKFold(N_SPLITS, shuffle=True, random_state=seed).split(
            labelled, labels["mRNA_K4"].iloc[labelled]
        )
        embeddings = None
        for train, test in folds:
            train, test = labelled[train], labelled[test]
            if embeddings is None or args.per_fold:
                fit_rows = np.setdiff1d(np.arange(len(X)), test) if args.per_fold else np.arange(len(X))
                tic = time.perf_counter()
                embeddings = {
                    "RNA-seq, single-view VAE": fit_embed(X_rna, None, seed, fit_rows[has_rna[fit_rows]]),
                    "5 omics, multi-view VAE": fit_embed(X, views, seed, fit_rows),
                }
                fit_seconds += time.perf_counter() - tic
            features = {"RNA-seq, standardised genes": X_rna, "5 omics concatenated, mean-imputed": X, **embeddings}
            for method in methods:
                for label in LABELS:
                    y = labels[label].to_numpy()
                    model = probe().fit(features[method][train], y[train])
                    scores[method, label].append(
                        balanced_accuracy_score(y[test], model.predict(features[method][test]))
                    )

    print(f"{'representation':<36}" + "".join(f"{label:>18}" for label in LABELS))
    for method in methods:
        cells = "".join(f"{np.mean(scores[method, lbl]):>11.3f} ± {np.std(scores[method, lbl]):.3f}" for lbl in LABELS)
        print(f"{method:<36}{cells}")
    print(f"{'chance':<36}{0.5:>11.3f}{'':7}{0.25:>11.3f}")
    Z = embeddings["5 omics, multi-view VAE"]
    print(
        f"\nThe multi-view VAE embeds all {int(np.isfinite(Z).all(axis=1).sum())} patients (the RNA-seq "
        f"representations {int(has_rna.sum())}). VAE fitting {fit_seconds:.1f} s, total "
        f"{time.perf_counter() - start:.1f} s."
    )
    return 0


def columns_of(spec):
    """The columns of a view spec returned by ``assemble_views`` (a slice, or a dict holding one)."""
    return spec["columns"] if isinstance(spec, dict) else spec


if __name__ == "__main__":
    sys.exit(main())
