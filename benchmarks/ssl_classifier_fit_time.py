"""Wall time of one default ``SSLClassifier()`` fit on two real cohorts, with 10 % and with all of the labels.

Reads bladderbatch (57 x 22 283, RMA log2, label ``cancer``) and HSMM (271 x 47 192, FPKM -> log1p, label ``Hours``)
from ``../shared/data``; the unlabeled rows (a random 90 % for "10 %") are None. Public API only.

Usage: ``python benchmarks/ssl_classifier_fit_time.py [--data-dir ../shared/data]``.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from skssl import SSLClassifier

COHORTS = (("bladderbatch", "cancer", False), ("hsmm_myoblast", "Hours", True))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    args = parser.parse_args()
    for name, column, log1p in COHORTS:
        table = pd.read_csv(Path(args.data_dir, f"{name}.expression.csv.gz"), index_col=0)
        labels = pd.read_csv(Path(args.data_dir, f"{name}.samples.csv"), index_col=0).loc[table.index, column]
        X = table.to_numpy(np.float32)
        X = np.log1p(X) if log1p else X
        for fraction in (0.1, 1.0):
            y = np.array(labels.astype(str), dtype=object)
            y[np.random.default_rng(0).random(len(y)) > fraction] = None
            start = time.perf_counter()
            SSLClassifier(random_state=0).fit(X, y)
            print(f"{name} {X.shape[0]} x {X.shape[1]}, {fraction:.0%} labeled: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
