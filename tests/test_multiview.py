"""Multi-view (multi-omics) VAE: missing views, product of experts, view validation, assembly of per-omic tables."""

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from skssl import VAEEmbedder, _statistics
from skssl.io import ExpressionData
from skssl.multiview import assemble_views, resolve_views

FAST = dict(n_components=3, hidden_dims=(16,), max_epochs=5, device="cpu", random_state=0)
# Columns 0-7: Gaussian, 8-12: 0/1 calls, 13-18: counts.
VIEWS = {
    "expr": slice(0, 8),
    "mut": {"columns": slice(8, 13), "likelihood": "bernoulli"},
    "counts": {"columns": list(range(13, 19)), "likelihood": "nb"},
}


def make_views(n=60, seed=0, missing=True, return_factors=False):
    """Three views driven by two shared factors; ``missing`` blanks whole views of some samples."""
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(n, 2))
    expr = factors @ rng.normal(size=(2, 8)) + 0.3 * rng.normal(size=(n, 8))
    mut = (factors @ rng.normal(size=(2, 5)) + rng.normal(size=(n, 5)) > 0).astype(float)
    counts = rng.poisson(np.exp(1.0 + 0.4 * factors @ rng.normal(size=(2, 6)))).astype(float)
    X = np.hstack([expr, mut, counts]).astype(np.float32)
    if missing:
        X[:10, 8:13] = np.nan  # no mutation calls
        X[10:18, 0:8] = np.nan  # no expression
        X[18:22, 13:19] = np.nan  # no counts
    return (X, factors) if return_factors else X


@pytest.fixture(scope="module")
def X():
    return make_views()


@pytest.fixture(scope="module")
def fitted(X):
    return VAEEmbedder(views=VIEWS, **{**FAST, "max_epochs": 10}).fit(X)


# ----------------------------------------------------------------------------- missing views


def test_missing_view_embedding_is_finite_and_depends_only_on_present_views(X, fitted):
    Z = fitted.transform(X)
    assert Z.shape == (len(X), 3) and np.isfinite(Z).all()
    # Rows 30 and 31 share their expression and counts and differ in their mutation calls.
    pair = X[[30, 31]].copy()
    pair[1, 0:8], pair[1, 13:19] = pair[0, 0:8], pair[0, 13:19]
    assert not np.array_equal(pair[0, 8:13], pair[1, 8:13])
    with_calls = fitted.transform(pair)
    assert not np.allclose(with_calls[0], with_calls[1])  # the mutation view is used when present ...
    pair[:, 8:13] = np.nan
    without_calls = fitted.transform(pair)
    np.testing.assert_array_equal(without_calls[0], without_calls[1])  # ... and ignored when missing
    assert np.isfinite(without_calls).all()
    # The same row alone, or among other rows, gets the same embedding.
    np.testing.assert_allclose(fitted.transform(pair[:1]), without_calls[:1], rtol=1e-6, atol=1e-6)


def test_embedding_is_the_product_of_the_present_experts_and_the_prior(X, fitted):
    row = X[:1].copy()  # row 0 lacks the mutation view
    module = fitted.module_
    precision, weighted = torch.ones(1, 3), torch.zeros(1, 3)
    with torch.no_grad():
        for k in (0, 2):  # expr, counts
            expert = module.encoder.experts[k]
            mean, log_var = expert(torch.from_numpy(row[:, expert.index.numpy()]))
            precision += torch.exp(-log_var)
            weighted += torch.exp(-log_var) * mean
    posterior_mean = (weighted / precision).numpy()
    with torch.no_grad():
        embedded = fitted.module_.embed(torch.from_numpy(row)).numpy()
    np.testing.assert_allclose(embedded, posterior_mean, rtol=1e-5, atol=1e-6)
    # transform standardises and scales that posterior mean with the statistics of the fit data.
    expected = (posterior_mean - fitted.embedding_mean_) / fitted.embedding_scale_ @ fitted.embedding_whitening_
    np.testing.assert_allclose(fitted.transform(row), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("likelihood", ["gaussian", "nb", "views"])
def test_encoder_path_embeds_like_the_module_with_only_the_encoder_parameters(X, fitted, likelihood):
    if likelihood == "views":
        module, x = fitted.module_, torch.from_numpy(X)
    else:
        data = np.nan_to_num(X[:, 13:19] if likelihood == "nb" else X[:, :8])
        module = VAEEmbedder(likelihood=likelihood, **FAST).fit(data).module_
        x = torch.from_numpy(data)
    path = module.encoder_path()
    assert isinstance(path, torch.nn.Module)
    with torch.no_grad():
        torch.testing.assert_close(path.embed(x), module.embed(x), rtol=0, atol=0)
        torch.testing.assert_close(path(x), module.embed(x), rtol=0, atol=0)
    # Exactly the parameters that get a gradient through embed: no decoder, no likelihood parameter.
    embed_grads = torch.autograd.grad(module.embed(x).sum(), list(module.parameters()), allow_unused=True)
    used = {id(p) for p, g in zip(module.parameters(), embed_grads) if g is not None}
    assert {id(p) for p in path.parameters()} == used


@pytest.mark.parametrize("views", [VIEWS, None], ids=["views", "single"])
def test_hooks_set_no_fitted_attribute_and_fit_sets_the_view_attributes(X, views):
    data = X if views is not None else np.nan_to_num(X[:, 13:19])
    params = {**FAST, "likelihood": "gaussian" if views is not None else "nb"}
    vae = VAEEmbedder(views=views, **params)
    valid = vae._validate_input(data, reset=True)  # sets n_features_in_ (and feature names) like validate_data
    before = dict(vars(vae))
    statistics = vae._fit_statistics(valid)
    vae._check_fit_values(statistics)
    module = vae._build_module(valid.shape[1], (16,), statistics)
    assert vars(vae).keys() == before.keys()
    vae.fit(data)
    if views is None:
        # Library sizes live in the module's buffers in every case; the attributes are copies made by fit.
        likelihood = vae.module_.likelihoods[0]
        assert vae.library_size_ == float(likelihood.library_size) == np.median(data.sum(axis=1))
        assert vae.log_library_mean_ == float(likelihood.log_library_mean)
        assert not hasattr(vae, "views_") and not module.multiview
    else:
        assert list(vae.views_) == list(VIEWS) and vae.view_likelihoods_["mut"] == "bernoulli"
        assert vae.view_counts_ == {"expr": 52, "mut": 50, "counts": 56}
        assert float(vae.module_.likelihoods[2].library_size) > 0  # the "nb" view's library sizes
        assert not hasattr(vae, "library_size_")
        # Refitting without views drops the attributes that described the views.
        vae.set_params(views=None).fit(np.nan_to_num(X[:, :8]))
        assert not any(hasattr(vae, name) for name in ("views_", "view_likelihoods_", "view_counts_"))


def test_loss_ignores_declared_missing_blocks(X, fitted):
    module = copy_module(fitted)
    x_nan = torch.from_numpy(X[:12].copy())  # rows 0-9 lack the mutation view, rows 10-11 the expression view
    present = torch.ones((12, 3), dtype=torch.bool)
    present[:10, 1] = False
    present[10:, 0] = False
    noise = torch.randn((4, 3), generator=torch.Generator().manual_seed(0))

    def elbo_and_grads(x, present=None):
        module.zero_grad()
        elbo = module.elbo(x, noise=noise, present=present)
        elbo.sum().backward()
        return elbo.detach(), [None if p.grad is None else p.grad.clone() for p in module.parameters()]

    reference, reference_grads = elbo_and_grads(x_nan)
    assert torch.isfinite(reference).all()
    for fill in (0.0, 1.0, 1e6):
        garbage = x_nan.clone()
        garbage[:10, 8:13] = fill
        garbage[10:, 0:8] = -fill
        elbo, grads = elbo_and_grads(garbage, present)
        torch.testing.assert_close(elbo, reference)
        for g, r in zip(grads, reference_grads):
            torch.testing.assert_close(g, r)
    # Not vacuous: values of a present block do change the loss.
    changed = x_nan.clone()
    changed[:10, 0] += 3.0
    assert not torch.allclose(elbo_and_grads(changed)[0], reference)
    # The training loss of a batch with missing blocks is finite.
    assert torch.isfinite(fitted._batch_loss(module, x_nan))


def copy_module(fitted):
    import copy

    module = copy.deepcopy(fitted.module_)
    module.eval()
    return module


def test_scores_samples_inverse_transform(X, fitted):
    scores = fitted.score_samples(X)
    assert scores.shape == (len(X),) and np.isfinite(scores).all()
    np.testing.assert_allclose(scores[:5], fitted.score_samples(X[:5]), rtol=1e-12)
    decoded = fitted.inverse_transform(fitted.transform(X))
    assert decoded.shape == X.shape and np.isfinite(decoded).all()
    assert ((decoded[:, 8:13] >= 0) & (decoded[:, 8:13] <= 1)).all()  # Bernoulli probabilities
    draws = fitted.sample(50, random_state=0)
    assert draws.shape == (50, X.shape[1]) and np.isfinite(draws).all()
    assert set(np.unique(draws[:, 8:13])) <= {0.0, 1.0}
    assert (draws[:, 13:] >= 0).all() and np.array_equal(draws[:, 13:], np.round(draws[:, 13:]))
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    np.testing.assert_array_equal(draws, fitted.sample(50, random_state=0))  # reproducible ...
    assert torch.equal(torch.rand(3), expected)  # ... without touching the global torch RNG


def test_fitting_learns_the_shared_factors():
    """The fused embedding of complete samples recovers the factors better than an untrained one."""
    from sklearn.linear_model import LinearRegression

    X, factors = make_views(n=200, seed=0, missing=True, return_factors=True)
    params = {**FAST, "max_epochs": 20, "hidden_dims": (32,)}
    trained = VAEEmbedder(views=VIEWS, **params).fit(X)
    untrained = VAEEmbedder(views=VIEWS, **{**params, "max_epochs": 1, "learning_rate": 1e-12}).fit(X)
    rows = np.arange(22, 200)  # samples with every view

    def r2(model):
        Z = model.transform(X[rows])
        return LinearRegression().fit(Z, factors[rows]).score(Z, factors[rows])

    assert r2(trained) > r2(untrained) + 0.1 and r2(trained) > 0.65, (r2(trained), r2(untrained))


def test_joblib_partial_fit_and_memmap(X, fitted, tmp_path):
    joblib.dump(fitted, tmp_path / "m.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "m.joblib").transform(X), fitted.transform(X))
    partial = VAEEmbedder(views=VIEWS, **FAST).partial_fit(X).partial_fit(X)
    assert partial.n_iter_ == 2 and np.isfinite(partial.transform(X)).all()
    mm = np.memmap(tmp_path / "X.dat", dtype=np.float32, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    mm = np.memmap(tmp_path / "X.dat", dtype=np.float32, mode="r", shape=X.shape)
    dense = VAEEmbedder(views=VIEWS, **FAST).fit(X)
    from_memmap = VAEEmbedder(views=VIEWS, **FAST).fit(mm)
    np.testing.assert_allclose(from_memmap.transform(mm), dense.transform(X), rtol=1e-5, atol=1e-5)


def test_nan_aware_statistics_over_present_values():
    rng = np.random.default_rng(0)
    X = rng.normal(loc=5.0, size=(50, 4)).astype(np.float32)
    X[rng.random(X.shape) < 0.3] = np.nan
    X[:, 3] = np.nan
    stats = _statistics.column_statistics(X, chunk_rows=7, allow_nan=True)
    np.testing.assert_allclose(stats["mean"][:3], np.nanmean(X[:, :3], axis=0, dtype=np.float64), rtol=1e-6)
    np.testing.assert_allclose(stats["std"][:3], np.nanstd(X[:, :3], axis=0, dtype=np.float64), rtol=1e-5)
    assert stats["mean"][3] == 0 and stats["std"][3] == 0 and stats["count"][3] == 0
    np.testing.assert_allclose(stats["row_sums"], np.nansum(X, axis=1, dtype=np.float64), rtol=1e-6)
    assert stats["min"] == np.nanmin(X)
    with pytest.raises(ValueError, match="NaN"):
        _statistics.column_statistics(X)


# ----------------------------------------------------------------------------- validation


def test_nan_is_still_rejected_without_views(X):
    with pytest.raises(ValueError, match="NaN"):
        VAEEmbedder(**FAST).fit(X)
    fitted = VAEEmbedder(**FAST).fit(np.nan_to_num(X))
    with pytest.raises(ValueError, match="NaN"):
        fitted.transform(X)
    # Refitting without views forgets the views of an earlier fit.
    model = VAEEmbedder(views=VIEWS, **FAST).fit(X)
    model.set_params(views=None).fit(np.nan_to_num(X))
    assert not hasattr(model, "views_")
    with pytest.raises(ValueError, match="NaN"):
        model.transform(X)


@pytest.mark.parametrize(
    "views, message",
    [
        ({"a": slice(0, 10), "b": slice(8, 19)}, "Views 'a' and 'b' overlap: column 8"),
        ({"a": [0, 1, 2], "b": list(range(3, 19)) + [19]}, "View 'b': column 19 is out of range"),
        ({"a": [-1] + list(range(18))}, "View 'a': column -1 is out of range"),
        ({"a": slice(0, 10), "b": slice(10, 25)}, "View 'b': slice.* out of range: X has 19 feature"),
        ({"a": slice(0, 10), "b": slice(10, 10), "c": slice(10, 19)}, "View 'b' has no columns"),
        ({"a": slice(0, 10), "b": slice(11, 19)}, "1 column.* belong to no view \\(10\\)"),
        ({"a": slice(0, 10), "b": {"columns": slice(10, 19), "likelihood": "poisson"}}, "View 'b': likelihood"),
        ({"a": slice(0, 10), "b": {"cols": slice(10, 19)}}, "View 'b': unknown key"),
        ({"a": slice(0, 10), "b": ["g10", "g11"]}, "View 'b' lists columns by name, but X has no column names"),
        ({"a": slice(0, 10), "b": 10}, "View 'b': columns must be"),
        ({"a": [0, 0] + list(range(1, 19))}, "View 'a' lists a column more than once"),
        ({}, "non-empty mapping"),
    ],
)
def test_wrong_views_are_a_clear_error(X, views, message):
    with pytest.raises(ValueError, match=message):
        VAEEmbedder(views=views, **FAST).fit(X)


def test_views_by_column_name(X):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X, columns=[f"g{i}" for i in range(X.shape[1])])
    by_name = {
        "expr": [f"g{i}" for i in range(8)],
        "mut": {"columns": [f"g{i}" for i in range(8, 13)], "likelihood": "bernoulli"},
        "counts": {"columns": [f"g{i}" for i in range(13, 19)], "likelihood": "nb"},
    }
    named = VAEEmbedder(views=by_name, **FAST).fit(frame)
    assert named.views == by_name  # the parameter is stored unchanged, resolved in views_
    assert named.views_["mut"].tolist() == [8, 9, 10, 11, 12]
    assert named.view_likelihoods_ == {"expr": "gaussian", "mut": "bernoulli", "counts": "nb"}
    positional = VAEEmbedder(views=VIEWS, **FAST).fit(X)
    np.testing.assert_allclose(named.transform(frame), positional.transform(X), rtol=1e-6, atol=1e-6)
    unknown = {**by_name, "expr": ["g0", "TP53", "g1"]}
    with pytest.raises(ValueError, match="View 'expr': 1 unknown column name.*'TP53'"):
        VAEEmbedder(views=unknown, **FAST).fit(frame)
    mask = np.zeros(X.shape[1], dtype=bool)
    mask[:8] = True
    masked = {**VIEWS, "expr": mask}
    np.testing.assert_allclose(VAEEmbedder(views=masked, **FAST).fit(X).transform(X), positional.transform(X))


def test_bad_values_and_missing_patterns_are_a_clear_error(X):
    bad = X.copy()
    bad[30, 9] = 0.5
    with pytest.raises(ValueError, match="View 'mut' has values other than 0 and 1"):
        VAEEmbedder(views=VIEWS, **FAST).fit(bad)
    bad = X.copy()
    bad[30, 14] = -1.0
    with pytest.raises(ValueError, match="Negative values in view 'counts'"):
        VAEEmbedder(views=VIEWS, **FAST).fit(bad)
    partial = X.copy()
    partial[30, 2] = np.nan
    with pytest.raises(ValueError, match="View 'expr' is partly missing in sample 30 \\(1 of 8"):
        VAEEmbedder(views=VIEWS, **FAST).fit(partial)
    empty = X.copy()
    empty[30] = np.nan
    with pytest.raises(ValueError, match="Sample 30 has no view"):
        VAEEmbedder(views=VIEWS, **FAST).fit(empty)
    never = X.copy()
    never[:, 8:13] = np.nan
    with pytest.raises(ValueError, match="View 'mut' is missing .* in every sample"):
        VAEEmbedder(views=VIEWS, **FAST).fit(never)
    infinite = X.copy()
    infinite[30, 2] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        VAEEmbedder(views=VIEWS, **FAST).fit(infinite)
    fitted = VAEEmbedder(views=VIEWS, **FAST).fit(X)
    for data in (partial, empty, infinite):
        with pytest.raises(ValueError, match="partly missing|no view|infinity"):
            fitted.transform(data)


# ----------------------------------------------------------------------------- assembly


def test_assemble_views_outer_and_inner():
    pd = pytest.importorskip("pandas")
    rna = pd.DataFrame([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], index=["p1", "p2", "p3"], columns=["TP53", "EGFR"])
    mut = (np.array([[1], [0]]), ["p4", "p2"], ["TP53"])
    cnv = ExpressionData(np.array([[0.0, -1.0, 2.0]]), ["A", "B", "C"], ["p3"])
    X, ids, features, views = assemble_views({"rna": rna, "mut": mut, "cnv": cnv}, likelihoods={"mut": "bernoulli"})
    assert ids.tolist() == ["p1", "p2", "p3", "p4"]
    assert features.tolist() == ["rna:TP53", "rna:EGFR", "mut:TP53", "cnv:A", "cnv:B", "cnv:C"]
    assert views == {
        "rna": slice(0, 2),
        "mut": {"columns": slice(2, 3), "likelihood": "bernoulli"},
        "cnv": slice(3, 6),
    }
    expected = np.array(
        [
            [1, 2, np.nan, np.nan, np.nan, np.nan],
            [3, 4, 0, np.nan, np.nan, np.nan],
            [5, 6, np.nan, 0, -1, 2],
            [np.nan, np.nan, 1, np.nan, np.nan, np.nan],
        ],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(X, expected)
    assert X.dtype == np.float32
    indices, likelihoods = resolve_views(views, X.shape[1])
    assert indices["cnv"].tolist() == [3, 4, 5] and likelihoods["mut"] == "bernoulli"
    X_in, ids_in, _, _ = assemble_views({"rna": rna, "mut": mut}, how="inner")
    assert ids_in.tolist() == ["p2"] and not np.isnan(X_in).any()


def test_assembled_frame_fits_a_multiview_vae():
    pd = pytest.importorskip("pandas")
    X = make_views(n=40, missing=False)
    rng = np.random.default_rng(0)
    tables = {}
    for name, cols in (("expr", slice(0, 8)), ("mut", slice(8, 13)), ("counts", slice(13, 19))):
        keep = np.sort(rng.choice(40, size=32, replace=False))
        tables[name] = pd.DataFrame(X[keep, cols], index=[f"s{i}" for i in keep])
    tables["mut"].columns = [f"m{i}" for i in range(5)]
    Xa, ids, features, views = assemble_views(tables, likelihoods={"mut": "bernoulli", "counts": "nb"})
    frame = pd.DataFrame(Xa, index=ids, columns=features)
    model = VAEEmbedder(views=views, **FAST).fit(frame)
    Z = model.transform(frame)
    assert Z.shape == (len(ids), 3) and np.isfinite(Z).all()
    assert sum(model.view_counts_.values()) == 3 * 32


def test_assemble_views_errors():
    good = (np.ones((2, 2)), ["a", "b"], ["x", "y"])
    with pytest.raises(ValueError, match="how"):
        assemble_views({"v": good}, how="left")
    with pytest.raises(ValueError, match="lists sample 'a' more than once"):
        assemble_views({"v": (np.ones((2, 2)), ["a", "a"], ["x", "y"])})
    with pytest.raises(ValueError, match="Table 'v': values of shape"):
        assemble_views({"v": (np.ones((2, 3)), ["a", "b"], ["x", "y"])})
    with pytest.raises(ValueError, match="NaN in part of the row of sample 'b'"):
        assemble_views({"v": (np.array([[1.0, 2.0], [np.nan, 1.0]]), ["a", "b"], ["x", "y"])})
    with pytest.raises(ValueError, match="likelihoods names view"):
        assemble_views({"v": good}, likelihoods={"w": "nb"})
    with pytest.raises(ValueError, match="must be a pandas DataFrame"):
        assemble_views({"v": np.ones((2, 2))})


def test_clone_keeps_views_parameter():
    model = VAEEmbedder(views=VIEWS, **FAST)
    cloned = clone(model)
    assert cloned.views == VIEWS and cloned.views is not VIEWS


# ----------------------------------------------------------------------------- scikit-learn API checks

MULTIVIEW_SMALL = VAEEmbedder(
    views={"first": [0], "rest": slice(1, None)},
    max_epochs=2,
    hidden_dims=(8,),
    n_components=2,
    random_state=0,
    device="cpu",
)


@parametrize_with_checks(
    [MULTIVIEW_SMALL],
    expected_failed_checks=lambda est: {
        "check_estimators_pickle": "puts NaN at random entries: NaN in part of a view is rejected by design",
    },
)
def test_multiview_vae_is_sklearn_compatible(estimator, check):
    check(estimator)
