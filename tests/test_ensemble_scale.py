"""The default ensemble (SSLClassifier / SSLRegressor, strategy="ensemble") at extreme but finite scales of X.

Its members read standardised genes, so multiplying X by a constant must not change its predictions. Before the
gene moments were taken on a power-of-two rescaled copy, float32 squares overflowed from X * 1e19 on (every row got
one class, with only numpy's overflow warnings) and a fixed 1e-12 floor on the standard deviation made every gene
"constant" at X * 1e-19.
"""

import warnings

import numpy as np
import pytest
from _strict_warnings import every_warning_an_error

from skssl import make_expression
from skssl._ensemble import GeneViews, gene_moments
from skssl.supervised import SSLClassifier, SSLRegressor


@pytest.fixture(scope="module")
def cohort():
    X, y = make_expression(n_samples=90, n_genes=40, random_state=0)
    y = np.asarray(y).copy()
    y[np.random.default_rng(0).random(len(y)) < 0.6] = -1  # 60 % unlabeled
    return X, y


@pytest.fixture(scope="module")
def reference(cohort):
    X, y = cohort
    model = SSLClassifier(random_state=0).fit(X, y)
    return model.predict(X), model.predict_proba(X)


@pytest.mark.parametrize("factor", [1e19, 1e-19, 1e30, 1e-30])
def test_classifier_predictions_do_not_depend_on_the_scale_of_X(cohort, reference, factor):
    X, y = cohort
    labels, proba = reference
    with warnings.catch_warnings():
        every_warning_an_error()  # an overflow or invalid-value warning is a failure
        model = SSLClassifier(random_state=0).fit(X * factor, y)
        scaled_labels, scaled_proba = model.predict(X * factor), model.predict_proba(X * factor)
    np.testing.assert_array_equal(scaled_labels, labels)
    # X * factor is rounded to float32 once, so probabilities agree to float32 precision, not bitwise.
    np.testing.assert_allclose(scaled_proba, proba, atol=1e-5)


def test_regressor_predictions_do_not_depend_on_the_scale_of_X(cohort):
    X, _ = cohort
    target = X[:, :5].sum(axis=1).astype(np.float64)
    target[::2] = np.nan  # half unlabeled
    expected = SSLRegressor(random_state=0).fit(X, target).predict(X)
    with warnings.catch_warnings():
        every_warning_an_error()
        scaled = SSLRegressor(random_state=0).fit(X * 1e19, target).predict(X * 1e19)
    np.testing.assert_allclose(scaled, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_ordinary_genes_are_standardised_as_before(cohort):
    # Genes within [2**-32, 2**32] keep the plain float32 computation: the default ensemble's outputs on ordinary
    # data are bitwise those of the code before the rescaling.
    X, _ = cohort
    Z = GeneViews().fit(X, 8, seed=0).standardised(X)
    std = X.std(axis=0)
    expected = (X - X.mean(axis=0)) / np.where(std > 0, std, 1.0)
    assert Z.dtype == np.float32
    assert Z.tobytes() == expected.tobytes()


def test_gene_moments_are_exact_under_power_of_two_rescaling():
    rng = np.random.default_rng(1)
    X = rng.normal(3.0, 2.0, size=(50, 4)).astype(np.float32)
    mean, std, _ = gene_moments(X)
    # Each gene at its own extreme scale (one far above 2**64, where squares overflow, one far below).
    exponents = np.array([100, -100, 0, 120])
    with warnings.catch_warnings():
        every_warning_an_error()
        scaled_mean, scaled_std, _ = gene_moments(np.ldexp(X, exponents).astype(np.float32))
    np.testing.assert_array_equal(scaled_mean, np.ldexp(mean, exponents))
    np.testing.assert_array_equal(scaled_std, np.ldexp(std, exponents))


def test_constant_genes_are_recognised_at_every_scale():
    rng = np.random.default_rng(2)
    varying = rng.normal(size=(30, 1))
    X = np.hstack([varying, np.full((30, 1), 5.0), np.zeros((30, 1))]).astype(np.float32)
    for factor in (1.0, 1e-25, 1e25):
        with warnings.catch_warnings():
            every_warning_an_error()
            views = GeneViews().fit((X * factor).astype(np.float32), 2, seed=0)
            Z = views.standardised((X * factor).astype(np.float32))
        np.testing.assert_allclose(Z[:, 0].std(), 1.0, rtol=1e-4)  # the varying gene is standardised
        np.testing.assert_array_equal(Z[:, 1:], 0.0)  # the constant ones stay at zero


def test_rows_far_off_the_fit_scale_are_refused_by_name(cohort):
    X, y = cohort
    model = SSLClassifier(random_state=0).fit(X * 1e-30, y)
    with pytest.raises(ValueError, match=r"X\[0, \d+\] = .* not on the scale the estimator was fitted on"):
        model.predict(X * 1e37)
