"""A safe, versioned file format for fitted skssl estimators: nothing in the file is ever executed on load.

A pickle (``joblib.dump``) can hold any object, so loading one runs whatever code its author chose, and it is tied
to the versions of the classes that wrote it. The format here holds data only, so a pre-trained embedder can be
downloaded from a colleague, a paper's supplement or a model registry and loaded safely:

- one zip archive, holding ``meta.json`` (format version, the versions of skssl / torch / scikit-learn / numpy that
  wrote it, the estimator's class name, constructor parameters and fitted attributes as JSON) and ``tensors.pt``
  (a flat ``{name: tensor}`` dict written by :func:`torch.save`: network weights and numeric arrays);
- loading reads JSON with :mod:`json` and the tensors with ``torch.load(..., weights_only=True)``, whose restricted
  unpickler refuses anything but tensors and plain containers; class names are looked up in an explicit allow-list
  (never imported by name), parameters are validated like ``fit`` validates them, and the networks are rebuilt by
  the estimators' own construction code before ``load_state_dict(strict=True)`` checks every tensor's name and
  shape.

Public functions: :func:`save_model`, :func:`load_model` and :func:`read_model_info`.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import platform
import re
import tempfile
import zipfile
import zlib

import numpy as np
import scipy.sparse as sp
import sklearn
import torch
from sklearn.decomposition import PCA
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import NearestNeighbors
from sklearn.utils.validation import check_is_fitted

from . import _ensemble
from ._compat import InvalidParameterError
from ._base import BaseSSLEstimator
from ._nn import Standardize, make_mlp
from .contrastive import ContrastiveEmbedder
from .masked import MaskedAutoencoder
from .supervised import SSLClassifier, SSLRegressor, _BaseFineTune, _embedding_path, _FineTuneModule
from .vae import VAEEmbedder

__all__ = ["FORMAT_VERSION", "load_model", "read_model_info", "save_model"]

#: Version of the file layout written by :func:`save_model`; :func:`load_model` reads this version and older ones.
#: Bump it when a change of the estimators makes older files load wrongly (a renamed parameter, a new fitted
#: attribute that ``transform`` needs, a module whose state dict changes), and teach the loader to upgrade the
#: older versions (e.g. fill in the new attribute), so that published models keep loading.
FORMAT_VERSION = 1
FORMAT_NAME = "skssl-model"
_META = "meta.json"
_TENSORS = "tensors.pt"

# The only classes a file may name. Exact classes, not subclasses: a subclass may change behaviour (e.g. swap the
# corruption) that the file cannot record, so it would load as something else.
_ESTIMATORS = {
    cls.__name__: cls for cls in (ContrastiveEmbedder, MaskedAutoencoder, VAEEmbedder, SSLClassifier, SSLRegressor)
}
# Estimators that may appear as a (parameters-only) wrapper of a nested ``embedder`` parameter.
_WRAPPERS = {"FrozenEstimator": FrozenEstimator}
# scikit-learn objects inside the ensemble of SSLClassifier / SSLRegressor(strategy="ensemble"), and the private
# attributes of each that are kept (public fitted attributes, ending in "_", are always kept).
_SKLEARN = {"PCA": PCA, "LogisticRegression": LogisticRegression, "Ridge": Ridge}
_SKLEARN_PRIVATE = {"PCA": ("_fit_svd_solver",)}
# The ensemble's own objects: constructor arguments and fitted attributes, exhaustively (saving refuses an object
# with an attribute not listed here, rather than silently dropping something its predictions might need).
_OBJECTS = {
    "SemiSupervisedEnsemble": (
        _ensemble.SemiSupervisedEnsemble,
        ("task", "members", "n_classes", "seed", "class_weight"),
        ("genes_", "members_", "weights_", "held_out_loss_"),
    ),
    "GeneViews": (_ensemble.GeneViews, (), ("mean_", "scale_", "pca_", "pc_scale_")),
    "LinearMember": (
        _ensemble.LinearMember,
        ("task", "n_classes", "seed", "class_weight"),
        ("mean_", "scale_", "model_", "only_"),
    ),
    # ``neighbors_`` (a NearestNeighbors search structure) is refitted on ``points_`` at load.
    "GraphMember": (
        _ensemble.GraphMember,
        ("task", "n_classes", "seed", "class_weight"),
        ("points_", "affinity_", "scores_"),
    ),
}
# Private attributes of skssl estimators that prediction needs (public fitted attributes end in "_" and are kept).
_PRIVATE_STATE = {"SSLRegressor": ("_y_mean", "_y_scale")}
# Attributes of skssl estimators never written: the network (written as its state dict) and training-only state.
_SKIPPED = {"module_", "_optimizer", "_partial_rng"}
_FITTED_NAME = re.compile(r"^[a-z][a-z0-9_]*_$")
_NUMERIC_KINDS = "biufc"


# ---------------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------------


def save_model(estimator, path, *, metadata=None):
    """Save a fitted skssl estimator to a file that :func:`load_model` reads without executing anything.

    The file is a zip archive holding ``meta.json`` (format version; versions of skssl, torch, scikit-learn,
    numpy and Python; class name, constructor parameters and fitted attributes, including ``feature_names_in_``,
    the embedding statistics, the training history and ``metadata``) and ``tensors.pt`` (network weights and
    numeric arrays as a flat dict of tensors). Weights are written from a CPU copy, whatever the device of the
    estimator. The file is written to a temporary name first and then renamed, so an interrupted save leaves no
    partial file behind.

    Parameters
    ----------
    estimator : ContrastiveEmbedder, MaskedAutoencoder, VAEEmbedder, SSLClassifier or SSLRegressor
        A fitted estimator of exactly one of these classes (not a subclass, a ``Pipeline`` or a search; save the
        fitted step itself). ``SSLClassifier`` / ``SSLRegressor`` with either ``strategy``.
    path : str or path-like
        File to write (conventionally with the suffix ``.skssl``); an existing file is replaced.
    metadata : dict or None, default=None
        Notes stored with the model and returned by :func:`read_model_info`, e.g. the training data, the gene
        identifier namespace and the preprocessing (see ``docs/persistence.md``). Must be JSON-serialisable
        (strings, numbers, booleans, None, lists and dicts with string keys).

    Returns
    -------
    path : str
        The path written.

    Raises
    ------
    TypeError
        If ``estimator`` is not one of the supported classes, or holds a value the format cannot represent.
    sklearn.exceptions.NotFittedError
        If ``estimator`` is not fitted.

    See Also
    --------
    load_model : Read the file back.
    read_model_info : Versions, class, gene names and metadata of a file, without loading the model.

    Examples
    --------
    >>> import os, tempfile
    >>> from skssl import MaskedAutoencoder, make_expression, save_model, load_model
    >>> X, y = make_expression(n_samples=60, n_genes=20, random_state=0)
    >>> embedder = MaskedAutoencoder(n_components=4, hidden_dims=(16,), max_epochs=2, random_state=0,
    ...                              device="cpu").fit(X)
    >>> path = os.path.join(tempfile.mkdtemp(), "embedder.skssl")
    >>> _ = save_model(embedder, path, metadata={"training_data": "make_expression(random_state=0)"})
    >>> loaded = load_model(path)
    >>> bool((loaded.transform(X) == embedder.transform(X)).all())
    True
    """
    _check_savable(estimator)
    check_is_fitted(estimator)
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise TypeError(f"metadata must be a dict or None, got {type(metadata).__name__}.")
        try:
            metadata = json.loads(json.dumps(metadata, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"metadata must be JSON-serialisable (strings, numbers, lists, dicts): {exc}") from exc
    writer = _Writer()
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "versions": _versions(),
        "metadata": metadata,
        "estimator": _encode_estimator(estimator, writer, fitted=True, where=type(estimator).__name__),
    }
    meta_bytes = json.dumps(meta, allow_nan=False, indent=1).encode("utf-8")
    tensor_buffer = io.BytesIO()
    torch.save(writer.tensors, tensor_buffer)

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    handle, tmp = tempfile.mkstemp(prefix=".skssl-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "wb") as file, zipfile.ZipFile(file, "w") as archive:
            archive.writestr(_META, meta_bytes, compress_type=zipfile.ZIP_DEFLATED)
            # Stored, not deflated: float weights barely compress, and deflating a large network is slow.
            archive.writestr(_TENSORS, tensor_buffer.getvalue(), compress_type=zipfile.ZIP_STORED)
        # mkstemp creates the file readable by its owner only; a model file is meant to be shared.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def load_model(path):
    """Load an estimator written by :func:`save_model`, without executing anything from the file.

    Everything read is validated: the format name and version, every class name (against an explicit list of
    skssl estimators and the scikit-learn objects of the ensemble; nothing is imported by name), the parameters
    (by the estimator's own parameter validation), the attribute names, and the network weights (the network is
    rebuilt from the parameters, then ``load_state_dict(strict=True)`` checks every tensor's name and shape). The
    tensors are read with ``torch.load(..., weights_only=True)``, which refuses any pickled object other than
    tensors and plain containers. The model is loaded on the CPU; move it with ``set_params(device=...)`` and a
    refit, or use it as a prefit embedder (``SSLClassifier(embedder=model, prefit=True)``).

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save_model`.

    Returns
    -------
    estimator : ContrastiveEmbedder, MaskedAutoencoder, VAEEmbedder, SSLClassifier or SSLRegressor
        The fitted estimator; its ``transform`` / ``predict`` / ``predict_proba`` on the CPU are bitwise equal to
        those of the saved one on the CPU.

    Raises
    ------
    ValueError
        If the file is not a complete skssl model file (truncated, corrupt, not a zip archive), was written by a
        newer format version, names a class that is not allowed, holds invalid parameters or attributes, or holds
        tensors whose shapes disagree with the network the parameters describe. The message names the problem.
    FileNotFoundError
        If ``path`` does not exist.

    See Also
    --------
    save_model : Write the file.
    read_model_info : Inspect a file without loading the model.

    Examples
    --------
    >>> import os, tempfile
    >>> from skssl import SSLClassifier, VAEEmbedder, make_expression, save_model, load_model
    >>> X, y = make_expression(n_samples=60, n_genes=20, random_state=0)
    >>> vae = VAEEmbedder(n_components=4, hidden_dims=(16,), max_epochs=2, random_state=0, device="cpu").fit(X)
    >>> path = os.path.join(tempfile.mkdtemp(), "vae.skssl")
    >>> _ = save_model(vae, path)
    >>> pretrained = load_model(path)
    >>> clf = SSLClassifier(pretrained, strategy="finetune", prefit=True, max_epochs=2, random_state=0,
    ...                     device="cpu").fit(X, y)
    >>> clf.predict(X[:3]).shape
    (3,)
    """
    meta, tensor_bytes = _read_archive(path)
    _check_format(meta, path)
    spec = meta.get("estimator")
    try:
        # Every class name is checked before a single tensor is read.
        _check_class_names(spec, "estimator")
        if spec.get("class") not in _ESTIMATORS:
            raise ValueError(
                f"{os.fspath(path)!r} holds a {spec.get('class')}, not one of the estimators save_model writes "
                f"({sorted(_ESTIMATORS)}); the file was modified."
            )
        reader = _Reader(_load_tensors(tensor_bytes, path))
        estimator = _decode_estimator(spec, reader, fitted=True, where="estimator")
    except RecursionError as exc:
        raise ValueError(f"{os.fspath(path)!r}: the model description is nested too deeply to be valid.") from exc
    unused = set(reader.tensors) - reader.used
    if unused:
        raise ValueError(
            f"{os.fspath(path)!r} holds tensors that its description does not use ({sorted(unused)[:5]}...): the "
            "file was modified or is corrupt."
        )
    return estimator


def read_model_info(path):
    """Describe a file written by :func:`save_model` without loading the model (no tensor is read).

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save_model`.

    Returns
    -------
    info : dict
        ``"format_version"``; ``"versions"`` (of skssl, torch, scikit-learn, numpy and Python that wrote the
        file); ``"estimator"`` (class name); ``"n_features_in"``; ``"feature_names_in"`` (list of str, or None
        when the model was fitted without gene names); ``"metadata"`` (what was passed to :func:`save_model`).

    Raises
    ------
    ValueError
        As :func:`load_model` for an unreadable file or an unknown format version.

    Examples
    --------
    >>> import os, tempfile
    >>> import pandas as pd
    >>> from skssl import MaskedAutoencoder, make_expression, save_model, read_model_info
    >>> X, y = make_expression(n_samples=60, n_genes=10, random_state=0)
    >>> X = pd.DataFrame(X[:, :5], columns=["TP53", "MYC", "EGFR", "KRAS", "BRCA1"])
    >>> embedder = MaskedAutoencoder(n_components=2, hidden_dims=(8,), max_epochs=1, random_state=0,
    ...                              device="cpu").fit(X)
    >>> path = os.path.join(tempfile.mkdtemp(), "embedder.skssl")
    >>> _ = save_model(embedder, path, metadata={"gene_ids": "HGNC symbols"})
    >>> info = read_model_info(path)
    >>> info["estimator"], info["feature_names_in"][:2], info["metadata"]
    ('MaskedAutoencoder', ['TP53', 'MYC'], {'gene_ids': 'HGNC symbols'})
    """
    meta, _ = _read_archive(path)
    _check_format(meta, path)
    spec = meta.get("estimator")
    _check_class_names(spec, "estimator")
    attributes = spec.get("attributes") or {}
    names = attributes.get("feature_names_in_")
    n_features = attributes.get("n_features_in_")
    if names is not None:
        # Gene names are held in JSON (an object array), so no tensor is needed to decode them.
        names = _decode(names, _Reader({}), "estimator.attributes.feature_names_in_").tolist()
    return {
        "format_version": meta["format_version"],
        "versions": meta.get("versions"),
        "estimator": spec["class"],
        "n_features_in": n_features if isinstance(n_features, int) else None,
        "feature_names_in": names,
        "metadata": meta.get("metadata"),
    }


# ---------------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------------


def _versions():
    from . import __version__

    return {
        "skssl": __version__,
        "torch": torch.__version__,
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _check_savable(estimator):
    if type(estimator).__name__ not in _ESTIMATORS or _ESTIMATORS[type(estimator).__name__] is not type(estimator):
        raise TypeError(
            f"save_model saves estimators of exactly these classes: {sorted(_ESTIMATORS)}; got "
            f"{type(estimator).__module__}.{type(estimator).__qualname__}. Save the fitted skssl step of a Pipeline "
            "or search (e.g. pipeline[-1], search.best_estimator_) on its own, or use joblib for other objects."
        )


class _Writer:
    """Collects the tensors of one file under unique names."""

    def __init__(self):
        self.tensors = {}

    def add(self, hint, tensor):
        key, n = hint, 1
        while key in self.tensors:
            n += 1
            key = f"{hint}#{n}"
        # A compact CPU copy: a view would make torch.save write its whole underlying storage.
        self.tensors[key] = tensor.detach().to("cpu", copy=True).clone(memory_format=torch.contiguous_format)
        return key


def _encode(value, writer, where):
    """JSON for ``value``; arrays and tensors go to ``writer``. Only data: no type is recorded by import path."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if type(value) is int:
        return value
    if type(value) is float:
        return value if math.isfinite(value) else {"__kind__": "float", "value": repr(value)}
    if isinstance(value, np.generic):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"{where}: cannot save a numpy scalar of dtype {value.dtype}.")
        return {"__kind__": "scalar", "dtype": value.dtype.str, "value": _encode(value.item(), writer, where)}
    if isinstance(value, list):
        return [_encode(v, writer, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return {"__kind__": "tuple", "items": [_encode(v, writer, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, dict):
        return {
            "__kind__": "dict",
            "items": [[_encode(k, writer, where), _encode(v, writer, f"{where}[{k!r}]")] for k, v in value.items()],
        }
    if isinstance(value, slice):
        parts = (value.start, value.stop, value.step)
        return {"__kind__": "slice", "items": [_encode(v, writer, where) for v in parts]}
    if isinstance(value, np.ndarray):
        return _encode_array(value, writer, where)
    if isinstance(value, torch.device):
        return {"__kind__": "device", "value": str(value)}
    if isinstance(value, np.random.RandomState):
        name, keys, pos, has_gauss, cached = value.get_state()
        return {"__kind__": "random_state", "keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss),
                "cached_gaussian": float(cached)}
    if type(value) is sp.csr_matrix:  # the ensemble's graph affinity; other formats would load as another type
        csr = value
        return {
            "__kind__": "csr",
            "shape": list(csr.shape),
            "data": _encode_array(csr.data, writer, f"{where}.data"),
            "indices": _encode_array(csr.indices, writer, f"{where}.indices"),
            "indptr": _encode_array(csr.indptr, writer, f"{where}.indptr"),
        }
    if type(value) in _ESTIMATORS.values() or type(value) in _WRAPPERS.values():
        # A nested estimator held as a parameter (``embedder``): its parameters only, as clone() would see it.
        return _encode_estimator(value, writer, fitted=False, where=where)
    if type(value) in _SKLEARN.values():
        return _encode_sklearn(value, writer, where)
    if type(value) in [entry[0] for entry in _OBJECTS.values()]:
        return _encode_object(value, writer, where)
    raise TypeError(
        f"{where}: save_model cannot store a value of type {type(value).__module__}.{type(value).__qualname__}."
    )


def _encode_array(array, writer, where):
    array = np.asarray(array)
    if array.dtype.kind in _NUMERIC_KINDS:
        native = array.astype(array.dtype.newbyteorder("="), copy=False)
        order = "F" if native.ndim > 1 and native.flags.f_contiguous and not native.flags.c_contiguous else "C"
        key = writer.add(where, torch.from_numpy(np.ascontiguousarray(native)))
        return {"__kind__": "ndarray", "dtype": native.dtype.str, "shape": list(native.shape), "order": order,
                "tensor": key}
    if array.dtype.kind in "UO":
        items = [_encode(v, writer, where) for v in array.ravel().tolist()]
        if array.dtype.kind == "O" and not all(v is None or isinstance(v, (str, int, float, bool)) for v in items):
            raise TypeError(f"{where}: an object array can be saved only when it holds strings and numbers.")
        return {"__kind__": "ndarray", "dtype": array.dtype.str, "shape": list(array.shape), "items": items}
    raise TypeError(f"{where}: cannot save an array of dtype {array.dtype}.")


def _encode_estimator(estimator, writer, *, fitted, where):
    name = type(estimator).__name__
    params = estimator.get_params(deep=False)
    spec = {
        "__kind__": "estimator",
        "class": name,
        "params": {key: _encode(value, writer, f"{where}.{key}") for key, value in params.items()},
    }
    if not fitted or name in _WRAPPERS:
        return spec
    attributes = {}
    for key, value in vars(estimator).items():
        if key in params or key in _SKIPPED:
            continue
        if (_FITTED_NAME.match(key) and not hasattr(type(estimator), key)) or key in _PRIVATE_STATE.get(name, ()):
            if key == "embedder_" and value is not None:
                attributes[key] = _encode_estimator(value, writer, fitted=True, where=f"{where}.{key}")
            else:
                attributes[key] = _encode(value, writer, f"{where}.{key}")
    spec["attributes"] = attributes
    module = getattr(estimator, "module_", None)
    if module is not None:
        spec["module"] = {
            "__kind__": "state_dict",
            "tensors": {k: writer.add(f"{where}.module_.{k}", v) for k, v in module.state_dict().items()},
        }
    return spec


def _encode_sklearn(obj, writer, where):
    name = type(obj).__name__
    params = obj.get_params(deep=False)
    attributes = {
        key: _encode(value, writer, f"{where}.{key}")
        for key, value in vars(obj).items()
        if key not in params and (_FITTED_NAME.match(key) or key in _SKLEARN_PRIVATE.get(name, ()))
    }
    return {
        "__kind__": "sklearn",
        "class": name,
        "params": {key: _encode(value, writer, f"{where}.{key}") for key, value in params.items()},
        "attributes": attributes,
    }


def _encode_object(obj, writer, where):
    name = type(obj).__name__
    _, init_args, attribute_names = _OBJECTS[name]
    known = set(init_args) | set(attribute_names) | ({"neighbors_"} if name == "GraphMember" else set())
    unknown = set(vars(obj)) - known
    if unknown:
        # A new attribute in skssl._ensemble that this format does not know yet: refuse rather than drop it.
        raise TypeError(f"{where}: save_model does not know the attributes {sorted(unknown)} of {name}.")
    spec = {
        "__kind__": "object",
        "class": name,
        "init": {arg: _encode(getattr(obj, arg), writer, f"{where}.{arg}") for arg in init_args},
        "attributes": {
            key: _encode(getattr(obj, key), writer, f"{where}.{key}") for key in attribute_names if hasattr(obj, key)
        },
    }
    if name == "GraphMember":
        spec["neighbors"] = _encode(obj.neighbors_.get_params(deep=False), writer, f"{where}.neighbors_")
    return spec


# ---------------------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------------------


def _read_archive(path):
    """``(meta dict, tensor bytes or None)`` of the file, with any damage reported as a ValueError."""
    name = os.fspath(path)
    if not os.path.exists(name):
        raise FileNotFoundError(f"No such skssl model file: {name!r}")
    try:
        with zipfile.ZipFile(name) as archive:
            entries = set(archive.namelist())
            if _META not in entries:
                raise ValueError(
                    f"{name!r} is a zip archive without {_META}: not a file written by skssl.save_model."
                )
            meta_bytes = archive.read(_META)
            tensor_bytes = archive.read(_TENSORS) if _TENSORS in entries else None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
        raise ValueError(
            f"{name!r} is not a complete skssl model file (truncated, corrupt, or not written by skssl.save_model): "
            f"{exc}. Download or copy it again."
        ) from exc
    try:
        meta = json.loads(meta_bytes.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{name!r}: {_META} is not valid JSON ({exc}); the file is corrupt.") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{name!r}: {_META} must hold a JSON object; the file is corrupt.")
    return meta, tensor_bytes


def _reject_constant(constant):
    raise ValueError(f"non-standard JSON constant {constant}")


def _check_format(meta, path):
    name = os.fspath(path)
    if meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{name!r} is not an skssl model file (its {_META} has format={meta.get('format')!r}).")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{name!r} has an invalid format version {version!r}; the file is corrupt.")
    if version > FORMAT_VERSION:
        written_by = (meta.get("versions") or {}).get("skssl", "a newer version")
        raise ValueError(
            f"{name!r} uses format version {version}, written by skssl {written_by}; this skssl reads format "
            f"versions up to {FORMAT_VERSION}. Upgrade skssl to load it."
        )
    if not isinstance(meta.get("estimator"), dict):
        raise ValueError(f"{name!r}: {_META} describes no estimator; the file is corrupt.")


def _check_class_names(node, where):
    """Refuse any class name outside the allow-lists, wherever it appears, before anything is built."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            _check_class_names(item, f"{where}[{i}]")
        return
    if not isinstance(node, dict):
        return
    kind = node.get("__kind__")
    if kind in ("estimator", "sklearn", "object"):
        allowed = {
            "estimator": {**_ESTIMATORS, **_WRAPPERS},
            "sklearn": _SKLEARN,
            "object": _OBJECTS,
        }[kind]
        name = node.get("class")
        if not isinstance(name, str) or name not in allowed:
            raise ValueError(
                f"{where}: class {name!r} is not allowed in an skssl model file (allowed: {sorted(allowed)}). "
                "The file was not written by skssl.save_model, or was modified; it is not loaded."
            )
    for key, value in node.items():
        _check_class_names(value, f"{where}.{key}")


def _load_tensors(data, path):
    name = os.fspath(path)
    if data is None:
        raise ValueError(f"{name!r} has no {_TENSORS}: not a complete skssl model file.")
    try:
        # weights_only=True: a restricted unpickler that builds tensors and plain containers and refuses any
        # other global (no code from the file runs); map_location: the model loads on machines without a GPU.
        tensors = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - untrusted bytes: any failure means the same thing to the caller
        raise ValueError(
            f"{name!r}: {_TENSORS} could not be read as plain tensors and was refused ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}). The file is corrupt, or holds something other than "
            "tensors (such as a pickled program), which is never executed."
        ) from exc
    if not isinstance(tensors, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in tensors.items()
    ):
        raise ValueError(f"{name!r}: {_TENSORS} must hold a flat dict of named tensors; the file is corrupt.")
    return tensors


class _Reader:
    def __init__(self, tensors):
        self.tensors = tensors
        self.used = set()

    def tensor(self, key, where):
        if not isinstance(key, str) or key not in self.tensors:
            raise ValueError(f"{where}: tensor {key!r} is missing from the file; the file is corrupt.")
        self.used.add(key)
        return self.tensors[key]


def _expect(condition, where, message):
    if not condition:
        raise ValueError(f"{where}: {message}; the file is corrupt or was modified.")


def _decode(node, reader, where):
    if node is None or isinstance(node, (bool, str, int, float)):
        return node
    if isinstance(node, list):
        return [_decode(v, reader, f"{where}[{i}]") for i, v in enumerate(node)]
    _expect(isinstance(node, dict), where, f"unexpected JSON value {node!r}")
    kind = node.get("__kind__")
    if kind == "float":
        _expect(node.get("value") in ("nan", "inf", "-inf"), where, "invalid float")
        return float(node["value"])
    if kind == "scalar":
        dtype = _dtype(node.get("dtype"), where, "biuf")
        value = node.get("value")
        _expect(isinstance(value, (bool, int, float)) or isinstance(value, dict), where, "invalid scalar")
        return dtype.type(_decode(value, reader, where))
    if kind == "tuple":
        return tuple(_decode(_list(node, "items", where), reader, where))
    if kind == "dict":
        items = _list(node, "items", where)
        _expect(all(isinstance(item, list) and len(item) == 2 for item in items), where, "invalid dict")
        decoded = {}
        for key, value in items:
            key = _decode(key, reader, where)
            _expect(isinstance(key, (str, int, float, bool, np.generic)) or key is None, where, "invalid dict key")
            decoded[key] = _decode(value, reader, f"{where}[{key!r}]")
        return decoded
    if kind == "slice":
        parts = _decode(_list(node, "items", where), reader, where)
        _expect(len(parts) == 3 and all(p is None or isinstance(p, int) for p in parts), where, "invalid slice")
        return slice(*parts)
    if kind == "ndarray":
        return _decode_array(node, reader, where)
    if kind == "device":
        try:
            return torch.device(str(node.get("value")))
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"{where}: invalid device {node.get('value')!r}.") from exc
    if kind == "random_state":
        keys, pos = node.get("keys"), node.get("pos")
        _expect(isinstance(keys, list) and len(keys) == 624 and all(type(k) is int and 0 <= k < 2**32 for k in keys),
                where, "invalid random state")
        _expect(type(pos) is int and 0 <= pos <= 624, where, "invalid random state")
        state = np.random.RandomState()
        state.set_state(("MT19937", np.array(keys, dtype=np.uint32), pos, int(bool(node.get("has_gauss"))),
                         float(node.get("cached_gaussian") or 0.0)))
        return state
    if kind == "csr":
        shape = node.get("shape")
        _expect(isinstance(shape, list) and len(shape) == 2 and all(type(s) is int and s >= 0 for s in shape),
                where, "invalid sparse shape")
        data, indices, indptr = (
            _decode_array(node.get(k), reader, f"{where}.{k}") for k in ("data", "indices", "indptr")
        )
        try:
            matrix = sp.csr_matrix((data, indices, indptr), shape=tuple(shape))
            matrix.check_format(full_check=True)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{where}: invalid sparse matrix ({exc}); the file is corrupt.") from exc
        return matrix
    if kind == "estimator":
        return _decode_estimator(node, reader, fitted=False, where=where)
    if kind == "sklearn":
        return _decode_sklearn(node, reader, where)
    if kind == "object":
        return _decode_object(node, reader, where)
    raise ValueError(f"{where}: unknown value kind {kind!r}; the file is corrupt or from a newer skssl.")


def _list(node, key, where):
    value = node.get(key)
    _expect(isinstance(value, list), where, f"{key!r} must be a list")
    return value


def _dtype(text, where, kinds):
    try:
        dtype = np.dtype(text) if isinstance(text, str) else None
    except TypeError:
        dtype = None
    _expect(dtype is not None and dtype.kind in kinds, where, f"invalid dtype {text!r}")
    return dtype


def _decode_array(node, reader, where):
    _expect(isinstance(node, dict) and node.get("__kind__") == "ndarray", where, "an array was expected")
    shape = node.get("shape")
    _expect(isinstance(shape, list) and all(type(s) is int and s >= 0 for s in shape), where, "invalid shape")
    dtype = _dtype(node.get("dtype"), where, _NUMERIC_KINDS + "UO")
    if dtype.kind in _NUMERIC_KINDS:
        tensor = reader.tensor(node.get("tensor"), where)
        try:
            array = tensor.numpy()
        except (TypeError, RuntimeError) as exc:
            raise ValueError(f"{where}: tensor of dtype {tensor.dtype} cannot hold an array.") from exc
        if array.dtype != dtype or list(array.shape) != shape:
            raise ValueError(
                f"{where}: the stored tensor has dtype {array.dtype} and shape {list(array.shape)}, but the model "
                f"description says {dtype} and {shape}; the file is corrupt or was modified."
            )
        return np.array(array, order="F" if node.get("order") == "F" else "C", copy=True)
    # A string dtype sized by the file must not make the loader allocate gigabytes.
    _expect(dtype.kind != "U" or dtype.itemsize <= 4 * 4096, where, f"string dtype {dtype} too wide")
    items = [_decode(v, reader, where) for v in _list(node, "items", where)]
    _expect(all(v is None or isinstance(v, (str, int, float, bool)) for v in items), where, "invalid array items")
    _expect(len(items) == math.prod(shape), where, "the array's items disagree with its shape")
    array = np.empty(len(items), dtype=dtype)
    array[:] = items
    return array.reshape(shape)


def _check_params(node, cls, where):
    params = node.get("params")
    _expect(isinstance(params, dict), where, "parameters missing")
    known = set(cls._get_param_names())
    unknown = set(params) - known
    if unknown:
        raise ValueError(
            f"{where}: {sorted(unknown)} are not parameters of {cls.__name__} in this skssl; the file was written "
            "by another version or was modified."
        )
    return params


def _validated(estimator, where):
    try:
        estimator._validate_params()
    except InvalidParameterError as exc:
        raise ValueError(f"{where}: invalid parameters for {type(estimator).__name__}: {exc}") from exc
    return estimator


def _decode_estimator(node, reader, *, fitted, where):
    name = node.get("class")
    if name in _WRAPPERS:
        params = _check_params(node, _WRAPPERS[name], where)
        inner = params.get("estimator")
        _expect(isinstance(inner, dict) and inner.get("__kind__") == "estimator", where, "wrapper without estimator")
        return _WRAPPERS[name](_decode_estimator(inner, reader, fitted=False, where=f"{where}.estimator"))
    cls = _ESTIMATORS.get(name)
    if cls is None:  # already refused by _check_class_names; kept so that no path builds an unknown class
        raise ValueError(f"{where}: class {name!r} is not an skssl estimator.")
    params = _check_params(node, cls, where)
    estimator = cls()
    estimator.set_params(**{key: _decode(value, reader, f"{where}.{key}") for key, value in params.items()})
    _validated(estimator, where)
    if not fitted:
        return estimator
    attributes = node.get("attributes")
    _expect(isinstance(attributes, dict), where, "fitted attributes missing")
    for key, value in attributes.items():
        allowed = (_FITTED_NAME.match(key) and key not in _SKIPPED) or key in _PRIVATE_STATE.get(name, ())
        if not allowed or key in params or hasattr(cls, key):
            raise ValueError(f"{where}: {key!r} is not a fitted attribute that {name} may have.")
        if key == "embedder_" and value is not None:
            _expect(isinstance(value, dict) and value.get("__kind__") == "estimator", where,
                    "embedder_ must be an skssl embedder or None")
            decoded = _decode_estimator(value, reader, fitted=True, where=f"{where}.{key}")
            _expect(isinstance(decoded, BaseSSLEstimator), where, "embedder_ must be an skssl embedder or None")
        else:
            decoded = _decode(value, reader, f"{where}.{key}")
        setattr(estimator, key, decoded)
    if "device_" in attributes:
        estimator.device_ = torch.device("cpu")  # the weights are loaded on the CPU
    module = node.get("module")
    if module is not None:
        _expect(isinstance(module, dict) and module.get("__kind__") == "state_dict", where, "invalid network")
        tensors = module.get("tensors")
        _expect(isinstance(tensors, dict), where, "invalid network")
        state = {key: reader.tensor(value, f"{where}.module_.{key}") for key, value in tensors.items()}
        try:
            estimator.module_ = _rebuild_module(estimator, where)
        except (AttributeError, KeyError, TypeError, IndexError, RuntimeError) as exc:
            raise ValueError(
                f"{where}: the network cannot be rebuilt from the stored parameters and attributes ({exc}); the file "
                "is corrupt or was modified."
            ) from exc
        try:
            estimator.module_.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ValueError(
                f"{where}: the stored network weights do not match the network that the parameters describe "
                f"({' '.join(str(exc).split())}); the file is corrupt or was modified."
            ) from exc
        estimator.module_.eval()
    _check_consistency(estimator, where)
    if isinstance(estimator, _BaseFineTune):
        _restore_prefit_embedder(estimator)
    return estimator


def _placeholder_statistics(embedder, n_features):
    """Statistics with the right shapes for ``_build_module``: the values they set are buffers of the module,
    overwritten by the stored state dict."""
    statistics = {"mean": np.zeros(n_features), "std": np.ones(n_features)}
    views = getattr(embedder, "views_", None)
    if isinstance(embedder, VAEEmbedder) and views is not None:
        statistics["views"] = {"present": np.ones((1, len(views)), dtype=bool), "row_sums": np.ones((1, len(views)))}
    return statistics


def _build_embedder_module(embedder, n_features, hidden_dims):
    # Initial weights are overwritten: a fixed seed in a fork of the RNG only keeps the caller's RNG untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return embedder._build_module(n_features, tuple(hidden_dims), _placeholder_statistics(embedder, n_features))


def _rebuild_module(estimator, where):
    """The untrained network of ``estimator`` (on the CPU), built by the estimators' own construction code."""
    n_features = estimator.n_features_in_
    _expect(type(n_features) is int and n_features >= 1, where, "invalid n_features_in_")
    if isinstance(estimator, BaseSSLEstimator):
        hidden_dims = estimator.hidden_dims_
        _expect(isinstance(hidden_dims, tuple), where, "invalid hidden_dims_")
        return _build_embedder_module(estimator, n_features, hidden_dims)
    _expect(estimator.strategy == "finetune", where, "only strategy='finetune' has a network")
    if estimator.embedder_ is not None:
        source = estimator.embedder_.module_
    else:  # pretrain=False: the network the embedder would start from
        embedder = estimator._configured_embedder(0)
        source = _build_embedder_module(embedder, n_features, embedder._resolved_hidden_dims(n_features))
    # The same reduction of the embedder's network to its embedding path that fit applies.
    body, n_components = _embedding_path(source, n_features)
    frozen = estimator.finetune == "head"
    if frozen:
        body.requires_grad_(False)
    scale = Standardize(torch.zeros(n_components), torch.ones(n_components))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        head = make_mlp(n_components, tuple(estimator.head_hidden_dims), estimator._n_outputs(),
                        dropout=estimator.dropout)
    return _FineTuneModule(body, scale, head, frozen)


def _check_consistency(estimator, where):
    """Shapes of the fitted attributes that the network does not check."""
    try:
        check_is_fitted(estimator)
    except Exception as exc:  # noqa: BLE001 - NotFittedError and friends
        raise ValueError(f"{where}: the fitted attributes are missing ({exc}).") from exc
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        _expect(isinstance(names, np.ndarray) and names.shape == (estimator.n_features_in_,), where,
                "feature_names_in_ disagrees with n_features_in_")
    if isinstance(estimator, BaseSSLEstimator):
        k = estimator.n_components_
        for key, shape in (("embedding_mean_", (k,)), ("embedding_scale_", (k,)), ("embedding_whitening_", (k, k))):
            value = getattr(estimator, key, None)
            if value is not None:
                _expect(isinstance(value, np.ndarray) and value.shape == shape, where,
                        f"{key} has the wrong shape for n_components_={k}")


def _restore_prefit_embedder(estimator):
    """With ``prefit=True`` (or a FrozenEstimator), ``embedder_`` is a copy of the fitted ``embedder`` parameter:
    restore that parameter as a fitted copy too, so the loaded model can be refitted or cloned like the saved one.
    """
    if not estimator._uses_prefit() or getattr(estimator, "embedder_", None) is None:
        return
    frozen = isinstance(estimator.embedder, FrozenEstimator)
    declared = estimator.embedder.estimator if frozen else estimator.embedder
    if declared is None or type(declared) is not type(estimator.embedder_):
        return
    if repr(declared.get_params(deep=False)) != repr(estimator.embedder_.get_params(deep=False)):
        return  # the parameter was changed after fitting: keep it as stored
    fitted = copy.deepcopy(estimator.embedder_)
    estimator.embedder = FrozenEstimator(fitted) if frozen else fitted


def _decode_sklearn(node, reader, where):
    name = node["class"]
    cls = _SKLEARN[name]
    params = _check_params(node, cls, where)
    obj = _validated(cls(**{key: _decode(value, reader, f"{where}.{key}") for key, value in params.items()}), where)
    attributes = node.get("attributes")
    _expect(isinstance(attributes, dict), where, "fitted attributes missing")
    for key, value in attributes.items():
        if not (_FITTED_NAME.match(key) or key in _SKLEARN_PRIVATE.get(name, ())) or key in params or hasattr(cls, key):
            raise ValueError(f"{where}: {key!r} is not a fitted attribute that {name} may have.")
        setattr(obj, key, _decode(value, reader, f"{where}.{key}"))
    return obj


def _decode_object(node, reader, where):
    name = node["class"]
    cls, init_args, attribute_names = _OBJECTS[name]
    init = node.get("init")
    _expect(isinstance(init, dict) and set(init) == set(init_args), where, f"invalid arguments of {name}")
    obj = cls(*[_decode(init[arg], reader, f"{where}.{arg}") for arg in init_args])
    attributes = node.get("attributes")
    _expect(isinstance(attributes, dict) and set(attributes) <= set(attribute_names), where,
            f"unknown attributes of {name}")
    for key, value in attributes.items():
        setattr(obj, key, _decode(value, reader, f"{where}.{key}"))
    if name == "GraphMember":
        params = _decode(node.get("neighbors"), reader, f"{where}.neighbors_")
        _expect(isinstance(params, dict) and set(params) <= set(NearestNeighbors().get_params()), where,
                "invalid neighbour search parameters")
        _expect(isinstance(getattr(obj, "points_", None), np.ndarray), where, "points_ missing")
        # The search structure is not stored: refitted on the same points, it finds the same neighbours.
        obj.neighbors_ = _validated(NearestNeighbors(**params), where).fit(obj.points_)
    return obj
