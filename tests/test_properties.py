"""Property-based tests (hypothesis): whatever the input, an estimator fits and transforms to finite numbers of the
right shape, or raises a ValueError/TypeError that names the problem. Never a silent NaN.

Inputs range over containers (numpy of every float and int dtype, DataFrames with and without gene names, CSR, CSC
and COO matrices, ``np.memmap``), shapes (2 rows, 1 gene, more genes than samples), values (constant genes, zeros,
1e-30 and 1e30, negatives for count models, NaN and infinities anywhere) and labels (``-1`` mixes, strings, a
single class). The estimators are tiny (one epoch, 8 hidden units), so that the default profile runs in about a
minute; ``SKSSL_HYPOTHESIS_PROFILE=long`` tries many more random cases (see docs/troubleshooting.md).
"""

import os
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, assume, example, given, note, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from skssl import (
    ContrastiveEmbedder,
    HighlyVariableGenes,
    LogCPM,
    MaskedAutoencoder,
    SSLClassifier,
    VAEEmbedder,
)

# "ci": few cases, the same ones on every run (derandomize), no deadline (a fit's time depends on the shared
# machine). "long": many random cases, for a nightly job or after changing validation code.
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile(
    "ci", max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=_SLOW_OK
)
settings.register_profile("long", max_examples=300, deadline=None, suppress_health_check=_SLOW_OK)
PROFILE = settings.get_profile(os.environ.get("SKSSL_HYPOTHESIS_PROFILE", "ci"))
# The preprocessing transformers are fast: they get more cases from the same profile.
PROFILE_FAST = settings(PROFILE, max_examples=PROFILE.max_examples * 3)

TINY = dict(
    n_components=2, hidden_dims=(8,), max_epochs=1, batch_size=4, early_stopping=False, random_state=0, device="cpu"
)
FLOAT_DTYPES = [np.float16, np.float32, np.float64]
INT_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
CONTAINERS = ["numpy", "dataframe", "dataframe-named", "csr", "csc", "coo", "memmap"]
EXTREMES = [0.0, 1e-30, -1e-30, 1e30, -1e30]
NON_FINITE = [np.nan, np.inf, -np.inf]
# Words a clear error message uses for each problem.
NON_FINITE_WORDS = ("nan", "infinity", "infinite")
NEGATIVE_WORDS = ("negative",)


@dataclass
class Case:
    X: object  # what the estimator gets
    values: np.ndarray  # the same values as float64 numpy, to compute what should happen
    container: str
    dtype: type

    @property
    def finite(self):
        return bool(np.isfinite(self.values).all())

    @property
    def negative(self):
        return bool((self.values < 0).any())

    @property
    def constant(self):
        # Every gene one value (as the float32 the embedders read): fit refuses it by name (issue 26).
        values = self.values.astype(np.float32)
        return bool((values.max(axis=0) == values.min(axis=0)).all())


@pytest.fixture(scope="module")
def memmap_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("memmaps")


_MEMMAP_DIR = []  # set by the autouse fixture below: strategies cannot take fixtures


@pytest.fixture(autouse=True, scope="module")
def _memmap_dir(memmap_dir):
    _MEMMAP_DIR[:] = [memmap_dir]


def _to_container(values, container, dtype, name):
    if container == "numpy":
        return values
    if container.startswith("dataframe"):
        columns = [f"gene{j}" for j in range(values.shape[1])] if container == "dataframe-named" else None
        return pd.DataFrame(values, columns=columns)
    if container in ("csr", "csc", "coo"):
        return {"csr": sp.csr_matrix, "csc": sp.csc_matrix, "coo": sp.coo_matrix}[container](values)
    path = _MEMMAP_DIR[0] / f"{name}.dat"
    out = np.memmap(path, dtype=dtype, mode="w+", shape=values.shape)
    out[:] = values
    out.flush()
    return np.memmap(path, dtype=dtype, mode="r", shape=values.shape)


@st.composite
def matrices(draw, min_rows=2, max_rows=9, non_finite=True, non_negative=False):
    """An expression matrix in some container and dtype, with edge shapes and values."""
    n_rows = draw(st.integers(min_rows, max_rows))
    n_genes = draw(st.integers(1, 12))  # up to more genes than samples
    values = draw(arrays(np.float64, (n_rows, n_genes), elements=st.floats(-100, 100, width=32)))
    for j in draw(st.lists(st.integers(0, n_genes - 1), max_size=2)):  # constant genes
        values[:, j] = draw(st.sampled_from([0.0, 1.0, 1e-30, 1e30]))
    cells = st.tuples(st.integers(0, n_rows - 1), st.integers(0, n_genes - 1))
    for (i, j), value in draw(st.lists(st.tuples(cells, st.sampled_from(EXTREMES)), max_size=3)):
        values[i, j] = value
    if non_negative:
        values = np.abs(values)
    if non_finite and draw(st.integers(0, 3)) == 0:  # one case in four has NaN or infinities
        for (i, j), value in draw(st.lists(st.tuples(cells, st.sampled_from(NON_FINITE)), min_size=1, max_size=2)):
            values[i, j] = value
    container = draw(st.sampled_from(CONTAINERS))
    dtypes = FLOAT_DTYPES + INT_DTYPES
    if container in ("csr", "csc", "coo"):
        dtypes = [d for d in dtypes if d is not np.float16]  # scipy.sparse has no float16
    dtype = draw(st.sampled_from(dtypes))
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        # Integers hold no NaN; a count matrix stored as integers keeps its finite values, clipped to the range.
        # (2**62 bounds the 64-bit types: float(2**63 - 1) rounds up to 2**63, which overflows int64.)
        low, high = float(max(info.min, -(2**62))), float(min(info.max, 2**62))
        cast = np.clip(np.round(np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)), low, high)
        typed = cast.astype(dtype)
    else:
        with np.errstate(over="ignore"):
            typed = values.astype(dtype)  # float16: 1e30 becomes infinity, 1e-30 becomes 0
    X = _to_container(typed, container, dtype, name=f"m{draw(st.integers(0, 10**9))}")
    case = Case(X, typed.astype(np.float64), container, dtype)
    note(f"{container} {np.dtype(dtype).name} {typed.shape}:\n{typed!r}")
    return case


def _outcome(call):
    """``call()``'s result, or the ValueError/TypeError it raised (anything else propagates: a crash)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # warnings (e.g. non-integer counts) are allowed; silent NaN is not
        try:
            return call()
        except (ValueError, TypeError) as exc:
            return exc


def _assert_error_names(outcome, words):
    assert isinstance(outcome, (ValueError, TypeError)), f"expected an error naming {words}, got a result"
    message = str(outcome).lower()
    assert any(word in message for word in words), f"unclear message: {outcome}"
    # scikit-learn's generic NaN text points at estimators that accept NaN: no help before an embedder.
    assert "histgradientboosting" not in message, f"misleading message: {outcome}"


def _assert_finite(outcome, shape):
    if isinstance(outcome, Exception):
        raise AssertionError(f"valid input was refused: {type(outcome).__name__}: {outcome}")
    outcome = outcome.toarray() if sp.issparse(outcome) else np.asarray(outcome)
    assert outcome.shape == shape
    assert np.isfinite(outcome).all(), f"silent non-finite output:\n{outcome}"


EMBEDDERS = {
    "masked": lambda: MaskedAutoencoder(**TINY),
    "contrastive": lambda: ContrastiveEmbedder(**TINY),
    "vae": lambda: VAEEmbedder(**TINY),
}


@pytest.mark.parametrize("name", list(EMBEDDERS))
@PROFILE
@given(case=matrices())
def test_embedder_fit_transform_finite_or_clear_error(name, case):
    outcome = _outcome(lambda: EMBEDDERS[name]().fit(case.X).transform(case.X))
    if case.finite and case.constant:
        _assert_error_names(outcome, ("constant",))
    elif case.finite:
        _assert_finite(outcome, (case.values.shape[0], 2))
    else:
        _assert_error_names(outcome, NON_FINITE_WORDS)


@PROFILE
@given(data=st.data())
def test_negative_binomial_vae_counts(data):
    # A count likelihood must refuse negative values (and non-finite ones) by name; half the cases are counts.
    case = data.draw(matrices(non_negative=data.draw(st.booleans(), label="non_negative")))
    outcome = _outcome(lambda: VAEEmbedder(likelihood="nb", **TINY).fit(case.X).transform(case.X))
    if not case.finite:
        _assert_error_names(outcome, NON_FINITE_WORDS + NEGATIVE_WORDS)
    elif case.constant:
        _assert_error_names(outcome, ("constant",))
    elif case.negative:
        _assert_error_names(outcome, NEGATIVE_WORDS)
    else:
        _assert_finite(outcome, (case.values.shape[0], 2))


@st.composite
def labels(draw, n):
    """Labels for ``n`` samples: ints with -1 (unlabeled) mixed in, strings, or a single class."""
    kind = draw(st.sampled_from(["int", "str", "object-with-unlabeled", "float-with-nan"]))
    n_classes = draw(st.integers(1, 3))
    codes = draw(st.lists(st.integers(0, n_classes - 1), min_size=n, max_size=n))
    unlabeled = draw(st.lists(st.booleans(), min_size=n, max_size=n)) if kind != "str" else [False] * n
    if kind == "int":
        y = np.array([-1 if u else c for c, u in zip(codes, unlabeled)])
    elif kind == "str":
        y = np.array([f"type {c}" for c in codes])
    elif kind == "object-with-unlabeled":
        y = np.array(
            [draw(st.sampled_from([-1, None])) if u else f"type {c}" for c, u in zip(codes, unlabeled)], dtype=object
        )
    else:
        y = np.array([np.nan if u else float(c) for c, u in zip(codes, unlabeled)])
    labeled = [c for c, u in zip(codes, unlabeled) if not u]
    note(f"y = {y!r}")
    return y, len(labeled), len(set(labeled))


@pytest.mark.parametrize("strategy", ["ensemble", "finetune"])
@PROFILE
@given(data=st.data())
def test_classifier_labels(strategy, data):
    case = data.draw(matrices(min_rows=4, non_finite=False))
    assume(case.finite)  # float16 turns 1e30 into infinity; the embedders' tests cover non-finite X
    y, n_labeled, n_classes = data.draw(labels(case.values.shape[0]))
    model = SSLClassifier(
        MaskedAutoencoder(**TINY),
        strategy=strategy,
        max_epochs=1,
        batch_size=4,
        early_stopping=False,
        random_state=0,
        device="cpu",
    )
    outcome = _outcome(lambda: model.fit(case.X, y).predict_proba(case.X))
    if case.constant:  # X is checked before the labels
        _assert_error_names(outcome, ("constant",))
    elif n_labeled < 2:
        _assert_error_names(outcome, ("labeled", "label"))
    elif n_classes < 2:
        _assert_error_names(outcome, ("class",))
    else:
        _assert_finite(outcome, (case.values.shape[0], n_classes))
        assert set(model.predict(case.X)) <= set(model.classes_)


@PROFILE
@given(case=matrices())
@example(case=Case(np.full((3, 4), 1e30), np.full((3, 4), 1e30), "numpy", np.float64))
def test_transform_new_data_finite_or_clear_error(case):
    # Fitted on ordinary data, then given the edge case: the embedding of unseen extremes must stay finite.
    n_genes = case.values.shape[1]
    reference = np.random.default_rng(0).normal(size=(8, n_genes))
    model = MaskedAutoencoder(**TINY).fit(reference)
    outcome = _outcome(lambda: model.transform(case.X))
    if case.finite and isinstance(outcome, ValueError) and "overflow" in str(outcome):
        # Values far beyond the fit range (1e30 after fitting on ~1) overflow float32: refused, never inf/NaN.
        assert "range" in str(outcome) and np.abs(case.values).max() > 1e6, outcome
    elif case.finite:
        _assert_finite(outcome, (case.values.shape[0], 2))
    else:
        _assert_error_names(outcome, NON_FINITE_WORDS)


@PROFILE_FAST
@given(case=matrices(max_rows=12))
def test_log_cpm(case):
    outcome = _outcome(lambda: LogCPM().fit(case.X).transform(case.X))
    if not case.finite:
        _assert_error_names(outcome, NON_FINITE_WORDS + NEGATIVE_WORDS)
    elif case.negative:
        _assert_error_names(outcome, NEGATIVE_WORDS)
    else:
        _assert_finite(outcome, case.values.shape)


@PROFILE_FAST
@given(case=matrices(max_rows=12), n_top_genes=st.integers(1, 5), flavor=st.sampled_from(["variance", "dispersion"]))
def test_highly_variable_genes(case, n_top_genes, flavor):
    outcome = _outcome(lambda: HighlyVariableGenes(n_top_genes=n_top_genes, flavor=flavor).fit_transform(case.X))
    if not case.finite:
        _assert_error_names(outcome, NON_FINITE_WORDS + NEGATIVE_WORDS)
    elif flavor == "dispersion" and case.negative:
        _assert_error_names(outcome, NEGATIVE_WORDS)
    else:
        _assert_finite(outcome, (case.values.shape[0], min(n_top_genes, case.values.shape[1])))
