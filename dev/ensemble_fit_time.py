"""Wall time of a default SSLClassifier fit on 300 samples x 10 000 genes (issue: under 3 minutes on 2 cores).

Also times the ensemble with the embedding member (a default MaskedAutoencoder pre-trained on all rows), the
fine-tuning strategy, and logistic regression as the reference, in the same run (ratios are what carry over to
another machine). 10 % of the rows labeled. Run: ``python dev/ensemble_fit_time.py``.
"""

import os
import platform
import time
import warnings

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skssl import MaskedAutoencoder, SSLClassifier, make_expression


def timed(make, X, y):
    start = time.perf_counter()
    model = make().fit(X, y)
    return time.perf_counter() - start, model


def main():
    warnings.filterwarnings("ignore")
    torch.set_num_threads(int(os.environ.get("SKSSL_THREADS", "2")))
    X, y = make_expression(n_samples=300, n_genes=10_000, random_state=0)
    rng = np.random.default_rng(0)
    y_semi = np.where(rng.random(len(y)) < 0.1, y, -1)
    labeled = y_semi != -1
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}"
    )
    print(f"X {X.shape}, {labeled.sum()} labeled rows")
    runs = {
        "LogisticRegression on the labeled rows": (
            lambda: make_pipeline(StandardScaler(), LogisticRegression()),
            X[labeled],
            y[labeled],
        ),
        "SSLClassifier() (default ensemble)": (lambda: SSLClassifier(random_state=0), X, y_semi),
        "SSLClassifier(MaskedAutoencoder()) (ensemble + embedding)": (
            lambda: SSLClassifier(MaskedAutoencoder(), random_state=0),
            X,
            y_semi,
        ),
        "SSLClassifier(strategy='finetune')": (lambda: SSLClassifier(strategy="finetune", random_state=0), X, y_semi),
    }
    for name, (make, X_fit, y_fit) in runs.items():
        seconds, _ = timed(make, X_fit, y_fit)
        print(f"{name:60s} {seconds:8.1f} s")


if __name__ == "__main__":
    main()
