"""Study-aware pre-training: ``fit(X, batch=study)`` of the three embedders, its pure functions, its routing through
scikit-learn's metadata routing, and the promise that ``batch=None`` changes nothing."""

import hashlib
import sys

import numpy as np
import pytest
import sklearn
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import silhouette_score
from sklearn.model_selection import GridSearchCV, KFold, cross_validate
from sklearn.pipeline import Pipeline

from skssl import ContrastiveEmbedder, MaskedAutoencoder, VAEEmbedder, load_model, make_expression, save_model
from skssl._corruption import grouped_marginal_sample, scarf_corrupt
from skssl._losses import nt_xent
from skssl._nn import with_batch_code

TINY = dict(n_components=3, hidden_dims=(8,), max_epochs=2, device="cpu", random_state=0)
EMBEDDERS = {
    "scarf": lambda **kw: ContrastiveEmbedder(**{**TINY, **kw}),
    "byol": lambda **kw: ContrastiveEmbedder(objective="byol", **{**TINY, **kw}),
    "vime": lambda **kw: MaskedAutoencoder(**{**TINY, **kw}),
    "vae": lambda **kw: VAEEmbedder(**{**TINY, **kw}),
}


@pytest.fixture(scope="module")
def studies():
    """60 samples of 3 studies (labels as strings), 12 genes."""
    X, y, info = make_expression(n_samples=60, n_genes=12, n_batches=3, random_state=0, return_info=True)
    return X, y, np.array([f"study{b}" for b in info["batch"]])


def coded_matrix(n_rows, n_cols):
    # Entry (i, j) holds i * 1000 + j: a value tells the row and the column it came from.
    return (torch.arange(n_rows).unsqueeze(1) * 1000 + torch.arange(n_cols)).double()


# ---------------------------------------------------------------------------------------------------- pure functions
def test_grouped_marginal_sample_takes_each_value_from_another_row_of_the_same_group():
    x = coded_matrix(13, 40)
    groups = torch.tensor([0, 1, 0, 1, 0, 2, 1, 0, 3, 3, 1, 0, 1])  # group 2 has a single row (row 5)
    donors = grouped_marginal_sample(x, groups, torch.Generator().manual_seed(0))
    donor_rows, columns = (donors // 1000).long(), (donors % 1000).long()
    assert torch.equal(columns, torch.arange(40).expand(13, 40))  # same gene
    assert (donor_rows != torch.arange(13).unsqueeze(1)).all()  # another sample
    lone = groups == 2
    assert (groups[donor_rows[~lone]] == groups[~lone].unsqueeze(1)).all()  # of the same group
    assert not (groups[donor_rows[lone]] == 2).any()  # a lone row takes values from the other groups
    for g in (0, 1, 3):  # within a group every row donates once per gene: the group's marginal exactly
        rows = torch.nonzero(groups == g).flatten()
        assert torch.equal(donor_rows[rows].sort(dim=0).values, rows.unsqueeze(1).expand(-1, 40))


def test_scarf_corrupt_with_groups_keeps_every_replacement_within_the_group():
    x = coded_matrix(16, 30)
    groups = torch.arange(16) % 2
    corrupted, mask = scarf_corrupt(x, 0.5, torch.Generator().manual_seed(1), groups=groups)
    assert (mask.sum(dim=1) == 15).all() and torch.equal(corrupted[~mask], x[~mask])
    rows = torch.nonzero(mask)[:, 0]
    donor_rows = (corrupted[mask] // 1000).long()
    assert torch.equal(groups[donor_rows], groups[rows]) and (donor_rows != rows).all()


def test_nt_xent_with_groups_is_the_loss_of_each_group_on_its_own():
    generator = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(9, 5, generator=generator), torch.randn(9, 5, generator=generator)
    groups = torch.tensor([0, 0, 1, 1, 1, 0, 2, 1, 0])  # group 2: one row, no negative, a term of 0
    per_group = sum(
        (groups == g).sum() * nt_xent(z1[groups == g], z2[groups == g], 0.5) for g in (0, 1) if (groups == g).any()
    )
    torch.testing.assert_close(nt_xent(z1, z2, 0.5, groups=groups), per_group / 9)
    # Other-group rows are out of the denominator: moving them changes nothing for the others.
    moved = z1.clone()
    moved[groups == 1] += 3.0
    others = groups != 1
    torch.testing.assert_close(
        nt_xent(moved[others], z2[others], 0.5, groups=groups[others]),
        nt_xent(z1[others], z2[others], 0.5, groups=groups[others]),
    )
    torch.testing.assert_close(nt_xent(z1, z2, 0.5, groups=torch.zeros(9, dtype=torch.long)), nt_xent(z1, z2, 0.5))


def test_with_batch_code_appends_the_one_hot_batch():
    z = torch.randn(2, 4, 3)  # (latent draws, rows, factors)
    out = with_batch_code(z, torch.tensor([0, 2, 1, 2]), 3)
    assert out.shape == (2, 4, 6) and torch.equal(out[..., :3], z)
    assert torch.equal(out[1, :, 3:], torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 1]]))
    torch.testing.assert_close(with_batch_code(z[0], None, 4)[:, 3:], torch.full((4, 4), 0.25))
    assert with_batch_code(z, None, 0) is z


# ---------------------------------------------------------------------------------------------------- batch=None
# Losses and a hash of transform(X) of fits with the code before study-aware pre-training (commit 3d82ced), torch
# 2.13.0 on CPU with one thread: fitting without batch must give them bit for bit.
PRE_CHANGE = {
    "scarf": (["0x1.1529ae0000000p+2", "0x1.1e59e20000000p+2"], "5d8353465a47e5f7"),
    "byol": (["0x1.fba2960000000p+0", "0x1.ba24ee0000000p+0"], "5067106181382280"),
    "vime": (["0x1.63b8260000000p+1", "0x1.6c94880000000p+1"], "be81c6970a940976"),
    "vae": (["0x1.8904ba0000000p+0", "0x1.844a040000000p+0"], "9ad60d2f05661073"),
}


@pytest.mark.skipif(not torch.__version__.startswith("2.13.0"), reason="values recorded with torch 2.13.0")
@pytest.mark.parametrize("name", list(EMBEDDERS))
def test_fit_without_batch_is_bitwise_the_pre_change_fit(name):
    torch.set_num_threads(1)  # as recorded (the conftest's fixture restores the count)
    X = make_expression(n_samples=40, n_genes=10, random_state=0)[0]
    model = EMBEDDERS[name](hidden_dims=(8,)).fit(X)
    Z = model.transform(X)
    losses, digest = PRE_CHANGE[name]
    assert [float(v).hex() for v in model.history_["train_loss"]] == losses
    assert hashlib.sha256(Z.tobytes()).hexdigest()[:16] == digest
    assert not hasattr(model, "batch_categories_")


# ---------------------------------------------------------------------------------------------------- fit with batch
@pytest.mark.parametrize("name", list(EMBEDDERS))
def test_fit_with_batch_and_transform_of_a_new_study_without_it(name, studies):
    X, _, batch = studies
    seen = batch != "study2"
    model = EMBEDDERS[name]().fit(X[seen], batch=batch[seen])
    np.testing.assert_array_equal(model.batch_categories_, ["study0", "study1"])
    new_study = model.transform(X[~seen])  # study2 was never seen: no batch to give
    assert new_study.shape == (int((~seen).sum()), 3) and np.isfinite(new_study).all()
    # One sample embeds the same alone or among others: the encoder reads no batch.
    np.testing.assert_allclose(model.transform(X[~seen][:1]), new_study[:1], rtol=1e-5, atol=1e-6)
    # partial_fit continues with the same batches; a refit without batch forgets them.
    model.partial_fit(X[seen], batch=batch[seen])
    np.testing.assert_array_equal(model.batch_categories_, ["study0", "study1"])
    model.fit(X)
    assert not hasattr(model, "batch_categories_")


def test_every_decoder_reads_the_batch_and_the_encoder_does_not(studies):
    X, _, batch = studies
    X2 = np.hstack([X, (X[:, :4] > np.median(X[:, :4], axis=0)).astype(np.float32)])
    X2[:5, 12:] = np.nan
    views = {"rna": slice(0, 12), "calls": {"columns": slice(12, 16), "likelihood": "bernoulli"}}
    models = [
        VAEEmbedder(views=views, **TINY).fit(X2, batch=batch),
        VAEEmbedder(likelihood="nb", **TINY).fit(np.round(2.0**X), batch=batch),
        MaskedAutoencoder(**TINY).fit(X, batch=batch),
    ]
    for model in models:
        module = model.module_
        heads = list(module.decoders) if hasattr(module, "decoders") else [module.mask_head, module.feature_head]
        assert [head[0].in_features for head in heads] == [3 + 3] * len(heads)  # latent factors + 3 studies
        encoder_inputs = {m.in_features for m in module.encoder_path().modules() if isinstance(m, torch.nn.Linear)}
        assert encoder_inputs <= {12, 4, 8}  # the views' genes, then the hidden layer: no batch input
    # Decoding without a sample's batch: an average study.
    for model, data in zip(models[:2], (X2, np.round(2.0**X))):
        assert np.isfinite(model.inverse_transform(model.transform(data))).all()
        assert np.isfinite(model.sample(3, random_state=0)).all()


def test_fine_tuning_a_study_aware_embedder_uses_its_encoder_only(studies):
    from sklearn.frozen import FrozenEstimator

    from skssl import SSLClassifier

    X, y, batch = studies
    for embedder in (MaskedAutoencoder(**TINY), VAEEmbedder(**TINY)):
        embedder.fit(X, batch=batch)
        clf = SSLClassifier(FrozenEstimator(embedder), strategy="finetune", max_epochs=2, random_state=0).fit(X, y)
        body = {m.in_features for m in clf.module_.body.modules() if isinstance(m, torch.nn.Linear)}
        assert body <= {12, 8} and clf.predict(X).shape == (60,)  # no decoder, no batch input


def shifted_studies(seed=0):
    """Two studies, the second shifted by +3 on half the genes: a strong batch effect."""
    X, _, info = make_expression(n_samples=120, n_genes=20, n_batches=1, random_state=seed, return_info=True)
    batch = np.arange(120) % 2
    X = X.copy()
    X[batch == 1, :10] += 3.0
    return X, batch


def test_the_conditioned_decoder_explains_the_study():
    X, batch = shifted_studies()
    x, right = torch.as_tensor(X), torch.as_tensor(batch)
    wrong = 1 - right
    vime = MaskedAutoencoder(n_components=4, hidden_dims=(32,), max_epochs=40, random_state=0).fit(X, batch=batch)
    with torch.no_grad():
        vime.module_.eval()
        loss = {
            name: float(vime._batch_loss(vime.module_, x, codes, generator=torch.Generator().manual_seed(0)))
            for name, codes in (("right", right), ("wrong", wrong))
        }
    assert loss["right"] < 0.8 * loss["wrong"]
    vae = VAEEmbedder(n_components=4, hidden_dims=(32,), max_epochs=40, random_state=0).fit(X, batch=batch)
    noise = torch.zeros((1, 4))
    with torch.no_grad():
        vae.module_.eval()
        elbo = {
            name: float(vae.module_.elbo(x, noise=noise, batch=codes).mean())
            for name, codes in (("right", right), ("wrong", wrong))
        }
    assert elbo["right"] > elbo["wrong"] + 2.0  # nats per sample


@pytest.mark.parametrize("name", ["scarf", "vime", "vae"])
def test_study_aware_pre_training_mixes_the_studies_in_the_embedding(name):
    # Silhouette of the study labels on the embedding: high when the studies form their own clusters.
    X, _, info = make_expression(n_samples=200, n_genes=100, n_batches=3, random_state=0, return_info=True)
    batch = info["batch"]
    params = dict(n_components=8, hidden_dims=(64,), max_epochs=40, device="cpu", random_state=0)
    make = {"scarf": ContrastiveEmbedder, "vime": MaskedAutoencoder, "vae": VAEEmbedder}[name]
    plain = silhouette_score(make(**params).fit_transform(X), batch)
    aware = silhouette_score(make(**params).fit(X, batch=batch).transform(X), batch)
    assert aware < plain - 0.05, (plain, aware)


# ---------------------------------------------------------------------------------------------------- routing
def test_batch_is_routed_through_pipeline_cross_validation_and_grid_search(studies):
    X, y, batch = studies
    with sklearn.config_context(enable_metadata_routing=True):
        embedder = MaskedAutoencoder(**TINY).set_fit_request(batch=True)
        pipe = Pipeline([("ssl", embedder), ("clf", LogisticRegression())])
        folds = KFold(3, shuffle=True, random_state=0)
        result = cross_validate(pipe, X, y, cv=folds, params={"batch": batch}, return_estimator=True)
        for fitted, (train, _) in zip(result["estimator"], folds.split(X)):
            np.testing.assert_array_equal(fitted["ssl"].batch_categories_, np.unique(batch[train]))
        search = GridSearchCV(pipe, {"ssl__n_components": [2, 3]}, cv=2).fit(X, y, batch=batch)
        np.testing.assert_array_equal(search.best_estimator_["ssl"].batch_categories_, np.unique(batch))
        # Not requested: the pipeline refuses to drop the batch silently.
        plain = Pipeline([("ssl", MaskedAutoencoder(**TINY)), ("clf", LogisticRegression())])
        with pytest.raises(ValueError, match="batch"):
            plain.fit(X, y, batch=batch)


# ---------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "batch, message",
    [
        (np.zeros(59), "59 label.*60 sample"),
        (np.r_[np.zeros(59), np.nan], "1 missing label.*row 59.*'unknown'"),
        ([None] + ["a"] * 59, "missing label.*row 0"),
        (np.array(["a", 1] * 30, dtype=object), "mixes labels of different types"),
        (np.zeros((60, 2)), "1-d array-like"),
    ],
)
def test_bad_batch_labels_are_refused(studies, batch, message):
    X = studies[0]
    with pytest.raises(ValueError, match=message):
        MaskedAutoencoder(**TINY).fit(X, batch=batch)


def test_a_study_of_one_sample_and_inconsistent_continuations_are_refused(studies):
    X, _, batch = studies
    lone = batch.copy()
    lone[0] = "alone"
    with pytest.raises(ValueError, match="batch 'alone' has a single sample.*Merge it"):
        ContrastiveEmbedder(**TINY).fit(X, batch=lone)
    VAEEmbedder(**TINY).fit(X, batch=lone)  # a decoder input of its own is fine for a single sample
    model = MaskedAutoencoder(**TINY, warm_start=True).fit(X, batch=batch)
    with pytest.raises(ValueError, match="was not fitted with \\('alone'\\)"):
        model.fit(X, batch=lone)
    with pytest.raises(ValueError, match="fitted with batch=.*Pass batch"):
        model.partial_fit(X)
    with pytest.raises(ValueError, match="fitted without batch"):
        MaskedAutoencoder(**TINY).partial_fit(X).partial_fit(X, batch=batch)
    np.testing.assert_array_equal(model.batch_categories_, np.unique(batch))  # the refused fits changed nothing


def test_a_checkpointed_fit_with_batch_resumes_only_with_the_same_batch(studies, tmp_path, monkeypatch):
    import skssl._training as training

    X, _, batch = studies
    path = str(tmp_path / "fit.ckpt")
    params = dict(TINY, max_epochs=4, n_iter_no_change=100)
    reference = MaskedAutoencoder(**params).fit(X, batch=batch)
    monkeypatch.setattr(training, "CHECKPOINT_SECONDS", 0.0)
    save = training.Checkpoint.save

    def save_then_die(self, *args, **state):
        save(self, *args, **state)
        if state["epoch"] == 2:
            raise InterruptedError("killed")

    monkeypatch.setattr(training.Checkpoint, "save", save_then_die)
    with pytest.raises(InterruptedError):
        MaskedAutoencoder(**params, checkpoint=path).fit(X, batch=batch)
    monkeypatch.setattr(training.Checkpoint, "save", save)
    with pytest.raises(ValueError, match="other parameters or data \\(differing: batch\\)"):
        MaskedAutoencoder(**params, checkpoint=path).fit(X, batch=np.roll(batch, 1))
    resumed = MaskedAutoencoder(**params, checkpoint=path).fit(X, batch=batch)
    assert resumed.history_ == reference.history_
    np.testing.assert_array_equal(resumed.transform(X), reference.transform(X))


def test_a_fitted_model_with_batches_saves_and_loads(studies, tmp_path):
    X, _, batch = studies
    for model in (MaskedAutoencoder(**TINY), VAEEmbedder(**TINY), ContrastiveEmbedder(**TINY)):
        model.fit(X, batch=batch)
        save_model(model, tmp_path / "model.skssl")
        loaded = load_model(tmp_path / "model.skssl")
        np.testing.assert_array_equal(loaded.batch_categories_, model.batch_categories_)
        np.testing.assert_array_equal(loaded.transform(X), model.transform(X))
        if isinstance(model, VAEEmbedder):
            np.testing.assert_array_equal(
                loaded.inverse_transform(loaded.transform(X)), model.inverse_transform(model.transform(X))
            )


# ---------------------------------------------------------------------------------------------------- data-parallel
DDP = dict(n_components=3, hidden_dims=(8,), batch_size=9, max_epochs=2, random_state=0, device="cpu")
DDP_BATCH = np.arange(40) % 3  # three studies, interleaved: every global batch of 9 rows is cut across them


def _ddp_fits(X):
    """The data-parallel fits compared: SCARF (gathers the codes of the whole batch) and the VAE (its rows only)."""
    return {
        "scarf": ContrastiveEmbedder(**DDP).fit(X, batch=DDP_BATCH),
        "vae": VAEEmbedder(**DDP).fit(X, batch=DDP_BATCH),
    }


def _ddp_worker(rank, init_file, data_path, out_dir):
    import datetime

    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=60)
    )
    fits = _ddp_fits(np.load(data_path, mmap_mode="r"))
    torch.save({name: model.module_.state_dict() for name, model in fits.items()}, f"{out_dir}/rank{rank}.pt")


def test_a_data_parallel_fit_with_batch_is_the_one_process_fit(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    X = np.random.default_rng(0).lognormal(size=(40, 6)).astype(np.float32)
    np.save(tmp_path / "X.npy", X)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME", "lo")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p)
    args = [str(tmp_path / "store"), str(tmp_path / "X.npy"), str(tmp_path)]
    ranks = [
        subprocess.Popen([sys.executable, __file__, str(r), *args], env=env, stderr=subprocess.PIPE) for r in (0, 1)
    ]
    try:
        errors = [rank.communicate(timeout=240)[1].decode(errors="replace") for rank in ranks]
    finally:
        for rank in ranks:
            if rank.poll() is None:
                rank.kill()
    assert [rank.returncode for rank in ranks] == [0, 0], "\n".join(errors)
    states = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    for name, model in _ddp_fits(X).items():
        for key, value in model.module_.state_dict().items():
            assert torch.equal(states[0][name][key], states[1][name][key]), (name, key)
            torch.testing.assert_close(states[0][name][key], value, rtol=1e-4, atol=1e-5, msg=f"{name} {key}")


if __name__ == "__main__":  # a worker of the data-parallel test: rank, init file, data, output folder
    _ddp_worker(int(sys.argv[1]), *sys.argv[2:])
