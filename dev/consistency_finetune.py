"""VIME's semi-supervised consistency during fine-tuning, measured at 10 % of labels (2026-11-28, not adopted).

Issue 11's first direction: use the unlabeled rows during fine-tuning. VIME (Yoon et al. 2020) adds to the
supervised loss a consistency term on unlabeled rows: each unlabeled row is corrupted ``k`` times (the same masking
and marginal draws as pre-training, rate ``p``), and the variance of the network's class probabilities across the
copies is penalised with weight ``beta``. Here the network is ``SSLClassifier(strategy="finetune")`` on a default
``MaskedAutoencoder`` pre-trained on the train split (its LP-FT start, its schedule), and every optimiser step draws
64 unlabeled rows beside the labeled batch through ``fit_loop(unlabeled_rows=...)``, the training loop's
semi-supervised path. No public parameter exposes it (it was not adopted), so this script hands the unlabeled rows
to the loop by wrapping the ``fit_loop`` that ``skssl._base`` calls.

Protocol: the cache of ``ensemble_selection.py`` (the benchmark's splits and labeled subsets, top 2 000 genes); for
each task and seed one MAE pre-training (seed ``100 * seed``, as the cache's embeddings), then fine-tuning with
``beta`` 0 (plain fine-tuning), 0.1 and 1 (``k`` 3, ``p`` 0.3); the shipped ensemble and the baselines on the same
split and labeled rows. Macro-F1 on the test split.

Result (5 seeds, loaded 2-core machine; docs/benchmarks.md): consistency does not lift fine-tuning on any task
(mean change -0.04 to +0.01), and fine-tuning stays below the shipped ensemble on all four; one fit with
consistency costs 3-5x a plain fine-tuning.

Run: ``python dev/consistency_finetune.py --cache /tmp/skssl_selection --tasks tcga,bladder,hsmm,synthetic``
(about 40 minutes on the loaded machine for 5 seeds).
"""

import argparse
import functools
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ensemble_selection as es
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score

import skssl._base
from skssl import MaskedAutoencoder, SSLClassifier
from skssl._corruption import vime_mask

UNLABELED = {"rows": None}  # the unlabeled rows of the fine-tuning in progress (None: plain fine-tuning)
_fit_loop = skssl._base.fit_loop


def _fit_loop_with_unlabeled(module, loss_fn, **kwargs):
    if UNLABELED["rows"] is not None:
        kwargs.update(unlabeled_rows=UNLABELED["rows"], unlabeled_batch_size=64)
    return _fit_loop(module, loss_fn, **kwargs)


def consistency_loss(module, x, targets=None, generator=None, *, weight=None, unlabeled=None, beta=1.0, k=3, p=0.3):
    """Cross-entropy on the labeled batch plus ``beta`` x the variance of the class probabilities over ``k``
    corrupted copies of the unlabeled batch (summed over classes, averaged over rows)."""
    loss = F.cross_entropy(module(x), targets, weight=weight)
    if unlabeled is None or beta == 0:
        return loss
    copies = torch.stack([F.softmax(module(vime_mask(unlabeled, p)[0]), dim=1) for _ in range(k)])
    return loss + beta * copies.var(dim=0, unbiased=False).sum(dim=1).mean()


class ConsistencyClassifier(SSLClassifier):
    """SSLClassifier whose fine-tuning loss adds VIME's consistency term (``beta`` set on the class)."""

    beta = 1.0

    def _loss_function(self, class_weight):
        return functools.partial(consistency_loss, weight=class_weight, beta=type(self).beta)


def run_split(path, seed):
    z = np.load(path)
    X_train, X_test, y_train, y_test = z["Xtr"].astype(np.float32), z["Xte"].astype(np.float32), z["ytr"], z["yte"]
    lab = z["lab0.1"]
    n_classes = int(max(y_train.max(), y_test.max()) + 1)
    start = time.perf_counter()
    embedder = MaskedAutoencoder(random_state=seed * 100).fit(X_train)
    row = {"pretrain_s": time.perf_counter() - start}
    y = np.full(len(y_train), -1)
    y[lab] = y_train[lab]
    for name, beta in (("finetune", 0.0), ("consistency_0.1", 0.1), ("consistency_1", 1.0)):
        UNLABELED["rows"] = np.setdiff1d(np.arange(len(y_train)), lab) if beta > 0 else None
        ConsistencyClassifier.beta = beta
        start = time.perf_counter()
        try:
            clf = ConsistencyClassifier(embedder=embedder, prefit=True, strategy="finetune", random_state=seed)
            clf.fit(X_train, y)
        finally:
            UNLABELED["rows"] = None
        row[name + "_s"] = time.perf_counter() - start
        pred = clf.predict(X_test)
        row[name] = f1_score(y_test, pred, average="macro", labels=np.arange(n_classes), zero_division=0)
    shipped = es.evaluate(path, 0.1)
    row.update({m: shipped[m] for m in ("logreg", "pca_logreg", "sw_g+pc8+ls")})
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", default="/tmp/skssl_selection")
    parser.add_argument("--tasks", default="tcga,bladder,hsmm,synthetic")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    skssl._base.fit_loop = _fit_loop_with_unlabeled
    methods = ("finetune", "consistency_0.1", "consistency_1", "sw_g+pc8+ls", "logreg", "pca_logreg")
    for task in args.tasks.split(","):
        rows = []
        for seed in range(args.seeds):
            rows.append(run_split(os.path.join(args.cache, f"{task}_{seed}.npz"), seed))
            print(task, seed, {m: round(v, 3) for m, v in rows[-1].items()}, flush=True)
        best = [max(r["logreg"], r["pca_logreg"]) for r in rows]
        means = {m: round(float(np.mean([r[m] for r in rows])), 3) for m in methods}
        summary = {m: (means[m], sum(r[m] > b for r, b in zip(rows, best))) for m in methods}
        print(task, "mean macro-F1 (seeds above the better baseline):", summary, flush=True)


if __name__ == "__main__":
    main()
