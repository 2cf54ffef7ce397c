"""A generative model of raw counts: simulate new profiles, and flag unusual samples by their likelihood.

:class:`~skssl.VAEEmbedder` with ``likelihood="nb"`` models raw RNA-seq counts as in scVI: the encoder reads
log-normalised counts, the decoder gives each gene's share of the library, and counts follow a negative binomial with
one dispersion per gene. Being a likelihood model, it can do what the other embedders cannot:

- ``sample(n)`` draws new count profiles (latent factors from the prior, library sizes from those of the fit data);
- ``score_samples(X)`` gives each profile's evidence lower bound (ELBO), a lower bound of its log likelihood: low
  values flag profiles unlike the training cohort (failed libraries, contamination, mislabeled tissue...);
- ``inverse_transform(Z)`` decodes latent factors into expected counts.

Here a VAE is fitted on simulated counts. We compare simulated and real profiles, then score held-out normal
profiles together with three kinds of outliers and report how well the score separates them (ROC-AUC: 1 is
perfect, 0.5 is chance). Baseline: the Gaussian likelihood of probabilistic PCA
(``PCA.score_samples``) on log-CPM values.

Run: ``python examples/vae_sampling_outliers.py`` (under a minute on 2 CPU cores); ``SKSSL_EXAMPLE_QUICK=1``
shrinks it for the test suite.
"""

import os
import time

import numpy as np
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from skssl import LogCPM, VAEEmbedder, make_expression

QUICK = os.environ.get("SKSSL_EXAMPLE_QUICK") == "1"
N_SAMPLES, N_GENES = (200, 100) if QUICK else (800, 500)
N_OUTLIERS = 20 if QUICK else 50

counts, y = make_expression(n_samples=N_SAMPLES, n_genes=N_GENES, output="counts", random_state=0)
train, test = train_test_split(counts, test_size=0.25, random_state=0)

if QUICK:
    vae = VAEEmbedder(n_components=4, likelihood="nb", hidden_dims=(32,), max_epochs=3, random_state=0)
else:
    vae = VAEEmbedder(n_components=16, likelihood="nb", hidden_dims=(256,), max_epochs=300, random_state=0)
start = time.perf_counter()
vae.fit(train)
print(
    f"VAE fitted on {train.shape[0]} profiles x {train.shape[1]} genes in {time.perf_counter() - start:.1f} s "
    f"({vae.n_iter_} epochs, best {vae.best_epoch_})"
)

# ---------------------------------------------------------------------------------------------------------------
# 1. Simulated profiles against held-out real ones.
simulated = vae.sample(len(test), random_state=0)
log_cpm = LogCPM().fit(train)
real_mean = log_cpm.transform(test).mean(axis=0)
simulated_mean = log_cpm.transform(simulated).mean(axis=0)
print("\nsimulated vs held-out real profiles")
print(f"  library size, median:       {np.median(simulated.sum(1)):12.0f} vs {np.median(test.sum(1)):12.0f}")
print(f"  zero counts, fraction:      {np.mean(simulated == 0):12.3f} vs {np.mean(test == 0):12.3f}")
print(f"  mean log-CPM per gene, correlation: {np.corrcoef(real_mean, simulated_mean)[0, 1]:.3f}")
real_sd, simulated_sd = log_cpm.transform(test).std(axis=0), log_cpm.transform(simulated).std(axis=0)
print(f"  sd of log-CPM per gene, correlation: {np.corrcoef(real_sd, simulated_sd)[0, 1]:.3f}")

# ---------------------------------------------------------------------------------------------------------------
# 2. Outlier scores.
rng = np.random.default_rng(1)
normal = test[: len(test) - N_OUTLIERS]
pick = test[len(test) - N_OUTLIERS :]
# "Another tissue": a cohort simulated with other gene programs and baseline abundances.
other_tissue, _ = make_expression(n_samples=N_OUTLIERS, n_genes=N_GENES, output="counts", random_state=99)


def shuffle_part(row, fraction, rng):
    """Permute the counts of a random ``fraction`` of the genes of one profile."""
    row = row.copy()
    genes = rng.choice(len(row), int(fraction * len(row)), replace=False)
    row[genes] = row[rng.permutation(genes)]
    return row


outliers = {
    "2 % of genes shuffled": np.array([shuffle_part(row, 0.02, rng) for row in pick]),
    "5 % of genes shuffled": np.array([shuffle_part(row, 0.05, rng) for row in pick]),
    "10 % other tissue mixed in": np.round(0.9 * pick + 0.1 * other_tissue),
    "3 % other tissue mixed in": np.round(0.97 * pick + 0.03 * other_tissue),
}

pca = PCA(4 if QUICK else 16, random_state=0).fit(log_cpm.transform(train))
print(f"\noutlier detection on {len(normal)} normal held-out profiles + {N_OUTLIERS} outliers of each kind")
print(f"{'outliers':<32} {'ROC-AUC, VAE ELBO':>18} {'ROC-AUC, PCA':>13}")
for name, bad in outliers.items():
    X = np.vstack([normal, bad])
    is_outlier = np.r_[np.zeros(len(normal)), np.ones(len(bad))]
    # Low likelihood = outlier, so the scores are negated.
    auc_vae = roc_auc_score(is_outlier, -vae.score_samples(X))
    auc_pca = roc_auc_score(is_outlier, -pca.score_samples(log_cpm.transform(X)))
    print(f"{name:<32} {auc_vae:18.3f} {auc_pca:13.3f}")
print(f"\nmean ELBO per profile, held-out normal profiles: {vae.score(normal):.1f} (higher is more typical)")
