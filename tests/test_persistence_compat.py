"""Models saved by skssl 0.1.0 (format version 1, the VAE before the skssl.vae package) and by skssl 0.2.1 (format
version 2, the ensemble's internal object as ``ensemble_``) still load and predict.

The fixtures in tests/data/format1/ and tests/data/format2/ were written by the old code (make_fixtures.py and
make_format2_fixtures.py say how), with the old code's outputs on fixed inputs in expected.npz.
"""

import io
import json
import os
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

import skssl
from skssl import (
    SemiSupervisedEnsembleClassifier,
    SemiSupervisedEnsembleRegressor,
    SSLClassifier,
    SSLRegressor,
    VAEEmbedder,
    load_model,
    read_model_info,
    save_model,
)
from skssl._ensemble import WeightedMembers
from skssl.persistence import FORMAT_VERSION

DATA = os.path.join(os.path.dirname(__file__), "data", "format1")
DATA_2 = os.path.join(os.path.dirname(__file__), "data", "format2")
EMBEDDERS = ["vae_gaussian", "vae_nb", "vae_views"]
CLASSIFIERS = ["clf_finetune_vae", "clf_finetune_vae_views", "clf_finetune_vae_nb_scratch", "clf_ensemble_vae"]
REGRESSORS = ["reg_finetune_vae"]
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def _expected_outputs(directory):
    """The outputs that the code which wrote the fixtures of ``directory`` gave (its ``expected.npz``)."""
    with np.load(os.path.join(directory, "expected.npz")) as stored:
        return dict(stored)


@pytest.fixture(scope="module")
def expected():
    return _expected_outputs(DATA)


def _path(name, directory=DATA):
    return os.path.join(directory, f"{name}.skssl")


@pytest.mark.parametrize("name", EMBEDDERS + CLASSIFIERS + REGRESSORS)
def test_fixture_was_written_by_0_1_0(name):
    info = read_model_info(_path(name))
    assert info["format_version"] == 1
    assert info["versions"]["skssl"] == "0.1.0"
    assert info["metadata"] == {"fixture": name}


@pytest.mark.parametrize("name", EMBEDDERS)
def test_old_vae_embedder_gives_the_old_outputs(name, expected):
    model = load_model(_path(name))
    assert type(model) is VAEEmbedder
    X = expected[f"{name}.X"]
    Z = model.transform(X)
    np.testing.assert_allclose(Z, expected[f"{name}.transform"], **TOLERANCE)
    np.testing.assert_allclose(model.inverse_transform(Z), expected[f"{name}.inverse_transform"], **TOLERANCE)
    np.testing.assert_allclose(model.score_samples(X), expected[f"{name}.score_samples"], **TOLERANCE)
    # Draws read the noise variances, dispersions and (nb) the library-size statistics of the fit data.
    np.testing.assert_allclose(model.sample(3, random_state=0), expected[f"{name}.sample"], **TOLERANCE)


def test_old_nb_library_sizes_become_buffers():
    model = load_model(_path("vae_nb"))
    likelihood = model.module_.likelihoods[0]
    assert float(likelihood.library_size) == pytest.approx(model.library_size_)
    assert float(likelihood.log_library_mean) == pytest.approx(model.log_library_mean_)
    assert float(likelihood.log_library_std) == pytest.approx(model.log_library_std_)


def test_old_multiview_counts_become_buffers():
    model = load_model(_path("vae_views"))
    assert model.module_.view_counts.tolist() == [model.view_counts_[name] for name in model.views_]
    assert model.module_.names == list(model.views_)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_old_classifier_gives_the_old_predictions(name, expected):
    model = load_model(_path(name))
    assert type(model) is SSLClassifier
    X = expected[f"{name}.X"]
    np.testing.assert_array_equal(model.predict(X), expected[f"{name}.predict"])
    np.testing.assert_allclose(model.predict_proba(X), expected[f"{name}.predict_proba"], **TOLERANCE)


@pytest.mark.parametrize("name", REGRESSORS)
def test_old_regressor_gives_the_old_predictions(name, expected):
    model = load_model(_path(name))
    assert type(model) is SSLRegressor
    X = expected[f"{name}.X"]
    np.testing.assert_allclose(model.predict(X), expected[f"{name}.predict"], **TOLERANCE)


@pytest.mark.parametrize("name", EMBEDDERS + CLASSIFIERS + REGRESSORS)
def test_old_model_saved_again_loads_in_the_new_layout(name, expected, tmp_path):
    """A loaded old model is saved in the new layout, which loads unchanged (no upgrade applies to it)."""
    model = load_model(_path(name))
    path = save_model(model, tmp_path / "again.skssl")
    again = load_model(path)
    X = expected[f"{name}.X"]
    method = "transform" if name in EMBEDDERS else "predict_proba" if name in CLASSIFIERS else "predict"
    np.testing.assert_array_equal(getattr(again, method)(X), getattr(model, method)(X))
    with zipfile.ZipFile(path) as archive:
        tensors = torch.load(io.BytesIO(archive.read("tensors.pt")), weights_only=True)
        meta = json.loads(archive.read("meta.json"))
    assert meta["format_version"] == FORMAT_VERSION and meta["versions"]["skssl"] == skssl.__version__ != "0.1.0"
    assert tensors, "the network was written"


@pytest.mark.parametrize("name", ["vae_gaussian", "clf_finetune_vae_views"])
def test_only_format_1_is_upgraded(name, tmp_path):
    """The format version tells the layouts apart: the same old-layout tensors declared as format 2 are refused,
    not renamed (a format-2 file always has the layout that skssl.vae builds)."""

    def declare_format_2(meta, tensors):
        meta["format_version"] = 2

    path = _rewrite(_path(name), tmp_path / "relabelled.skssl", declare_format_2)
    with pytest.raises(ValueError, match="network"):
        load_model(path)


def _rewrite(source, target, edit):
    """Copy ``source`` to ``target`` with ``edit(meta, tensors)`` applied."""
    with zipfile.ZipFile(source) as archive:
        meta = json.loads(archive.read("meta.json"))
        tensors = torch.load(io.BytesIO(archive.read("tensors.pt")), weights_only=True)
    edit(meta, tensors)
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    with zipfile.ZipFile(target, "w") as archive:
        archive.writestr("meta.json", json.dumps(meta))
        archive.writestr("tensors.pt", buffer.getvalue())
    return target


def test_old_nb_file_without_library_sizes_asks_for_a_refit(tmp_path):
    def drop_library_size(meta, tensors):
        del meta["estimator"]["attributes"]["library_size_"]

    path = _rewrite(_path("vae_nb"), tmp_path / "broken.skssl", drop_library_size)
    with pytest.raises(ValueError, match=r"skssl 0\.1\.0.*library_size_.*Refit"):
        load_model(path)


def test_old_file_with_an_unknown_tensor_asks_for_a_refit(tmp_path):
    def add_tensor(meta, tensors):
        meta["estimator"]["module"]["tensors"]["projection.weight"] = "extra"
        tensors["extra"] = torch.zeros(2)

    path = _rewrite(_path("vae_gaussian"), tmp_path / "broken.skssl", add_tensor)
    with pytest.raises(ValueError, match=r"skssl 0\.1\.0.*'projection\.weight'.*Refit"):
        load_model(path)


def test_new_file_missing_a_tensor_is_not_taken_for_an_old_one(tmp_path):
    def drop_view_counts(meta, tensors):
        del meta["estimator"]["module"]["tensors"]["view_counts"]

    new = save_model(load_model(_path("vae_nb")), tmp_path / "new.skssl")
    path = _rewrite(new, tmp_path / "broken.skssl", drop_view_counts)
    with pytest.raises(ValueError, match="do not match the network") as info:
        load_model(path)
    assert "0.1.0" not in str(info.value)


def test_old_regressor_target_scaling_loads_as_documented_attributes():
    """0.1.0 kept the target's mean and scale in private attributes; they load as ``y_mean_`` / ``y_scale_``."""
    model = load_model(_path("reg_finetune_vae"))
    assert not hasattr(model, "_y_mean") and not hasattr(model, "_y_scale")
    assert np.isfinite(model.y_mean_) and model.y_scale_ > 0


def test_old_ensemble_becomes_the_ensemble_estimator(expected):
    """A format-1 ensemble (the internal object as ensemble_) loads with a SemiSupervisedEnsembleClassifier there."""
    model = load_model(_path("clf_ensemble_vae"))
    assert type(model.ensemble_) is SemiSupervisedEnsembleClassifier
    assert type(model.ensemble_.ensemble_) is WeightedMembers
    assert model.embedder_ is model.ensemble_.embedder_ and model.members_ is model.ensemble_.members_


# ---------------------------------------------------------------------------------------------------------------
# Format 2 (skssl 0.2.1): SSLClassifier / SSLRegressor(strategy="ensemble") held the internal SemiSupervisedEnsemble
# ---------------------------------------------------------------------------------------------------------------
ENSEMBLES_2 = [
    "clf_ensemble",
    "clf_ensemble_weighted",
    "clf_ensemble_prefit",
    "clf_ensemble_pretrained",
    "reg_ensemble",
]


@pytest.fixture(scope="module")
def expected_2():
    return _expected_outputs(DATA_2)


@pytest.mark.parametrize("name", ENSEMBLES_2)
def test_format_2_ensemble_loads_upgraded_and_predicts_exactly_as_before(name, expected_2, tmp_path):
    info = read_model_info(_path(name, DATA_2))
    assert info["format_version"] == 2 and info["versions"]["skssl"] == "0.2.1"
    assert info["metadata"] == {"fixture": name}
    with zipfile.ZipFile(_path(name, DATA_2)) as archive:
        assert json.loads(archive.read("meta.json"))["estimator"]["attributes"]["ensemble_"]["class"] == (
            "SemiSupervisedEnsemble"
        )
    model = load_model(_path(name, DATA_2))
    X = pd.DataFrame(expected_2["X"], columns=model.feature_names_in_)  # fitted with gene names
    regression = name.startswith("reg")
    assert type(model) is (SSLRegressor if regression else SSLClassifier)
    ensemble = model.ensemble_
    assert type(ensemble) is (SemiSupervisedEnsembleRegressor if regression else SemiSupervisedEnsembleClassifier)
    assert type(ensemble.ensemble_) is WeightedMembers
    assert all(getattr(model, key) is getattr(ensemble, key) for key in ("embedder_", "members_", "weights_"))
    assert ensemble.held_out_loss_ is ensemble.ensemble_.held_out_loss_
    assert ensemble.get_params()["random_state"] == model.random_state == 0
    np.testing.assert_array_equal([model.weights_[m] for m in model.members_], expected_2[f"{name}.weights"])
    predicted = model.predict(X)
    np.testing.assert_array_equal(
        predicted.astype(str) if predicted.dtype == object else predicted, expected_2[f"{name}.predict"]
    )
    assert predicted.dtype == expected_2[f"{name}.predict"].dtype or predicted.dtype == object
    if not regression:
        np.testing.assert_array_equal(model.predict_proba(X), expected_2[f"{name}.predict_proba"])
        np.testing.assert_array_equal(ensemble.predict_proba(X), expected_2[f"{name}.predict_proba"])
    # Saved again, in format 3, it loads and predicts the same; its ensemble alone too.
    again = load_model(save_model(model, tmp_path / "again.skssl"))
    assert read_model_info(tmp_path / "again.skssl")["format_version"] == FORMAT_VERSION == 3
    np.testing.assert_array_equal(again.predict(X), predicted)
    alone = load_model(save_model(model.ensemble_, tmp_path / "alone.skssl"))
    np.testing.assert_array_equal(alone.predict(X), predicted)


def test_format_2_prefit_parameter_comes_back_fitted_and_shared(expected_2):
    model = load_model(_path("clf_ensemble_prefit", DATA_2))
    assert model.prefit and model.ensemble_.embedder is model.embedder
    X = pd.DataFrame(expected_2["X"], columns=model.feature_names_in_)
    np.testing.assert_array_equal(model.embedder.transform(X), model.embedder_.transform(X))


def test_only_formats_1_and_2_name_the_old_ensemble_object(tmp_path):
    """The old name of the internal object is renamed in files of formats 1 and 2 only: a format-3 file naming it
    is refused before anything is built."""

    def declare_format_3(meta, tensors):
        meta["format_version"] = 3

    path = _rewrite(_path("clf_ensemble", DATA_2), tmp_path / "relabelled.skssl", declare_format_3)
    with pytest.raises(ValueError, match="class 'SemiSupervisedEnsemble' is not allowed"):
        load_model(path)
