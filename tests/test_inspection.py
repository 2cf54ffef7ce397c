"""Gene-level interpretation (skssl.inspection, skssl.plotting) and the truth of make_expression."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import expit

from skssl import (
    ContrastiveEmbedder,
    MaskedAutoencoder,
    SSLClassifier,
    SSLRegressor,
    VAEEmbedder,
    make_expression,
)
from skssl.inspection import embedding_loadings, explain, gene_importances, top_genes

TINY_NET = {"n_components": 3, "hidden_dims": (16,), "max_epochs": 5}


def two_gene_problem(n=160, n_genes=12, seed=0):
    """The class depends on genes 2 and 5 only; the other genes are noise of the same scale."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_genes)).astype(np.float32)
    y = (X[:, 2] - X[:, 5] > 0).astype(np.int64)
    y_semi = y.copy()
    y_semi[n // 2 :] = -1
    return X, y, y_semi


@pytest.fixture(scope="module")
def expression():
    X, y = make_expression(n_samples=90, n_genes=40, random_state=0)
    y_semi = y.copy()
    y_semi[30:] = -1
    return X, y_semi


# ------------------------------------------------------------------------------------------- make_expression truth


def test_make_expression_truth_leaves_data_unchanged():
    X, y = make_expression(n_samples=50, n_genes=120, random_state=4)
    X_info, y_info, info = make_expression(n_samples=50, n_genes=120, random_state=4, return_info=True)
    assert_array_equal(X, X_info)
    assert_array_equal(y, y_info)
    loaded = np.flatnonzero(np.any(info.loadings[info.class_programs] != 0, axis=0))
    assert_array_equal(info.informative_genes, loaded)
    assert_allclose(info.class_effects, info.class_means @ info.loadings[info.class_programs])
    # The truth is what separates the classes: their mean profiles differ more on the informative genes.
    _, y_big, info_big = make_expression(n_samples=600, n_genes=200, random_state=1, return_info=True)
    X_big = np.log(info_big.counts + 1)
    spread = np.ptp([X_big[y_big == c].mean(axis=0) for c in range(3)], axis=0)
    others = np.setdiff1d(np.arange(200), info_big.informative_genes)
    assert np.median(spread[info_big.informative_genes]) > 2 * np.median(spread[others])


def test_make_expression_no_signal_no_informative_genes():
    _, _, info = make_expression(n_samples=30, n_genes=50, signal_strength=0.0, random_state=0, return_info=True)
    assert info.informative_genes.size == 0


# ------------------------------------------------------------------------------------------- predictors


def test_one_member_ensemble_equals_the_member(expression):
    X, y_semi = expression
    alone = SSLClassifier(members=("genes",), random_state=0).fit(X, y_semi)
    full = SSLClassifier(random_state=0).fit(X, y_semi)
    assert_allclose(gene_importances(alone, X), gene_importances(full, X, member="genes"), rtol=1e-10)
    # The ensemble's attributions are its members' own, weighted as their outputs are.
    weighted = sum(w * explain(full, X, member=m).attributions for m, w in full.weights_.items())
    assert_allclose(explain(full, X).attributions, weighted, rtol=1e-10, atol=1e-15)


def test_genes_member_matches_closed_form_logistic_regression():
    # Binary logistic regression: the integrated gradient of sigmoid(beta . x) has a closed form.
    X, y, y_semi = two_gene_problem()
    clf = SSLClassifier(members=("genes",), random_state=0).fit(X, y_semi)
    member = clf.ensemble_.ensemble_.members_["genes"]
    Z = member.transform(clf.ensemble_.ensemble_.genes_.standardised(X.astype(np.float64)))
    logit = member.model_.decision_function(Z)
    baseline = X.astype(np.float64).mean(axis=0)
    Zb = member.transform(clf.ensemble_.ensemble_.genes_.standardised(baseline[None, :]))
    logit_b = member.model_.decision_function(Zb)[0]
    beta = member.model_.coef_[0] / (clf.ensemble_.ensemble_.genes_.scale_ * member.scale_)
    expected = (X - baseline) * beta * ((expit(logit) - expit(logit_b)) / (logit - logit_b))[:, None]
    phi = explain(clf, X).attributions
    assert_allclose(phi[:, :, 1], expected, rtol=1e-6, atol=1e-9)
    assert_allclose(phi[:, :, 0], -expected, rtol=1e-6, atol=1e-9)


# Not the "pcs" or "graph" members alone: on independent genes their 8 or 10 principal components cannot single
# out two genes (they find co-expressed programs, which this toy problem has none of).
@pytest.mark.parametrize("members", [None, ("genes",)])
def test_two_informative_genes_come_first_ensemble(members):
    X, _, y_semi = two_gene_problem()
    clf = SSLClassifier(members=members, random_state=0).fit(X, y_semi)
    importances = gene_importances(clf, X)
    assert sorted(np.argsort(-importances.sum(axis=1))[:2].tolist()) == [2, 5]


def test_two_informative_genes_come_first_finetune():
    X, _, y_semi = two_gene_problem(n=200)
    embedder = MaskedAutoencoder(n_components=6, hidden_dims=(32,), max_epochs=5, random_state=0)
    clf = SSLClassifier(embedder, strategy="finetune", max_epochs=60, random_state=0).fit(X, y_semi)
    importances = gene_importances(clf, X, n_steps=16)
    assert sorted(np.argsort(-importances.sum(axis=1))[:2].tolist()) == [2, 5]


def test_two_informative_genes_come_first_regressor():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 10))
    target = 3 * X[:, 1] - 2 * X[:, 8] + 0.1 * rng.normal(size=120)
    target[60:] = np.nan
    reg = SSLRegressor(random_state=0).fit(X, target)
    importances = gene_importances(reg, X)
    assert importances.shape == (10, 1)
    assert sorted(np.argsort(-importances[:, 0])[:2].tolist()) == [1, 8]


def test_linear_members_are_complete(expression):
    X, y_semi = expression
    clf = SSLClassifier(members=("genes", "pcs"), random_state=0).fit(X, y_semi)
    explanation = explain(clf, X)
    assert explanation.complete
    # float32 rounding of the estimator's own predictions; the attributions are exact.
    assert np.abs(explanation.completeness_gap).max() < 1e-5
    assert_allclose(explanation.prediction, clf.predict_proba(X))
    # Probabilities sum to 1 at the sample and at the baseline: the classes' attributions cancel gene by gene.
    assert_allclose(explanation.attributions.sum(axis=2), 0.0, atol=1e-12)
    target = X[:, 0] - X[:, 1]
    target[40:] = np.nan
    reg = SSLRegressor(members=("genes", "pcs"), random_state=0).fit(X, target)
    explanation = explain(reg, X)
    assert np.abs(explanation.completeness_gap).max() < 1e-4 * np.ptp(explanation.prediction)


def test_graph_member_is_a_stated_approximation(expression):
    X, y_semi = expression
    clf = SSLClassifier(members=("graph",), random_state=0).fit(X, y_semi)
    explanation = explain(clf, X)
    assert not explanation.complete
    assert np.isfinite(explanation.attributions).all()


def test_integrated_gradients_complete_as_steps_grow(expression):
    X, y_semi = expression
    embedder = MaskedAutoencoder(**TINY_NET, random_state=0)
    clf = SSLClassifier(embedder, strategy="finetune", max_epochs=10, random_state=0).fit(X, y_semi)
    coarse = np.abs(explain(clf, X, n_steps=8).completeness_gap).max()
    fine = explain(clf, X, n_steps=512)
    assert fine.complete
    # The stated tolerance: the midpoint rule's error on a ReLU network falls as 1 / n_steps.
    assert np.abs(fine.completeness_gap).max() < 0.01
    assert np.abs(fine.completeness_gap).max() < coarse / 10
    # The embedding member of an ensemble is explained the same way.
    ensemble = SSLClassifier(embedder, members=("genes", "embedding"), random_state=0).fit(X, y_semi)
    assert np.abs(explain(ensemble, X, n_steps=512).completeness_gap).max() < 0.01


def test_regressor_finetune_attributions_in_units_of_y():
    X, _, _ = two_gene_problem(n=100)
    target = 100.0 * X[:, 2].astype(np.float64)
    target[50:] = np.nan
    embedder = MaskedAutoencoder(**TINY_NET, random_state=0)
    reg = SSLRegressor(embedder, strategy="finetune", max_epochs=10, random_state=0).fit(X, target)
    explanation = explain(reg, X, n_steps=512)
    difference = explanation.prediction - explanation.baseline_prediction
    assert np.abs(explanation.completeness_gap).max() < 0.01 * np.abs(difference).max()


def test_as_frame_names_genes_and_classes():
    pd = pytest.importorskip("pandas")
    X, y, y_semi = two_gene_problem()
    genes = [f"G{i}" for i in range(X.shape[1])]
    frame = pd.DataFrame(X, columns=genes, index=[f"s{i}" for i in range(len(X))])
    labels = np.where(y_semi == 1, "up", np.where(y_semi == 0, "down", None)).astype(object)
    labels[y_semi == -1] = -1
    clf = SSLClassifier(random_state=0).fit(frame, labels)
    importances = gene_importances(clf, frame, as_frame=True)
    assert list(importances.columns) == ["down", "up"] and list(importances.index) == genes
    assert {name for name, _ in top_genes(importances, "up", k=2)} == {"G2", "G5"}
    explanation = explain(clf, frame.iloc[:3], baseline=X.mean(axis=0), as_frame=True)
    assert explanation.attributions["up"].shape == (3, len(genes))
    assert list(explanation.attributions["up"].index) == ["s0", "s1", "s2"]


def test_bad_input_is_named():
    X, _, y_semi = two_gene_problem(n=60)
    clf = SSLClassifier(members=("genes",), random_state=0).fit(X, y_semi)
    with pytest.raises(ValueError, match="only 1 row"):
        explain(clf, X[:1])
    with pytest.raises(ValueError, match="baseline must be one expression profile"):
        explain(clf, X, baseline=np.zeros(3))
    with pytest.raises(ValueError, match="baseline contains NaN"):
        explain(clf, X, baseline=np.full(X.shape[1], np.nan))
    with pytest.raises(ValueError, match="n_steps must be a positive integer"):
        explain(clf, X, n_steps=0)
    with pytest.raises(ValueError, match="member must be one of"):
        explain(clf, X, member="pcs")
    with pytest.raises(ValueError, match="features"):
        explain(clf, X[:, :5])
    with pytest.raises(TypeError, match="embedding_loadings"):
        explain(MaskedAutoencoder(**TINY_NET).fit(X), X)
    with pytest.raises(TypeError, match="skssl embedder"):
        embedding_loadings(clf, X)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        top_genes(np.ones((3, 2)), k=0)


# ------------------------------------------------------------------------------------------- embedders


@pytest.mark.parametrize("Embedder", [ContrastiveEmbedder, MaskedAutoencoder, VAEEmbedder])
def test_encoder_loadings_are_average_gradients_of_transform(Embedder):
    X, _ = make_expression(n_samples=40, n_genes=15, random_state=0)
    embedder = Embedder(**TINY_NET, random_state=0).fit(X)
    loadings = embedding_loadings(embedder, X)
    assert loadings.shape == (15, 3)
    # Central finite differences of transform, averaged over the rows, times each gene's spread.
    step = 1e-2
    gene = int(np.argmax(X.std(axis=0)))
    up, down = X.copy(), X.copy()
    up[:, gene] += step
    down[:, gene] -= step
    slope = ((embedder.transform(up) - embedder.transform(down)) / (2 * step)).mean(axis=0)
    assert_allclose(loadings[gene], slope * X[:, gene].std(), rtol=0.05, atol=1e-3)


def test_decoder_loadings_match_inverse_transform():
    X, _ = make_expression(n_samples=40, n_genes=15, random_state=0)
    vae = VAEEmbedder(**TINY_NET, random_state=0).fit(X)
    loadings = embedding_loadings(vae, X, method="decoder")
    t0 = vae.transform(X.mean(axis=0, keepdims=True)).astype(np.float64)
    step = 1e-2
    for k in range(3):
        up, down = t0.copy(), t0.copy()
        up[0, k] += step
        down[0, k] -= step
        slope = (vae.inverse_transform(up) - vae.inverse_transform(down))[0] / (2 * step)
        assert_allclose(loadings[:, k], slope, rtol=0.02, atol=1e-3)
    vime = MaskedAutoencoder(**TINY_NET, random_state=0).fit(X)
    assert embedding_loadings(vime, X, method="decoder").shape == (15, 3)
    with pytest.raises(ValueError, match="has none"):
        embedding_loadings(ContrastiveEmbedder(**TINY_NET).fit(X), X, method="decoder")
    with pytest.raises(ValueError, match="single view"):
        embedding_loadings(vae, X, view="rna")
    with pytest.raises(ValueError, match="method must be"):
        embedding_loadings(vae, X, method="jacobian")


def test_multiview_vae_loadings_per_view():
    pd = pytest.importorskip("pandas")
    from skssl import assemble_views

    rng = np.random.default_rng(0)
    latent = rng.normal(size=(60, 2))
    rna = pd.DataFrame(latent @ rng.normal(size=(2, 8)) + 0.1 * rng.normal(size=(60, 8)))
    rna.columns = [f"r{i}" for i in range(8)]
    protein = pd.DataFrame(latent @ rng.normal(size=(2, 4)), columns=[f"p{i}" for i in range(4)])
    protein = protein.iloc[10:]  # ten samples lack the protein view
    X, ids, features, views = assemble_views({"rna": rna, "protein": protein})
    frame = pd.DataFrame(X, index=ids, columns=features)
    vae = VAEEmbedder(views=views, n_components=2, hidden_dims=(8,), max_epochs=3, random_state=0).fit(frame)
    for method in ("encoder", "decoder"):
        per_view = embedding_loadings(vae, frame, method=method, view="protein", as_frame=True)
        assert list(per_view.index) == [f"protein:p{i}" for i in range(4)]
        assert np.isfinite(per_view.to_numpy()).all()
        whole = embedding_loadings(vae, frame, method=method)
        assert_allclose(per_view.to_numpy(), whole[vae.views_["protein"]])


# ------------------------------------------------------------------------------------------- plots


def test_plot_top_genes_and_embedding():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skssl.plotting import plot_embedding, plot_top_genes

    table = np.array([[0.2, -0.1], [-0.7, 0.3], [0.5, 0.0], [0.05, 0.9]])
    ax = plot_top_genes(table, column=0, k=3, names=["A", "B", "C", "D"])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A", "C", "B"]  # largest |value| on top
    assert [round(p.get_width(), 6) for p in ax.patches] == [0.2, 0.5, -0.7]
    ax = plot_top_genes(table, k=1)  # every column: the sum of absolute values
    assert [t.get_text() for t in ax.get_yticklabels()] == ["1"]
    labels = np.array(["a", "b", None, "a", -1, "b"], dtype=object)
    ax = plot_embedding(np.arange(18, dtype=float).reshape(6, 3), labels, dims=(2, 0), title="t")
    assert [c.get_label() for c in ax.collections] == ["unlabeled", "a", "b"]
    assert [len(c.get_offsets()) for c in ax.collections] == [2, 2, 2]
    assert ax.get_xlabel() == "dimension 2"
    with pytest.raises(ValueError, match="dims must be"):
        plot_embedding(np.zeros((4, 2)), dims=(0, 2))
    with pytest.raises(ValueError, match="one entry per sample"):
        plot_embedding(np.zeros((4, 2)), labels=[0, 1])
    plt.close("all")


def test_plotting_without_matplotlib_says_how_to_install(monkeypatch):
    import sys

    from skssl.plotting import plot_top_genes

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"skssl\[plot\]"):
        plot_top_genes(np.ones((3, 1)))


@pytest.mark.parametrize("Embedder", [MaskedAutoencoder, VAEEmbedder])
def test_first_layer_shortcut_equals_plain_integrated_gradients(expression, Embedder):
    import torch

    from skssl import inspection

    X, y_semi = expression
    clf = SSLClassifier(Embedder(**TINY_NET, random_state=0), strategy="finetune", max_epochs=5, random_state=0)
    clf.fit(X, y_semi)
    assert inspection._affine_split(clf.module_.body) is not None  # the shortcut is taken
    module = inspection._double_copy(clf.module_)
    X64 = X[:10].astype(np.float64)
    baseline = X.mean(axis=0).astype(np.float64)

    def probabilities(x):
        return torch.softmax(module(x), dim=1)

    plain = inspection._integrated_gradients(probabilities, X64, baseline, 3, 16)
    assert_allclose(explain(clf, X[:10], baseline=baseline, n_steps=16).attributions, plain, rtol=1e-7, atol=1e-12)


def test_signed_importances_give_the_direction():
    X, _, y_semi = two_gene_problem()  # class 1 when gene 2 is high and gene 5 is low
    clf = SSLClassifier(members=("genes",), random_state=0).fit(X, y_semi)
    signed = gene_importances(clf, X, signed=True)
    assert signed[2, 1] > 0 and signed[5, 1] < 0
    # A linear model's effect has one direction: the magnitude is the unsigned importance's.
    assert_allclose(np.abs(signed), gene_importances(clf, X), rtol=1e-12)


def test_importances_by_blocks_of_rows_equal_all_at_once(expression, monkeypatch):
    from skssl import inspection

    X, y_semi = expression
    clf = SSLClassifier(random_state=0).fit(X, y_semi)
    everything = np.abs(explain(clf, X).attributions).mean(axis=0)
    monkeypatch.setattr(inspection, "_ATTRIBUTION_CELLS", 7 * X.shape[1] * 3)  # blocks of 7 rows
    assert_allclose(gene_importances(clf, X), everything, rtol=1e-12)
