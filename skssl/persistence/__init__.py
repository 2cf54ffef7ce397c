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

# The code is split by task: this module holds the public functions and the archive (zip, meta.json, tensors.pt);
# _schema.py what a file may name (the allow-lists of classes and attributes, checked before anything is built);
# _encode.py and _decode.py the conversion of values to and from JSON plus tensors; _rebuild.py the reconstruction
# of an estimator's network by the estimators' own construction code, and the checks the network does not cover.

from __future__ import annotations

import io
import json
import os
import platform
import zipfile
import zlib

import numpy as np
import sklearn
import torch
from sklearn.utils.validation import check_is_fitted

from .._atomic import atomic_write
from ._decode import _decode, _decode_estimator, _Reader
from ._encode import _encode_estimator, _Writer
from ._schema import _ESTIMATORS, _check_class_names

__all__ = ["FORMAT_VERSION", "load_model", "read_model_info", "save_model"]

#: Version of the file layout written by :func:`save_model`; :func:`load_model` reads this version and older ones.
#: Bump it when a change of the estimators makes older files load wrongly (a renamed parameter, a new fitted
#: attribute that ``transform`` needs, a module whose state dict changes), and teach the loader to upgrade the
#: older versions (e.g. fill in the new attribute), so that published models keep loading. A change the loader can
#: recognise from the file alone may keep the version: the VAE's state-dict layout of skssl 0.1.0 is told apart by
#: its tensor names and renamed on load (``_rebuild.py``), so format 1 covers both layouts.
FORMAT_VERSION = 1
FORMAT_NAME = "skssl-model"
_META = "meta.json"
_TENSORS = "tensors.pt"


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
    # Through a temporary file renamed at the end: an interrupted save keeps the previous model file intact.
    with atomic_write(path, "wb") as file, zipfile.ZipFile(file, "w") as archive:
        archive.writestr(_META, meta_bytes, compress_type=zipfile.ZIP_DEFLATED)
        # Stored, not deflated: float weights barely compress, and deflating a large network is slow.
        archive.writestr(_TENSORS, tensor_buffer.getvalue(), compress_type=zipfile.ZIP_STORED)
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
    from .. import __version__

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


# ---------------------------------------------------------------------------------------------------------------
# Reading the archive
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
                raise ValueError(f"{name!r} is a zip archive without {_META}: not a file written by skssl.save_model.")
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


def _load_tensors(data, path):
    name = os.fspath(path)
    if data is None:
        raise ValueError(f"{name!r} has no {_TENSORS}: not a complete skssl model file.")
    try:
        # weights_only=True: a restricted unpickler that builds tensors and plain containers and refuses any
        # other global (no code from the file runs); map_location: the model loads on machines without a GPU.
        tensors = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
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
