"""scikit-learn's own API conformance checks over every skssl estimator.

Small ``max_epochs``/``hidden_dims`` keep the whole module to seconds; every check runs, none is skipped.
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skssl import ContrastiveEmbedder, MaskedAutoencoder, VAEEmbedder

SMALL = dict(max_epochs=2, hidden_dims=(16,), n_components=4, random_state=0, device="cpu")

ESTIMATORS = [
    ContrastiveEmbedder(**SMALL),
    ContrastiveEmbedder(objective="byol", **SMALL),
    MaskedAutoencoder(**SMALL),
    VAEEmbedder(**SMALL),
    # scikit-learn's checks feed random non-negative floats, not counts: this one warns that likelihood="nb" models
    # raw counts (a UserWarning, by design) in every fitting check; no check treats that warning as a failure.
    VAEEmbedder(likelihood="nb", **SMALL),
]

# Checks that cannot pass, with the reason (empty: all pass).
EXPECTED_FAILED_CHECKS = {}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_compatible(estimator, check):
    check(estimator)
