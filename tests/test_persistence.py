"""skssl.save_model / load_model: bitwise round trips, and a loader that refuses anything but the data it expects."""

import io
import json
import pickle
import re
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import make_pipeline

import skssl
from skssl import (
    ContrastiveEmbedder,
    GeneAligner,
    MaskedAutoencoder,
    SemiSupervisedEnsembleClassifier,
    SemiSupervisedEnsembleRegressor,
    SSLClassifier,
    SSLRegressor,
    VAEEmbedder,
    load_model,
    read_model_info,
    save_model,
)
from skssl.datasets import make_expression
from skssl.persistence import FORMAT_VERSION

TINY = dict(n_components=4, hidden_dims=(16,), max_epochs=2, random_state=0, device="cpu")
HEAD = dict(max_epochs=2, random_state=0, device="cpu")


@pytest.fixture(scope="module")
def data():
    X, y = make_expression(n_samples=60, n_genes=20, random_state=0)
    genes = [f"G{i}" for i in range(X.shape[1])]
    # Two labels per class: the ensemble then averages its members uniformly, with no leave-one-out refits (fast).
    y_semi = np.full_like(y, -1)
    for label in np.unique(y):
        y_semi[np.flatnonzero(y == label)[:2]] = label
    target = X[:, 0] * 3.0 + 1.0
    target[8:] = np.nan  # 8 targets: uniform weights again
    return pd.DataFrame(X, columns=genes), y_semi, target


@pytest.fixture(scope="module")
def embedder(data):
    return MaskedAutoencoder(**TINY).fit(data[0])


def _round_trip(estimator, tmp_path, name="model.skssl"):
    path = tmp_path / name
    assert save_model(estimator, path) == str(path)
    return load_model(path)


def _assert_same(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")  # bitwise on CPU: no tolerance


# ---------------------------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: ContrastiveEmbedder(**TINY),
        lambda: ContrastiveEmbedder(objective="byol", **TINY),
        lambda: MaskedAutoencoder(**TINY),
        lambda: VAEEmbedder(**TINY),
    ],
    ids=["scarf", "byol", "masked", "vae"],
)
def test_embedder_round_trip_is_bitwise(make, data, tmp_path):
    X = data[0]
    fitted = make().fit(X)
    rng_state = torch.get_rng_state()
    loaded = _round_trip(fitted, tmp_path)
    assert torch.equal(torch.get_rng_state(), rng_state)  # rebuilding the network leaves the caller's RNG alone
    assert type(loaded) is type(fitted)
    assert loaded.get_params() == fitted.get_params()
    _assert_same(loaded.transform(X), fitted.transform(X))
    np.testing.assert_array_equal(loaded.feature_names_in_, fitted.feature_names_in_)
    assert loaded.history_ == fitted.history_
    assert (loaded.n_iter_, loaded.best_epoch_, loaded.hidden_dims_) == (
        fitted.n_iter_,
        fitted.best_epoch_,
        fitted.hidden_dims_,
    )
    for key in ("embedding_mean_", "embedding_scale_"):
        _assert_same(getattr(loaded, key), getattr(fitted, key))
    assert loaded.device_ == torch.device("cpu")
    assert not loaded.module_.training
    fitted_state, loaded_state = fitted.module_.state_dict(), loaded.module_.state_dict()
    assert list(fitted_state) == list(loaded_state)
    assert all(torch.equal(fitted_state[k], loaded_state[k]) for k in fitted_state)


def test_partial_fit_model_round_trip(data, tmp_path):
    X = data[0]
    fitted = ContrastiveEmbedder(**TINY).partial_fit(X[:30]).partial_fit(X[30:])
    loaded = _round_trip(fitted, tmp_path)
    _assert_same(loaded.transform(X), fitted.transform(X))
    # Training continues from the loaded weights (with a fresh optimiser, as after fit).
    assert loaded.partial_fit(X).n_iter_ == 3


def test_file_holds_the_float32_weights_and_no_optimiser_state(tmp_path):
    # The file's size is the network's: 4 bytes per parameter (float32), whatever optimiser state the estimator
    # holds (partial_fit keeps AdamW's two moments, twice the weights, for its next call): docs/persistence.md.
    X, _ = make_expression(n_samples=40, n_genes=2000, random_state=0)
    model = MaskedAutoencoder(n_components=8, hidden_dims=(64,), random_state=0, device="cpu").partial_fit(X)
    assert model._optimizer.state  # Adam's moments, in memory
    n_parameters = sum(p.numel() for p in model.module_.parameters())
    weights = 4 * n_parameters + 4 * 2 * X.shape[1]  # and the standardisation's mean and std buffers
    path = tmp_path / "model.skssl"
    save_model(model, path)
    with zipfile.ZipFile(path) as archive:
        tensors = archive.getinfo("tensors.pt").file_size
        state = torch.load(io.BytesIO(archive.read("tensors.pt")), weights_only=True)
    assert weights <= tensors < weights * 1.05 + 64 * 1024, (tensors, weights)
    assert all(t.dtype in (torch.float32, torch.int64, torch.bool) for t in state.values())
    assert {t.dtype for t in state.values() if t.numel() > 1000} == {torch.float32}
    assert path.stat().st_size < weights * 1.05 + 256 * 1024  # meta.json adds the gene names and settings


def test_vae_nb_and_generative_methods_round_trip(tmp_path):
    counts = np.random.default_rng(0).poisson(5.0, size=(60, 20)).astype(np.float32)
    fitted = VAEEmbedder(likelihood="nb", **TINY).fit(counts)
    loaded = _round_trip(fitted, tmp_path)
    # The library-size statistics travel with the model: decoding and sampling use them.
    for key in ("library_size_", "log_library_mean_", "log_library_std_"):
        assert getattr(loaded, key) == getattr(fitted, key)
    Z = fitted.transform(counts)
    _assert_same(loaded.transform(counts), Z)
    _assert_same(loaded.inverse_transform(Z), fitted.inverse_transform(Z))
    _assert_same(loaded.sample(5, random_state=1), fitted.sample(5, random_state=1))
    assert loaded.score(counts) == fitted.score(counts)


def test_multiview_vae_round_trip(tmp_path):
    X, _ = make_expression(n_samples=60, n_genes=20, random_state=1)
    X[:10, 12:] = np.nan  # 10 samples lack the second view
    views = {"rna": slice(0, 12), "protein": {"columns": list(range(12, 20)), "likelihood": "gaussian"}}
    fitted = VAEEmbedder(views=views, **TINY).fit(X)
    loaded = _round_trip(fitted, tmp_path)
    assert loaded.views == views
    assert loaded.view_counts_ == fitted.view_counts_
    assert all(np.array_equal(loaded.views_[k], fitted.views_[k]) for k in fitted.views_)
    _assert_same(loaded.transform(X), fitted.transform(X))
    assert loaded.score(X) == fitted.score(X)


def test_finetuned_classifier_round_trip(data, tmp_path):
    X, y, _ = data
    fitted = SSLClassifier(MaskedAutoencoder(**TINY), strategy="finetune", **HEAD).fit(X, y)
    loaded = _round_trip(fitted, tmp_path)
    _assert_same(loaded.predict_proba(X), fitted.predict_proba(X))
    _assert_same(loaded.predict(X), fitted.predict(X))
    X_array = X.to_numpy()  # fit pre-trains embedder_ on the validated array, without gene names
    _assert_same(loaded.embedder_.transform(X_array), fitted.embedder_.transform(X_array))
    # The nested embedder parameter is stored as parameters only (an unfitted template, as clone() sees it).
    assert type(loaded.embedder) is MaskedAutoencoder and not hasattr(loaded.embedder, "module_")


def test_finetuned_from_scratch_and_prefit_regressor_round_trip(data, embedder, tmp_path):
    X, y, target = data
    labels = np.array(["basal", "her2", "luminal"])[y.clip(0)]  # string classes; every row labeled
    baseline = SSLClassifier(VAEEmbedder(**TINY), strategy="finetune", pretrain=False, **HEAD).fit(X, labels)
    loaded = _round_trip(baseline, tmp_path, "baseline.skssl")
    assert loaded.embedder_ is None
    _assert_same(loaded.classes_, baseline.classes_)
    _assert_same(loaded.predict_proba(X), baseline.predict_proba(X))
    _assert_same(loaded.predict(X), baseline.predict(X))

    regressor = SSLRegressor(FrozenEstimator(embedder), strategy="finetune", finetune="head", **HEAD).fit(X, target)
    loaded = _round_trip(regressor, tmp_path, "regressor.skssl")
    _assert_same(loaded.predict(X), regressor.predict(X))
    # A frozen (prefit) embedder parameter comes back fitted, so the loaded model can be refitted like the saved one.
    assert isinstance(loaded.embedder, FrozenEstimator)
    _assert_same(loaded.embedder.transform(X), embedder.transform(X))
    _assert_same(loaded.fit(X, target).predict(X), regressor.predict(X))


# SSLClassifier hands the prefit embedder (fitted with gene names) the validated array: a warning of supervised.py.
@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
@pytest.mark.parametrize("with_embedding", [False, True], ids=["genes-pcs-graph", "with-embedding"])
def test_ensemble_classifier_round_trip(with_embedding, data, embedder, tmp_path):
    X, y, _ = data
    # The four members, so that the graph's round trip is checked too (a prefit embedder alone is the default).
    every = ("genes", "pcs", "graph", "embedding")
    params = dict(embedder=embedder, prefit=True, members=every) if with_embedding else {}
    fitted = SSLClassifier(random_state=0, **params).fit(X, y)
    assert ("embedding" in fitted.members_) is with_embedding
    loaded = _round_trip(fitted, tmp_path)
    assert loaded.members_ == fitted.members_ and loaded.weights_ == fitted.weights_
    _assert_same(loaded.predict_proba(X), fitted.predict_proba(X))
    _assert_same(loaded.predict(X), fitted.predict(X))
    if with_embedding:  # the prefit embedder parameter comes back fitted, as embedder_ is
        _assert_same(loaded.embedder.transform(X), embedder.transform(X))
    graph = loaded.ensemble_.ensemble_.members_["graph"]
    assert (graph.affinity_ != fitted.ensemble_.ensemble_.members_["graph"].affinity_).nnz == 0
    # As after fit: the predictor's embedder_, members_ and weights_ are its ensemble_'s (written once).
    assert all(getattr(loaded, key) is getattr(loaded.ensemble_, key) for key in ("embedder_", "members_", "weights_"))


def test_ensemble_regressor_round_trip_with_held_out_weights(data, tmp_path):
    X, _, _ = data
    target = X.to_numpy()[:, 0] * 3.0 + 1.0
    target[12:] = np.nan  # 12 targets: weights from leave-one-out predictions
    fitted = SSLRegressor(random_state=0).fit(X, target)
    assert fitted.ensemble_.held_out_loss_ is not None
    loaded = _round_trip(fitted, tmp_path)
    assert loaded.ensemble_.held_out_loss_ == fitted.ensemble_.held_out_loss_
    _assert_same(loaded.predict(X), fitted.predict(X))


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_semi_supervised_ensembles_round_trip_on_their_own(data, embedder, tmp_path):
    X, y, target = data
    every = ("genes", "pcs", "graph", "embedding")
    clf = SemiSupervisedEnsembleClassifier(FrozenEstimator(embedder), members=every, random_state=0).fit(X, y)
    loaded = _round_trip(clf, tmp_path, "clf.skssl")
    assert type(loaded) is SemiSupervisedEnsembleClassifier and loaded.get_params(deep=False).keys() == {
        "embedder",
        "members",
        "prefit",
        "class_weight",
        "random_state",
        "verbose",
    }
    assert loaded.members_ == every and loaded.weights_ == clf.weights_
    _assert_same(loaded.predict_proba(X), clf.predict_proba(X))
    _assert_same(loaded.predict(X), clf.predict(X))
    _assert_same(loaded.embedder_.transform(X), clf.embedder_.transform(X))
    assert isinstance(loaded.embedder, FrozenEstimator)  # the frozen parameter comes back fitted
    _assert_same(loaded.fit(X, y).predict_proba(X), clf.predict_proba(X))

    reg = SemiSupervisedEnsembleRegressor(random_state=0).fit(X, target)
    loaded = _round_trip(reg, tmp_path, "reg.skssl")
    assert (loaded.y_mean_, loaded.y_scale_, loaded.held_out_loss_) == (reg.y_mean_, reg.y_scale_, reg.held_out_loss_)
    _assert_same(loaded.predict(X), reg.predict(X))
    assert read_model_info(tmp_path / "reg.skssl")["estimator"] == "SemiSupervisedEnsembleRegressor"


def test_nested_ensemble_must_agree_with_its_predictor(data, tmp_path):
    X, y, _ = data
    path = tmp_path / "clf.skssl"
    save_model(SSLClassifier(random_state=0).fit(X, y), path)
    meta = _meta(path)
    attributes = meta["estimator"]["attributes"]
    assert {"embedder_", "members_", "weights_"}.isdisjoint(attributes)  # written within ensemble_ only
    assert attributes["ensemble_"]["class"] == "SemiSupervisedEnsembleClassifier"
    attributes["ensemble_"]["attributes"]["feature_names_in_"]["items"][0] = "another gene"
    _rewrite(path, meta=meta)
    with pytest.raises(ValueError, match="ensemble_.feature_names_in_ disagrees with feature_names_in_"):
        load_model(path)
    attributes["ensemble_"] = attributes["ensemble_"]["attributes"]["ensemble_"]  # the format-2 layout, in format 3
    _rewrite(path, meta=meta)
    with pytest.raises(ValueError, match="a fitted SemiSupervisedEnsembleClassifier was expected"):
        load_model(path)


def test_loaded_embedder_fine_tunes_like_the_original(data, embedder, tmp_path):
    X, y, _ = data
    loaded = _round_trip(embedder, tmp_path)
    a = SSLClassifier(embedder=loaded, strategy="finetune", prefit=True, **HEAD).fit(X, y)
    b = SSLClassifier(embedder=embedder, strategy="finetune", prefit=True, **HEAD).fit(X, y)
    _assert_same(a.predict_proba(X), b.predict_proba(X))


def test_gene_aligner_maps_a_new_panel_onto_the_stored_genes(data, embedder, tmp_path):
    X, _, _ = data
    save_model(embedder, tmp_path / "model.skssl")
    genes = read_model_info(tmp_path / "model.skssl")["feature_names_in"]
    assert genes == list(X.columns)
    loaded = load_model(tmp_path / "model.skssl")
    # Another cohort: genes in another order, one extra gene, one gene missing.
    other = X[list(reversed(X.columns))].drop(columns="G3").assign(EXTRA=1.0)
    # FrozenEstimator: fitting the pipeline fits the aligner only, never the pre-trained embedder.
    aligner = GeneAligner(genes=loaded.feature_names_in_).set_output(transform="pandas")
    aligned = make_pipeline(aligner, FrozenEstimator(loaded)).fit(other)
    expected = embedder.transform(X.assign(G3=0.0))
    _assert_same(aligned.transform(other), expected)


def test_metadata_and_versions(embedder, tmp_path):
    path = tmp_path / "model.skssl"
    save_model(embedder, path, metadata={"training_data": "ARCHS4 v2.2", "gene_ids": "Ensembl"})
    info = read_model_info(path)
    assert info["estimator"] == "MaskedAutoencoder" and info["format_version"] == FORMAT_VERSION
    assert info["metadata"] == {"training_data": "ARCHS4 v2.2", "gene_ids": "Ensembl"}
    assert info["versions"]["skssl"] == skssl.__version__ and info["versions"]["torch"] == torch.__version__
    assert set(info["versions"]) >= {"scikit-learn", "numpy"} and info["n_features_in"] == 20
    with pytest.raises(TypeError, match="JSON"):
        save_model(embedder, path, metadata={"x": object()})


def test_save_refuses_what_it_cannot_represent(embedder, data, tmp_path):
    with pytest.raises(TypeError, match="exactly these classes"):
        save_model(make_pipeline(embedder), tmp_path / "p.skssl")

    class Variant(MaskedAutoencoder):
        pass

    with pytest.raises(TypeError, match="exactly these classes"):
        save_model(Variant(**TINY).fit(data[0]), tmp_path / "v.skssl")
    with pytest.raises(NotFittedError):
        save_model(MaskedAutoencoder(), tmp_path / "u.skssl")
    assert not list(tmp_path.iterdir())  # nothing written, not even a temporary file


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_loads_in_a_fresh_process(embedder, data, tmp_path):
    X, y, _ = data
    clf = SSLClassifier(embedder, prefit=True, random_state=0).fit(X, y)
    save_model(embedder, tmp_path / "embedder.skssl")
    save_model(clf, tmp_path / "clf.skssl")
    np.save(tmp_path / "X.npy", X.to_numpy(dtype=np.float32))
    # The fresh process may import only the five runtime dependencies: the optional ones are made unimportable.
    script = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in {'pandas', 'matplotlib', 'h5py', 'anndata', 'pytest'}:\n"
        "            raise ImportError('blocked optional dependency: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import warnings, numpy as np, skssl\n"
        "warnings.simplefilter('ignore')  # an array without the fitted gene names\n"
        "d = sys.argv[1]\n"
        "X = np.load(d + '/X.npy')\n"
        "np.save(d + '/Z.npy', skssl.load_model(d + '/embedder.skssl').transform(X))\n"
        "np.save(d + '/P.npy', skssl.load_model(d + '/clf.skssl').predict_proba(X))\n"
        "assert not {'pandas', 'matplotlib', 'h5py'} & set(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, timeout=120)
    X_np = np.load(tmp_path / "X.npy")
    _assert_same(np.load(tmp_path / "Z.npy"), embedder.transform(X_np))
    _assert_same(np.load(tmp_path / "P.npy"), clf.predict_proba(X_np))


# ---------------------------------------------------------------------------------------------------------------
# Refusals: every problem is a clear ValueError, and nothing in the file runs
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def saved(embedder, tmp_path):
    path = tmp_path / "model.skssl"
    save_model(embedder, path)
    return path


def _entries(path):
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _rewrite(path, meta=None, tensors=None, raw_tensors=None):
    entries = _entries(path)
    if meta is not None:
        entries["meta.json"] = json.dumps(meta).encode()
    if tensors is not None:
        buffer = io.BytesIO()
        torch.save(tensors, buffer)
        entries["tensors.pt"] = buffer.getvalue()
    if raw_tensors is not None:
        entries["tensors.pt"] = raw_tensors
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)


def _meta(path):
    return json.loads(_entries(path)["meta.json"])


def _tensors(path):
    return torch.load(io.BytesIO(_entries(path)["tensors.pt"]), weights_only=True)


@pytest.mark.parametrize("name", ["os.system", "posix.system", "LogisticRegression", "Pipeline", "builtins.eval"])
def test_refuses_classes_outside_the_allow_list(saved, name):
    meta = _meta(saved)
    meta["estimator"]["class"] = name
    _rewrite(saved, meta=meta)
    with pytest.raises(ValueError, match=rf"class '{name}' is not allowed"):
        load_model(saved)


def test_refuses_a_disallowed_class_nested_in_the_parameters(data, tmp_path):
    X, y, _ = data
    path = tmp_path / "clf.skssl"
    save_model(SSLClassifier(MaskedAutoencoder(**TINY), strategy="finetune", **HEAD).fit(X, y), path)
    meta = _meta(path)
    meta["estimator"]["params"]["embedder"]["class"] = "subprocess.Popen"
    _rewrite(path, meta=meta)
    with pytest.raises(ValueError, match="'subprocess.Popen' is not allowed"):
        load_model(path)


def test_refuses_invalid_parameters_and_attributes(saved):
    meta = _meta(saved)
    meta["estimator"]["params"]["n_components"] = -3
    _rewrite(saved, meta=meta)
    with pytest.raises(ValueError, match="invalid parameters for MaskedAutoencoder.*n_components"):
        load_model(saved)

    meta["estimator"]["params"]["n_components"] = 4
    meta["estimator"]["params"]["no_such_parameter"] = 1
    _rewrite(saved, meta=meta)
    with pytest.raises(ValueError, match="not parameters of MaskedAutoencoder"):
        load_model(saved)

    del meta["estimator"]["params"]["no_such_parameter"]
    meta["estimator"]["attributes"]["__class__"] = "x"
    _rewrite(saved, meta=meta)
    with pytest.raises(ValueError, match="'__class__' is not a fitted attribute"):
        load_model(saved)


def test_refuses_a_tampered_tensor_shape(saved):
    tensors = _tensors(saved)
    weight = next(k for k in tensors if k.endswith("encoder.0.weight"))
    tensors[weight] = torch.zeros(tensors[weight].shape[0] + 1, tensors[weight].shape[1])
    _rewrite(saved, tensors=tensors)
    with pytest.raises(ValueError, match="weights do not match the network.*size mismatch"):
        load_model(saved)


def test_refuses_a_tampered_array_or_a_missing_tensor(saved):
    tensors = _tensors(saved)
    mean = next(k for k in tensors if k.endswith("embedding_mean_"))
    _rewrite(saved, tensors={**tensors, mean: torch.zeros(7)})
    with pytest.raises(ValueError, match="embedding_mean_.*shape"):
        load_model(saved)
    del tensors[mean]
    _rewrite(saved, tensors=tensors)
    with pytest.raises(ValueError, match="missing from the file"):
        load_model(saved)


def test_refuses_a_network_whose_parameters_disagree_with_its_weights(saved):
    meta = _meta(saved)
    meta["estimator"]["params"]["n_components"] = 5  # the stored encoder outputs 4
    meta["estimator"]["attributes"]["n_components_"] = 5
    _rewrite(saved, meta=meta)
    with pytest.raises(ValueError, match="do not match"):
        load_model(saved)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_refuses_a_truncated_file(saved, fraction):
    content = saved.read_bytes()
    saved.write_bytes(content[: int(len(content) * fraction)])
    with pytest.raises(ValueError, match="not a complete skssl model file|corrupt"):
        load_model(saved)


def test_refuses_a_corrupted_byte(saved):
    content = bytearray(saved.read_bytes())
    offset = content.find(b"encoder") + 2000  # inside the stored tensors: the zip's CRC check catches it
    content[offset] ^= 0xFF
    saved.write_bytes(bytes(content))
    with pytest.raises(ValueError):
        load_model(saved)


def test_refuses_a_future_format_version(saved):
    meta = _meta(saved)
    meta["format_version"] = FORMAT_VERSION + 1
    meta["versions"]["skssl"] = "99.0"
    _rewrite(saved, meta=meta)
    with pytest.raises(ValueError, match=rf"format version {FORMAT_VERSION + 1}.*skssl 99.0.*Upgrade skssl"):
        load_model(saved)
    with pytest.raises(ValueError, match="Upgrade skssl"):
        read_model_info(saved)


def test_refuses_files_that_are_not_models(tmp_path):
    path = tmp_path / "notes.skssl"
    path.write_text("hello")
    with pytest.raises(ValueError, match="not a complete skssl model file"):
        load_model(path)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("other.txt", "x")
    with pytest.raises(ValueError, match="without meta.json"):
        load_model(path)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.skssl")


class _Payload:
    """Unpickling this would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("container", ["raw-pickle", "torch-file"])
def test_a_pickle_payload_is_refused_without_running(saved, tmp_path, container):
    marker = tmp_path / "marker"
    payload = {"x": _Payload(marker)}
    if container == "raw-pickle":
        raw = pickle.dumps(payload, protocol=2)
    else:  # a genuine torch.save file whose pickle calls open() when loaded with weights_only=False
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        raw = buffer.getvalue()
    assert not marker.exists()
    _rewrite(saved, raw_tensors=raw)
    with pytest.raises(ValueError, match="refused"):
        load_model(saved)
    assert not marker.exists()


# ----------------------------------------------------------------------------- each class declares its fitted state
_DECLARING = (
    MaskedAutoencoder,
    ContrastiveEmbedder,
    VAEEmbedder,
    SSLClassifier,
    SSLRegressor,
    SemiSupervisedEnsembleClassifier,
    SemiSupervisedEnsembleRegressor,
)


def _documented_attributes(cls):
    """The names of the numpydoc Attributes section of ``cls``'s docstring."""
    doc = cls.__doc__
    section = doc[doc.index("Attributes\n    ----------") :]
    section = section[: min(i for i in (section.find("\n    See Also"), section.find("\n    Examples")) if i > 0)]
    return {name.strip() for line in re.findall(r"(?m)^    (\w[\w, ]*) :", section) for name in line.split(",")}


@pytest.mark.parametrize("cls", _DECLARING, ids=lambda c: c.__name__)
def test_declared_fitted_attributes_are_the_documented_ones(cls):
    # One list: what save_model writes and load_model accepts is what the docstring tells the user.
    assert len(set(cls._fitted_attributes)) == len(cls._fitted_attributes)
    assert set(cls._fitted_attributes) == _documented_attributes(cls)


def _fitted_names(estimator):
    params = estimator.get_params(deep=False)
    return {k for k in vars(estimator) if re.fullmatch(r"[a-z][a-z0-9_]*_", k) and k not in params}


def test_every_fitted_configuration_stays_within_the_declaration(tmp_path):
    X, y = make_expression(n_samples=60, n_genes=30, random_state=0)[:2]
    X = pd.DataFrame(np.asarray(X, dtype=np.float32), columns=[f"g{i}" for i in range(30)])
    counts = X.copy()
    counts[:] = np.random.default_rng(0).poisson(5.0, size=X.shape).astype(np.float32)
    y_semi = np.asarray(y).copy()
    y_semi[::3] = -1
    y_reg = X["g0"].to_numpy(dtype=float)
    y_reg[::3] = np.nan
    batch = np.arange(60) % 2
    small = dict(n_components=3, hidden_dims=(8,), max_epochs=2, random_state=0)
    fitted = [
        MaskedAutoencoder(**small).fit(X, batch=batch),
        MaskedAutoencoder(**small).partial_fit(X),
        ContrastiveEmbedder(objective="byol", **small).fit(X),
        VAEEmbedder(likelihood="nb", **small).fit(counts),
        SSLClassifier(MaskedAutoencoder(**small), random_state=0).fit(X, y_semi),
        SSLClassifier(MaskedAutoencoder(**small), strategy="finetune", max_epochs=2, random_state=0).fit(X, y_semi),
        SSLRegressor(random_state=0).fit(X, y_reg),
        SSLRegressor(MaskedAutoencoder(**small), strategy="finetune", max_epochs=2, random_state=0).fit(X, y_reg),
        SemiSupervisedEnsembleClassifier(MaskedAutoencoder(**small), random_state=0).fit(X, y_semi),
        SemiSupervisedEnsembleRegressor(random_state=0).fit(X, y_reg),
    ]
    for estimator in fitted:
        names = _fitted_names(estimator)
        assert "feature_names_in_" in names
        assert names <= set(type(estimator)._fitted_attributes), names - set(type(estimator)._fitted_attributes)
        # What a round trip through a file keeps is exactly that state.
        path = tmp_path / f"{type(estimator).__name__}.skssl"
        save_model(estimator, path)
        assert _fitted_names(load_model(path)) == names


def test_an_undeclared_fitted_attribute_is_refused_at_save_not_dropped(tmp_path):
    model = MaskedAutoencoder(n_components=3, hidden_dims=(8,), max_epochs=1, random_state=0)
    model.fit(np.random.default_rng(0).normal(size=(20, 6)).astype(np.float32))
    model.extra_statistic_ = np.ones(3)
    with pytest.raises(ValueError, match=r"does not declare: \['extra_statistic_'\]"):
        save_model(model, tmp_path / "model.skssl")


def test_an_ensemble_estimator_missing_a_fitted_attribute_is_refused(data, tmp_path):
    X, y, _ = data
    for estimator, where in [
        (SemiSupervisedEnsembleClassifier(random_state=0).fit(X, y), lambda meta: meta["estimator"]),
        (SSLClassifier(random_state=0).fit(X, y), lambda meta: meta["estimator"]["attributes"]["ensemble_"]),
    ]:
        path = tmp_path / "model.skssl"
        save_model(estimator, path)
        meta = _meta(path)
        del where(meta)["attributes"]["members_"]
        _rewrite(path, meta=meta)
        with pytest.raises(ValueError, match=r"the fitted attributes \['members_'\] are missing"):
            load_model(path)
