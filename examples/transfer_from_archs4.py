"""Transfer from a public compendium (ARCHS4) to your cohort: stream-read, normalise, align, pre-train, classify.

The whole path of ``docs/transfer_compendium.md``, in one script:

1. read your cohort (a count table: samples x genes, Ensembl ids or symbols) and its labels;
2. stream the same genes out of the ARCHS4 HDF5 file (``human_gene_v2.x.h5``), a block of samples at a time,
   normalising each block to log-CPM on those genes and writing the pool to a ``.npy`` file: memory stays bounded
   whatever the number of samples (``--max-samples``, ``--max-per-series``, ``--series`` choose them);
3. pre-train an embedder on the pool (a memory map), data-parallel when started by ``torchrun``; rank 0 saves it
   with ``save_model`` next to the list of its genes;
4. align the cohort onto those genes (:class:`~skssl.GeneAligner`: Ensembl versions and symbol case ignored,
   duplicated genes summed), normalise it the same way (:class:`~skssl.LogCPM` on the same genes), and fit
   ``SSLClassifier(embedder, prefit=True)`` on the labeled samples; report its balanced accuracy on held-out
   labeled samples against logistic regression, and write a prediction for every cohort sample.

Run::

    # once: download the compendium (about 40 GB; see docs/transfer_compendium.md; never done by this script)
    # one process (CPU or one GPU)
    python examples/transfer_from_archs4.py --archs4 human_gene_v2.latest.h5 \\
        --cohort cohort_counts.csv --labels cohort_labels.csv --max-samples 100000 --max-per-series 200
    # several GPUs: build the pool once, then pre-train data-parallel (step 4 runs on rank 0)
    python examples/transfer_from_archs4.py --archs4 human_gene_v2.latest.h5 --cohort cohort_counts.csv \\
        --labels cohort_labels.csv --max-samples 100000 --prepare-only
    torchrun --nproc_per_node=4 examples/transfer_from_archs4.py --archs4 human_gene_v2.latest.h5 \\
        --cohort cohort_counts.csv --labels cohort_labels.csv --max-samples 100000 --reuse-pool

``--cohort``: CSV/TSV, first column the sample id, one column per gene, raw counts. ``--labels``: CSV/TSV, first
column the sample id, a column of labels (``--label-column``, default the second); samples without a label (or
missing from the file) are unlabeled. Without ``--archs4`` the script writes a small synthetic compendium in the
ARCHS4 layout and a matching cohort into the working directory first (``demo_archs4.h5``, ``demo_cohort.csv``,
``demo_labels.csv``) and runs on them. ``SKSSL_EXAMPLE_QUICK=1`` shrinks that demo to seconds.
"""

import argparse
import datetime
import os
import re
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from skssl import (
    ContrastiveEmbedder,
    GeneAligner,
    LogCPM,
    MaskedAutoencoder,
    SSLClassifier,
    VAEEmbedder,
    load_model,
    make_expression,
    save_model,
)
from skssl.io import read_archs4, read_table

QUICK = os.environ.get("SKSSL_EXAMPLE_QUICK") == "1"
METHODS = {"scarf": ContrastiveEmbedder, "vime": MaskedAutoencoder, "vae": VAEEmbedder}
ENSEMBL = re.compile(r"^ENS[A-Z]*G\d{6,}", re.IGNORECASE)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data = parser.add_argument_group("data")
    data.add_argument("--archs4", help="ARCHS4 gene-level HDF5 file (default: a synthetic demo file)")
    data.add_argument("--cohort", help="count table of your cohort, samples x genes (CSV/TSV)")
    data.add_argument("--labels", help="labels of your cohort: sample id, label (CSV/TSV)")
    data.add_argument("--label-column", help="column of --labels holding the label (default: the second)")
    data.add_argument(
        "--gene-id",
        choices=["auto", "symbol", "ensembl"],
        default="auto",
        help="how the cohort names genes (auto: Ensembl ids if most look like ENSG...)",
    )
    data.add_argument(
        "--biotypes", default="protein_coding", help="comma-separated meta/genes/biotype values to keep, or 'all'"
    )
    pool = parser.add_argument_group("pre-training pool (ARCHS4 samples)")
    pool.add_argument("--series", nargs="*", help="keep only these GEO series (GSE...)")
    pool.add_argument("--max-samples", type=int, help="at most this many samples, drawn at random")
    pool.add_argument("--max-per-series", type=int, help="at most this many samples per series")
    pool.add_argument(
        "--max-singlecell-probability",
        type=float,
        default=0.5,
        help="drop samples ARCHS4 predicts to be single-cell (above this probability)",
    )
    pool.add_argument("--pool", default="archs4_pool.npy", help="where the normalised pool is written (.npy)")
    pool.add_argument("--reuse-pool", action="store_true", help="use --pool as written by an earlier run")
    pool.add_argument("--prepare-only", action="store_true", help="write the pool and stop")
    train = parser.add_argument_group("training")
    train.add_argument("--method", choices=sorted(METHODS), default="vime")
    train.add_argument("--max-epochs", default="2" if QUICK else "auto", help="an integer or 'auto'")
    train.add_argument("--batch-size", default="auto", help="rows per optimiser step over all ranks, or 'auto'")
    train.add_argument("--n-components", type=int, default=16 if QUICK else 128)
    train.add_argument("--output", default="archs4_embedder.skssl", help="where rank 0 saves the embedder")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--timeout-minutes", type=float, default=30.0, help="how long a rank waits for the others")
    return parser.parse_args()


# ---------------------------------------------------------------------------------------------------------------
# Processes (as examples/pretrain_compendium.py)


def start_process_group(timeout_minutes):
    """Join the process group when started by torchrun (WORLD_SIZE > 1); return this rank's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return "auto"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_gpus = torch.cuda.is_available() and torch.cuda.device_count() > local_rank
    if use_gpus:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if use_gpus else "gloo", timeout=datetime.timedelta(minutes=timeout_minutes))
    return f"cuda:{local_rank}" if use_gpus else "cpu"


def rank():
    return dist.get_rank() if dist.is_initialized() else 0


def barrier():
    if dist.is_initialized():
        dist.barrier()


# ---------------------------------------------------------------------------------------------------------------
# Demo files in the real formats (only without --archs4)


def write_demo_files(folder):
    """A synthetic compendium in the ARCHS4 layout and a cohort measured on another gene list, with labels."""
    import h5py
    import pandas as pd

    n_samples, n_genes = (600, 120) if QUICK else (4000, 1000)
    counts, y, info = make_expression(
        n_samples=n_samples, n_genes=n_genes, n_batches=6, output="counts", return_info=True, random_state=0
    )
    symbols = np.array([str(g) for g in info.gene_names], dtype=object)
    ensembl = np.array([f"ENSG{i:011d}" for i in range(n_genes)], dtype=object)
    biotype = np.where(np.arange(n_genes) % 10 == 9, "lncRNA", "protein_coding").astype(object)
    in_pool = info.batch < 5  # batches 0-4: the compendium's studies; batch 5: the cohort
    pool_counts = counts[in_pool].T.astype(np.uint32)  # ARCHS4 stores genes x samples
    accessions = np.array([f"GSM{100000 + j}" for j in range(pool_counts.shape[1])], dtype=object)
    series = np.array([f"GSE{1000 + b}" for b in info.batch[in_pool]], dtype=object)
    strings = h5py.string_dtype()
    with h5py.File(folder / "demo_archs4.h5", "w") as f:
        f.create_dataset(
            "data/expression", data=pool_counts, chunks=(min(n_genes, 64), 50), compression="gzip", compression_opts=4
        )
        f.create_dataset("meta/genes/symbol", data=symbols, dtype=strings)
        f.create_dataset("meta/genes/ensembl_gene", data=ensembl, dtype=strings)
        f.create_dataset("meta/genes/biotype", data=biotype, dtype=strings)
        f.create_dataset("meta/samples/geo_accession", data=accessions, dtype=strings)
        f.create_dataset("meta/samples/series_id", data=series, dtype=strings)
        f.create_dataset("meta/samples/singlecellprobability", data=np.full(len(accessions), 0.01))
    # The cohort: versioned Ensembl ids (GENCODE style), 10 % of the genes missing, shuffled column order.
    rng = np.random.default_rng(0)
    keep = rng.permutation(n_genes)[: int(0.9 * n_genes)]
    cohort = pd.DataFrame(
        counts[~in_pool][:, keep],
        index=pd.Index([f"patient{i:03d}" for i in range((~in_pool).sum())], name="sample_id"),
        columns=[f"{ensembl[g]}.{1 + g % 3}" for g in keep],
    )
    cohort.to_csv(folder / "demo_cohort.csv")
    labels = pd.Series(np.array([f"class{c}" for c in y[~in_pool]], dtype=object), index=cohort.index, name="label")
    labels.iloc[rng.permutation(len(labels))[: len(labels) // 2]] = None  # half the cohort is unlabeled
    labels.to_csv(folder / "demo_labels.csv")
    return folder / "demo_archs4.h5", folder / "demo_cohort.csv", folder / "demo_labels.csv"


# ---------------------------------------------------------------------------------------------------------------
# Steps


def read_cohort(args):
    """The cohort's counts (DataFrame, samples x genes) and labels (object array, None for unlabeled)."""
    import pandas as pd

    counts = read_table(args.cohort).to_frame()
    table = pd.read_csv(args.labels, sep=None, engine="python", index_col=0, dtype=str, keep_default_na=True)
    column = args.label_column or table.columns[0]
    labels = table[column].reindex(counts.index)
    labels = np.array([None if pd.isna(v) else v for v in labels], dtype=object)
    return counts, labels


def cohort_genes(counts, gene_id):
    """The cohort's genes once ids are normalised and duplicates combined, and the ARCHS4 id kind to match."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*on several columns", category=UserWarning)
        genes = GeneAligner(match_ids="normalized", duplicates="sum").fit(counts).genes_
    if gene_id == "auto":
        gene_id = "ensembl" if np.mean([bool(ENSEMBL.match(g)) for g in genes]) > 0.5 else "symbol"
    return genes, gene_id


def build_pool(args, genes, gene_id):
    """Stream the cohort's genes out of ARCHS4 into a log-CPM .npy pool; write its genes and studies beside it."""
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        pool = read_archs4(
            args.archs4,
            genes=genes,
            gene_id=gene_id,
            missing_genes="drop",
            biotypes=None if args.biotypes == "all" else args.biotypes.split(","),
            series=args.series or None,
            max_samples=args.max_samples,
            max_per_series=args.max_per_series,
            max_singlecell_probability=args.max_singlecell_probability,
            random_state=args.seed,
            sample_fields=["series_id"],
            # Library sizes over the genes kept, on both sides: the cohort is normalised on the same genes below.
            transform=LogCPM().fit_transform,
            out=args.pool,
        )
    for warning in caught:
        print(f"  note: {warning.message}")
    Path(f"{args.pool}.genes.txt").write_text("\n".join(pool.genes) + "\n", encoding="utf-8")
    Path(f"{args.pool}.samples.tsv").write_text(
        "".join(f"{s}\t{g}\n" for s, g in zip(pool.samples, pool.metadata.get("series_id", ["?"] * pool.n_samples))),
        encoding="utf-8",
    )
    n_series = len(set(pool.metadata.get("series_id", [])))
    print(
        f"pool: {pool.n_samples} ARCHS4 samples from {n_series} series x {pool.n_genes} genes "
        f"({len(genes) - pool.n_genes} of the cohort's {len(genes)} genes not kept) "
        f"-> {args.pool} in {time.perf_counter() - start:.1f} s"
    )


def pretrain(args, device):
    X = np.load(args.pool, mmap_mode="r")
    embedder = METHODS[args.method](
        n_components=args.n_components,
        batch_size=args.batch_size if args.batch_size == "auto" else int(args.batch_size),
        max_epochs=args.max_epochs if args.max_epochs == "auto" else int(args.max_epochs),
        device=device,
        random_state=args.seed,
        verbose=int(rank() == 0 and not QUICK),
    )
    start = time.perf_counter()
    embedder.fit(X)  # data-parallel when a process group is initialised
    seconds = time.perf_counter() - start
    if rank() == 0:
        save_model(embedder, args.output, metadata={"pool": str(args.pool), "archs4": str(args.archs4)})
        Path(f"{args.output}.genes.txt").write_text(
            Path(f"{args.pool}.genes.txt").read_text(encoding="utf-8"), encoding="utf-8"
        )
        world = dist.get_world_size() if dist.is_initialized() else 1
        print(
            f"pre-trained {type(embedder).__name__} on {X.shape[0]} x {X.shape[1]} in {world} process(es): "
            f"{embedder.n_iter_} epochs in {seconds:.1f} s ({embedder.n_iter_ * X.shape[0] / seconds:.0f} samples/s); "
            f"saved to {args.output}"
        )


def classify(args, counts, labels):
    """Fit SSLClassifier(pre-trained embedder, prefit=True) on the cohort; score it on held-out labeled samples."""
    import pandas as pd
    from sklearn.frozen import FrozenEstimator
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    embedder = load_model(args.output)
    genes = Path(f"{args.output}.genes.txt").read_text(encoding="utf-8").split()
    # Counts onto the pool's genes (ids normalised, duplicates summed), then log-CPM over those genes: the same
    # normalisation the pool got, so that a cohort sample and an ARCHS4 sample with equal counts look alike.
    aligner = GeneAligner(genes=genes, match_ids="normalized", duplicates="sum", warn_threshold=0.5).fit(counts)
    features = make_pipeline(FrozenEstimator(aligner), LogCPM())
    X = features.fit_transform(counts)  # LogCPM is stateless; the frozen aligner keeps its genes
    labeled = np.flatnonzero([v is not None for v in labels])
    y = np.array(labels, dtype=object)
    train, test = train_test_split(labeled, test_size=0.5, stratify=y[labeled].astype(str), random_state=args.seed)
    y_semi = y.copy()
    y_semi[test] = None  # held-out labels are hidden; the samples still shape the ensemble
    models = {
        "logistic regression (genes)": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        "SSLClassifier(embedder, prefit=True)": SSLClassifier(embedder, prefit=True, random_state=args.seed),
    }
    print(f"\nclassifying the cohort: {len(labeled)} labeled samples, {len(test)} of them held out for scoring")
    for name, model in models.items():
        if isinstance(model, SSLClassifier):
            model.fit(X, y_semi)
        else:
            model.fit(X[train], y[train].astype(str))
        score = balanced_accuracy_score(y[test].astype(str), model.predict(X[test]).astype(str))
        print(f"  {name:<40} balanced accuracy {score:.3f}")
    final = SSLClassifier(embedder, prefit=True, random_state=args.seed).fit(X, y)
    predictions = pd.DataFrame({"prediction": final.predict(X)}, index=counts.index)
    predictions.to_csv("cohort_predictions.csv")
    print("predictions for every cohort sample (model fitted on all labels): cohort_predictions.csv")


def main():
    args = parse_args()
    device = start_process_group(args.timeout_minutes)
    if args.archs4 is None:
        if rank() == 0:
            write_demo_files(Path.cwd())
        barrier()
        args.archs4, args.cohort, args.labels = "demo_archs4.h5", "demo_cohort.csv", "demo_labels.csv"
    elif args.cohort is None or args.labels is None:
        raise SystemExit("--cohort and --labels are needed with --archs4")
    counts, labels = read_cohort(args)
    genes, gene_id = cohort_genes(counts, args.gene_id)
    if rank() == 0:
        print(f"cohort: {counts.shape[0]} samples x {counts.shape[1]} columns, {len(genes)} genes ({gene_id} ids)")
        if not (args.reuse_pool and Path(args.pool).exists()):
            build_pool(args, genes, gene_id)
    barrier()
    if args.prepare_only:
        return
    pretrain(args, device)
    is_first_rank = rank() == 0
    if dist.is_initialized():
        dist.destroy_process_group()  # fitting the classifier is not data-parallel: rank 0 does it alone
    if is_first_rank:
        classify(args, counts, labels)


if __name__ == "__main__":
    main()
