"""A fourth round of candidates for SSLClassifier's default ensemble, confirmed on fresh splits (not adopted).

Same protocol as ``ensemble_selection.py`` (the benchmark's splits and labeled subsets, top 2 000 genes of each
train split, macro-F1 on the test split). Candidates, each alone and in the shipped ``genes + pc8 + ls10`` ensemble
(weighted as shipped: uniform below 3 labels per class, greedy selection on held-out log-loss otherwise):

- ``sp1.5``/``sp2``/``sp3``: logistic regression on a spectrally shrunk view of the genes. The principal-component
  scores of the standardised genes (all components) are rescaled so that component i has variance proportional to
  ``s_i ** (2 * gamma)`` (``s_i``: its singular value), with the total variance of the genes kept. ``gamma = 1`` is
  logistic regression on the genes exactly (the L2 penalty is rotation invariant); a larger ``gamma`` leans the fit
  towards the dominant directions, a soft version of PCA + logistic regression with no number of components to pick.
  ``ship_g>spG`` puts it in place of the genes member, ``ship+spG`` beside it.
- ``*_clip3``/``*_clip5``/``*_pareto``/``*_raw``: the PCA and graph members on other scalings of the genes than
  the standardised ones: z-scores clipped at +-3 or +-5 (as scanpy's ``scale(max_value=...)``, so that a few outlying
  samples of a gene do not dominate the components and the neighbour distances), Pareto scaling (divided by the
  square root of the standard deviation) and centred only. ``ship_X`` uses them for the PCA and graph members,
  ``shipall_X`` for the genes member too.

The candidates were first scored on the splits of seeds 0-9 (``--cache`` of ``ensemble_selection.py``, where the
other rounds were scored); the best of them (``ship_clip3``) was then re-scored on fresh splits, seeds 10-29, that
no candidate had been chosen on (``--seeds 10 30 --cache DIR``: the splits are written there first, without
embeddings).

Run, with ``OMP_NUM_THREADS=1`` (the members are small; BLAS threads of two runs oversubscribe 2 cores):
``python dev/ensemble_candidates_round4.py --cache /tmp/skssl_selection`` (seeds 0-9) and
``python dev/ensemble_candidates_round4.py --seeds 10 30 --cache /tmp/skssl_fresh`` (14 minutes on one core). The
tables it prints are in docs/benchmarks.md.
"""

import argparse
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ensemble_selection as es
import numpy as np
from sklearn.decomposition import PCA

TASKS = ["tcga", "bladder", "hsmm", "synthetic"]
FRACTIONS = (0.1, 1.0)
GAMMAS = (1.5, 2.0, 3.0)


def spectral_view(split, gamma):
    """Principal-component scores of the standardised genes, component i rescaled to variance ~ s_i**(2 gamma),
    total variance that of the genes; train rows then test rows."""
    _, singular, components = np.linalg.svd(split.A, full_matrices=False)  # A is centred (standardised)
    keep = singular > 1e-8 * singular[0]
    singular, components = singular[keep], components[keep]
    view = np.vstack([split.A, split.B]) @ components.T * singular ** (gamma - 1)
    total = split.A.var(axis=0).sum()
    return view * np.sqrt(total / view[: split.n_train].var(axis=0).sum())


def scalings(split):
    """Train and test rows of the genes under each scaling compared."""
    X_train, X_test = split.X_train, split.X_test
    centre, spread = X_train.mean(axis=0), X_train.std(axis=0) + 1e-8
    views = {"z": (split.A, split.B)}
    for c in (5, 3):
        views[f"clip{c}"] = (np.clip(split.A, -c, c), np.clip(split.B, -c, c))
    views["pareto"] = ((X_train - centre) / np.sqrt(spread), (X_test - centre) / np.sqrt(spread))
    views["raw"] = (X_train - centre, X_test - centre)
    return views


def components(train, test, k, whiten=True):
    pca = PCA(min(k, len(train) - 1), whiten=whiten, random_state=0).fit(train)
    return np.vstack([pca.transform(train), pca.transform(test)])


def evaluate(path, fraction):
    split = es.Split(path, fraction)
    members = {}
    for name, (train, test) in scalings(split).items():
        members[f"g_{name}"] = es.linear_member(np.vstack([train, test]))
        members[f"pc8_{name}"] = es.linear_member(components(train, test, 8))
        members[f"ls_{name}"] = es.spreading_member(components(train, test, 10, whiten=False), split.n_train)
    for gamma in GAMMAS:
        # As given: the spectral scaling is the point (standardising would undo it).
        members[f"sp{gamma:g}"] = es.linear_member(spectral_view(split, gamma), standardise=False, max_iter=5000)
    test_proba, held = split.test_predictions(members), split.held_out_predictions(members)
    out = {**test_proba, **split.baselines()}

    def shipped(names):
        return split.shipped_weighting(test_proba, held, names)

    out["ship"] = shipped(["g_z", "pc8_z", "ls_z"])
    for gamma in GAMMAS:
        out[f"ship_g>sp{gamma:g}"] = shipped([f"sp{gamma:g}", "pc8_z", "ls_z"])
        out[f"ship+sp{gamma:g}"] = shipped(["g_z", "pc8_z", "ls_z", f"sp{gamma:g}"])
    for name in scalings(split):
        if name != "z":
            out[f"ship_{name}"] = shipped(["g_z", f"pc8_{name}", f"ls_{name}"])
            out[f"shipall_{name}"] = shipped([f"g_{name}", f"pc8_{name}", f"ls_{name}"])
    return split.macro_f1(out)


def print_paired(res, seeds, reference="ship"):
    """Each ensemble candidate against ``reference`` at 10 %: mean difference and seeds above / below."""
    for method in next(iter(res.values())):
        if not method.startswith("ship") or method == reference:
            continue
        cells = []
        for task in TASKS:
            diff = np.array([res[(task, s, 0.1)][method] - res[(task, s, 0.1)][reference] for s in seeds])
            cells.append(f"{task} {diff.mean():+.3f} (+{(diff > 0).sum()}/-{(diff < 0).sum()})")
        print(f"{method:16s} vs {reference}: " + "  ".join(cells))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", default="/tmp/skssl_selection")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--seeds", type=int, nargs=2, default=(0, 10), metavar=("START", "STOP"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    seeds = range(*args.seeds)
    os.makedirs(args.cache, exist_ok=True)
    for task in TASKS:  # the splits only: no embedder is scored in this round
        es.build_cache(task, seeds, args.data_dir, args.cache, embedders={})
    res = es.score_splits(evaluate, args.cache, seeds, TASKS)
    print(f"seeds {seeds.start}-{seeds.stop - 1}")
    es.print_gap_table(res, TASKS, len(seeds))
    print_paired(res, range(len(seeds)))


if __name__ == "__main__":
    main()
