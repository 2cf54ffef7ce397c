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
import numbers
import os
import platform
import stat
import struct
import zipfile
import zlib

import numpy as np
import sklearn
import torch
from sklearn.utils.validation import check_is_fitted

from .._atomic import atomic_write
from ._decode import _decode, _decode_estimator, _Reader
from ._encode import _encode_estimator, _Writer
from ._schema import _ESTIMATORS, _MAX_DEPTH, _check_class_names, _renamed_objects

__all__ = ["FORMAT_VERSION", "MAX_BYTES", "MAX_META_BYTES", "load_model", "read_model_info", "save_model"]

#: Version of the file layout written by :func:`save_model`; :func:`load_model` reads this version and older ones.
#: Bump it when a change of the estimators makes older files load wrongly (a renamed parameter, a new fitted
#: attribute that ``transform`` needs, a module whose state dict changes), and teach the loader to upgrade the
#: older versions (e.g. fill in the new attribute), so that published models keep loading. Format 1: skssl 0.1.0
#: and the development versions after it, with two layouts of the VAE's network (told apart by their tensor names
#: and upgraded on load, ``_rebuild.py``) and SSLRegressor's target scaling in private attributes (renamed on load);
#: format 2: skssl 0.2.0 and 0.2.1, one layout of the networks. Formats 1 and 2 held the ensemble of
#: SSLClassifier / SSLRegressor(strategy="ensemble") as the internal object ``SemiSupervisedEnsemble`` in
#: ``ensemble_``; format 3 (skssl 0.3.0 on) holds a fitted SemiSupervisedEnsembleClassifier / ...Regressor there,
#: which holds that object (renamed ``WeightedMembers``) and the predictor's ``embedder_``, ``members_`` and
#: ``weights_``. Files of formats 1 and 2 are upgraded at load by their format version (``_decode.py``).
FORMAT_VERSION = 3
FORMAT_NAME = "skssl-model"
_META = "meta.json"
_TENSORS = "tensors.pt"
#: Default bound, in bytes, on what :func:`load_model` decompresses from a file (meta.json and tensors.pt together):
#: a file that would inflate beyond it is refused before it is read (and while reading, should the zip directory
#: understate the size). Pass ``max_bytes=`` to load a larger model from a source you trust.
MAX_BYTES = 2 * 1024**3
#: Bound, in bytes, on meta.json (never more than ``max_bytes``): it holds names and settings only (a model of
#: 50 000 genes writes about 1 MB), the numbers are in tensors.pt.
MAX_META_BYTES = 16 * 1024**2
_CHUNK_BYTES = 1024**2
# Parsed JSON takes up to about 15 times its size in Python objects (strings), and an empty list or dict 3 bytes of
# JSON but 60 bytes of object: their number is bounded too (a valid file holds a few per training epoch).
_MAX_JSON_CONTAINERS = 2**20
# A valid file has two members; zipfile builds an object of several hundred bytes for each directory entry, so a
# directory of millions of 46-byte entries is refused before zipfile parses it.
_MAX_MEMBERS = 64
_MAX_DIRECTORY_BYTES = 1024**2
_END_RECORD_SEARCH = 22 + 65535  # the end record, and the longest comment that may follow it
# tensors.pt (torch's own zip container): a record per tensor storage, and the pickle that names them.
_MAX_RECORDS = 2**16
_MAX_PICKLE_BYTES = 4 * 1024**2


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
    partial file behind. The ``checkpoint`` parameter, a path of this machine, is written as None.

    Parameters
    ----------
    estimator : estimator
        A fitted ContrastiveEmbedder, MaskedAutoencoder, VAEEmbedder, SSLClassifier, SSLRegressor,
        SemiSupervisedEnsembleClassifier or SemiSupervisedEnsembleRegressor: exactly one of these classes (not a
        subclass, a ``Pipeline`` or a search; save the fitted step itself). ``SSLClassifier`` / ``SSLRegressor``
        with either ``strategy``.
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


def load_model(path, *, max_bytes=MAX_BYTES):
    """Load an estimator written by :func:`save_model`, without executing anything from the file.

    The file is treated as untrusted input, and is checked before anything it describes is allocated: it must be
    a regular file (not a device, FIFO or directory); what it decompresses to is bounded by ``max_bytes`` (and
    meta.json by :data:`MAX_META_BYTES`); the tensors are read with ``torch.load(..., weights_only=True)``, which
    refuses any pickled object other than tensors and plain containers, from a container whose records are checked
    to lie within the file. Every class name is checked against an explicit list (nothing is imported by name),
    the parameters by the estimator's own parameter validation and against the fitted attributes they describe,
    and the network's declared sizes against the stored tensors (on torch's ``meta`` device, which allocates no
    memory) before the network is built; ``load_state_dict(strict=True)`` then checks every tensor's name and
    shape. Network weights and the statistics that predictions use must be finite (scales positive). Paths of
    the machine that wrote the file (``checkpoint``) are not taken from it. The model is loaded on the CPU; move
    it with ``set_params(device=...)`` and a refit, or use it as a prefit embedder
    (``SSLClassifier(embedder=model, prefit=True)``).

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save_model`.
    max_bytes : int, default=MAX_BYTES
        The most bytes the file's members may decompress to, together (2 GiB by default). A larger model is
        refused with a ValueError that says so; pass a larger value to load it from a source you trust.

    Returns
    -------
    estimator : estimator
        The fitted estimator, of one of the classes :func:`save_model` writes; its ``transform`` / ``predict`` /
        ``predict_proba`` on the CPU are bitwise equal to those of the saved one on the CPU.

    Raises
    ------
    ValueError
        If the file is not a regular file, is not a complete skssl model file (truncated, corrupt, not a zip
        archive), exceeds ``max_bytes``, was written by a newer format version, names a class that is not allowed,
        holds invalid parameters or attributes, parameters that disagree with the fitted attributes, non-finite
        weights or statistics, or tensors whose shapes disagree with the network the parameters describe. The
        message names the problem. Every malformed file raises this, and nothing else.
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
    meta, tensor_bytes = _read_archive(path, max_bytes)
    spec = _estimator_spec(meta, path)  # every class name is checked before a single tensor is read
    reader = _Reader(_load_tensors(tensor_bytes, path), meta["format_version"])
    del tensor_bytes  # the tensors now hold the data: the raw member need not stay in memory
    estimator = _decode_estimator(spec, reader, fitted=True, where="estimator")
    unused = set(reader.tensors) - reader.used
    if unused:
        raise ValueError(
            f"{os.fspath(path)!r} holds tensors that its description does not use ({sorted(unused)[:5]}...): the "
            "file was modified or is corrupt."
        )
    return estimator


def read_model_info(path, *, max_bytes=MAX_BYTES):
    """Describe a file written by :func:`save_model` without loading the model (only meta.json is read).

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save_model`.
    max_bytes : int, default=MAX_BYTES
        Bound on meta.json's decompressed size (which :data:`MAX_META_BYTES` bounds too).

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
    meta, _ = _read_archive(path, max_bytes, tensors=False)
    spec = _estimator_spec(meta, path)
    attributes = spec.get("attributes")
    attributes = attributes if isinstance(attributes, dict) else {}
    names = attributes.get("feature_names_in_")
    n_features = attributes.get("n_features_in_")
    if names is not None:
        # Gene names are held in JSON (an object array), so no tensor is needed to decode them.
        where = "estimator.attributes.feature_names_in_"
        names = _decode(names, _Reader({}), where)
        if not isinstance(names, np.ndarray) or names.ndim != 1 or names.dtype.kind not in "UO":
            raise ValueError(f"{os.fspath(path)!r}: {where} is not an array of names; the file is corrupt.")
        names = names.tolist()
    return {
        "format_version": meta["format_version"],
        "versions": meta.get("versions"),
        "estimator": spec["class"],
        "n_features_in": n_features if type(n_features) is int else None,
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


def _read_archive(path, max_bytes, *, tensors=True):
    """``(meta dict, tensors.pt as a BytesIO or None)`` of the file, with any damage reported as a ValueError.

    Both members are read with a bound on their decompressed size (``max_bytes``; meta.json also
    ``MAX_META_BYTES``), checked against the zip directory's declared size before reading and counted while
    streaming (the declared size is the file's word, not a fact). ``tensors=False`` reads meta.json alone.
    """
    name = os.fspath(path)
    max_bytes = _check_max_bytes(max_bytes)
    try:
        with _open_regular_file(name) as file:
            _check_directory_size(file, repr(name))
            with zipfile.ZipFile(file) as archive:
                names = archive.namelist()
                if _META not in names:
                    raise ValueError(f"{name!r} is a zip archive without {_META}: not written by skssl.save_model.")
                if names.count(_META) > 1 or names.count(_TENSORS) > 1:
                    raise ValueError(f"{name!r} holds a member twice: not a file written by skssl.save_model.")
                meta_bytes = _read_member(archive, _META, min(max_bytes, MAX_META_BYTES), name).getvalue()
                tensor_bytes = None
                if tensors and _TENSORS in names:
                    tensor_bytes = _read_member(archive, _TENSORS, max_bytes - len(meta_bytes), name)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError) as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError)):
            raise
        raise ValueError(
            f"{name!r} is not a complete skssl model file (truncated, corrupt, or not written by skssl.save_model): "
            f"{exc}. Download or copy it again."
        ) from exc
    containers = meta_bytes.count(b"[") + meta_bytes.count(b"{")  # strings' brackets too: an upper bound
    if containers > _MAX_JSON_CONTAINERS:
        raise ValueError(
            f"{name!r}: {_META} holds {containers} lists and objects, far more than a model's description; the file "
            "is corrupt or was made to exhaust memory."
        )
    try:
        meta = json.loads(meta_bytes.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{name!r}: {_META} is not valid JSON ({exc}); the file is corrupt.") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{name!r}: {_META} must hold a JSON object; the file is corrupt.")
    _check_depth(meta, name)
    return meta, tensor_bytes


def _check_max_bytes(max_bytes):
    if not isinstance(max_bytes, numbers.Integral) or isinstance(max_bytes, bool) or max_bytes < 1:
        raise ValueError(f"max_bytes must be a positive integer (a number of bytes), got {max_bytes!r}.")
    return int(max_bytes)


def _check_directory_size(file, what, max_members=_MAX_MEMBERS, max_directory_bytes=_MAX_DIRECTORY_BYTES):
    """Refuse a zip directory with more entries or bytes than a model file has, from its end record (and the
    zip64 one, which a file over 4 GiB has), before zipfile builds an object for every entry. ``what`` names the
    archive in the message."""
    size = file.seek(0, io.SEEK_END)
    file.seek(max(0, size - _END_RECORD_SEARCH))
    tail = file.read()
    file.seek(0)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) < at + 22:
        return  # not a zip archive: zipfile says so
    entries, directory_bytes = struct.unpack("<HI", tail[at + 10 : at + 16])
    if entries == 0xFFFF or directory_bytes == 0xFFFFFFFF:  # zip64: the true numbers are in the zip64 end record
        locator = tail[at - 20 : at]
        offset = struct.unpack("<Q", locator[8:16])[0] if at >= 20 and locator[:4] == b"PK\x06\x07" else size
        if offset < size:
            file.seek(offset)
            record = file.read(56)
            file.seek(0)
            if len(record) == 56 and record[:4] == b"PK\x06\x06":
                entries, directory_bytes = struct.unpack("<QQ", record[32:48])
    if entries > max_members or directory_bytes > max_directory_bytes:
        raise ValueError(
            f"{what}: its zip directory lists {entries} members in {directory_bytes} bytes (at most {max_members} "
            f"in {max_directory_bytes} bytes are read); the file is corrupt or was made to exhaust memory."
        )


def _open_regular_file(name):
    """The file ``name`` opened for reading, refused unless (after following symbolic links) it is a regular file:
    a device such as /dev/zero never ends and a FIFO may block forever."""
    # O_NONBLOCK: opening a FIFO must not wait for a writer before fstat can refuse it (no effect on regular files).
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        descriptor = os.open(name, flags)
    except FileNotFoundError:
        raise FileNotFoundError(f"No such skssl model file: {name!r}") from None
    except IsADirectoryError:
        raise ValueError(f"{name!r} is a directory, not an skssl model file.") from None
    try:
        # fstat on the opened descriptor: the file checked is the file read, whatever is renamed in between.
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
            raise ValueError(f"{name!r} is {kind}, not a regular file: skssl reads models only from regular files.")
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def _read_member(archive, member, limit, name):
    """The decompressed content of ``member`` as a BytesIO, refused as soon as it would exceed ``limit`` bytes."""
    info = archive.getinfo(member)
    if info.file_size > limit:
        raise _too_large(name, member, f"declares {info.file_size} bytes", limit)
    content = io.BytesIO()
    with archive.open(info) as stream:
        while True:
            chunk = stream.read(min(_CHUNK_BYTES, limit - content.tell() + 1))
            if not chunk:
                break
            if content.tell() + len(chunk) > limit:
                raise _too_large(name, member, "decompresses to more than it declares", limit)
            content.write(chunk)
    content.seek(0)
    return content


def _too_large(name, member, what, limit):
    if member == _META and limit == MAX_META_BYTES:
        hint = f"{_META} holds names and settings only, which no valid model makes this large"
    else:
        hint = "if you trust this file and it holds a very large model, pass a larger max_bytes"
    return ValueError(
        f"{name!r}: {member} {what}, over the limit of {limit} bytes; the file is corrupt, or was made to exhaust "
        f"memory ({hint})."
    )


def _check_depth(meta, name):
    """Refuse a description nested deeper than any valid one, without recursion (the checks after it recurse)."""
    stack = [(meta, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise ValueError(f"{name!r}: the model description is nested too deeply to be valid; the file is corrupt.")
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def _reject_constant(constant):
    raise ValueError(f"non-standard JSON constant {constant}")


def _estimator_spec(meta, path):
    """The checked description of the saved estimator: a known format, and only allowed class names anywhere."""
    _check_format(meta, path)
    spec = _renamed_objects(meta["estimator"], meta["format_version"])
    _check_class_names(spec, "estimator")
    if spec.get("class") not in _ESTIMATORS:
        raise ValueError(
            f"{os.fspath(path)!r} holds a {spec.get('class')!r}, not one of the estimators save_model writes "
            f"({sorted(_ESTIMATORS)}); the file was modified."
        )
    return spec


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
    """The flat ``{name: tensor}`` dict of tensors.pt (a BytesIO), its container checked before torch reads it."""
    name = os.fspath(path)
    if data is None:
        raise ValueError(f"{name!r} has no {_TENSORS}: not a complete skssl model file.")
    _check_torch_container(data, name)
    try:
        # weights_only=True: a restricted unpickler that builds tensors and plain containers and refuses any
        # other global (no code from the file runs); map_location: the model loads on machines without a GPU.
        tensors = torch.load(data, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"{name!r}: {_TENSORS} could not be read as plain tensors and was refused ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}). The file is corrupt, or holds something other than "
            "tensors (such as a pickled program), which is never executed."
        ) from exc
    if not isinstance(tensors, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) and v.layout == torch.strided for k, v in tensors.items()
    ):
        raise ValueError(f"{name!r}: {_TENSORS} must hold a flat dict of named dense tensors; the file is corrupt.")
    return tensors


def _check_torch_container(data, name):
    """tensors.pt must be torch's zip container with every record stored uncompressed and inside the member.

    torch allocates each record at the size its zip directory declares before reading it, and the older
    (non-zip) container allocates every storage at a size its pickle declares: neither is trusted. Within a
    container that passes, nothing torch allocates exceeds the member's size, which max_bytes bounds.
    """
    # One record per stored tensor (and a few more): the directory is bounded before zipfile parses it.
    _check_directory_size(data, f"{name!r}: {_TENSORS}", _MAX_RECORDS, 256 * _MAX_RECORDS)
    try:
        with zipfile.ZipFile(data) as container:
            records = container.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise ValueError(
            f"{name!r}: {_TENSORS} is not in torch's zip container, which save_model writes ({exc}), and was "
            "refused unread: the file is corrupt or was not written by skssl.save_model."
        ) from exc
    size = data.seek(0, io.SEEK_END)
    data.seek(0)
    if (
        any(record.compress_type != zipfile.ZIP_STORED or record.file_size > size for record in records)
        or sum(record.file_size for record in records) > size
    ):
        raise ValueError(
            f"{name!r}: {_TENSORS} declares records larger than itself or compressed; the file is corrupt or was "
            "made to exhaust memory."
        )
    # The pickle that names the tensors takes about 150 bytes a tensor; unpickled, each byte can become an object
    # of 60 bytes (an empty list), so it is bounded apart from the tensor data.
    pickles = [record for record in records if record.filename.endswith(".pkl")]
    if any(record.file_size > _MAX_PICKLE_BYTES for record in pickles):
        raise ValueError(
            f"{name!r}: {_TENSORS} holds a pickle of {max(record.file_size for record in pickles)} bytes (at most "
            f"{_MAX_PICKLE_BYTES} are read: a model's tensors need far less); the file is corrupt or was made to "
            "exhaust memory."
        )
