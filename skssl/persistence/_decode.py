"""Reading: the conversion of a file's JSON description plus tensors back to estimators and values.

Every value is validated as it is decoded (kinds, dtypes, shapes, class names, parameters, attribute names);
anything unexpected raises a ValueError that names where in the description it was found.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.neighbors import NearestNeighbors

from .._base import BaseSSLEstimator
from .._compat import (
    InvalidParameterError,
    constructor_parameter_names,
    portable_sklearn_params,
    set_sklearn_fitted_state,
    sklearn_state_name,
    validate_estimator_params,
)
from .._ensemble import WeightedMembers
from .._pretraining import EmbedderUser
from ._rebuild import _check_consistency, _check_parameters, _rebuild_network, _restore_prefit_embedder
from ._schema import (
    _ENSEMBLE_ALIASES,
    _ENSEMBLE_OF,
    _ESTIMATORS,
    _FORMAT_1_DROPPED,
    _FORMAT_1_RENAMES,
    _LOCAL_PATH_PARAMETERS,
    _NUMERIC_KINDS,
    _OBJECTS,
    _SKIPPED,
    _SKLEARN,
    _VALUE_RULES,
    _WRAPPERS,
    _expect,
)

# Bound on a fixed-width string array relative to its items' JSON (UTF-32 takes 4 bytes a character; the rest is
# room for a dtype wider than the longest item, as np.unique keeps its input's width).
_STRING_BYTES_PER_JSON_CHAR = 16
_STRING_SLACK_BYTES = 1024**2


class _Reader:
    def __init__(self, tensors, format_version=None):
        self.tensors = tensors
        self.format_version = format_version  # 1: a network may have skssl 0.1.0's layout (upgraded at load)
        self.used = set()

    def tensor(self, key, where):
        if not isinstance(key, str) or key not in self.tensors:
            raise ValueError(f"{where}: tensor {key!r} is missing from the file; the file is corrupt.")
        self.used.add(key)
        return self.tensors[key]


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
        return _decode_scalar(node, reader, where)
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
        _expect(
            isinstance(keys, list) and len(keys) == 624 and all(type(k) is int and 0 <= k < 2**32 for k in keys),
            where,
            "invalid random state",
        )
        _expect(type(pos) is int and 0 <= pos <= 624, where, "invalid random state")
        cached = node.get("cached_gaussian") or 0.0
        _expect(type(cached) in (int, float) and math.isfinite(cached), where, "invalid random state")
        state = np.random.RandomState()
        state.set_state(("MT19937", np.array(keys, dtype=np.uint32), pos, int(bool(node.get("has_gauss"))), cached))
        return state
    if kind == "csr":
        shape = node.get("shape")
        _expect(
            isinstance(shape, list) and len(shape) == 2 and all(type(s) is int and s >= 0 for s in shape),
            where,
            "invalid sparse shape",
        )
        data, indices, indptr = (
            _decode_array(node.get(k), reader, f"{where}.{k}") for k in ("data", "indices", "indptr")
        )
        try:
            matrix = sp.csr_matrix((data, indices, indptr), shape=tuple(shape))
            matrix.check_format(full_check=True)
        except (ValueError, TypeError, OverflowError) as exc:
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


def _decode_scalar(node, reader, where):
    dtype = _dtype(node.get("dtype"), where, "biuf")
    value = node.get("value")
    if isinstance(value, dict):
        value = _decode(value, reader, where)  # a non-finite float, written as {"__kind__": "float"}
    # The Python type must fit the kind: numpy would silently truncate 1.5 to an integer dtype's 1.
    allowed = {"b": (bool,), "i": (int,), "u": (int,), "f": (bool, int, float)}[dtype.kind]
    _expect(type(value) in allowed, where, f"invalid scalar {value!r} for dtype {dtype}")
    try:
        with np.errstate(over="raise", invalid="raise"):
            return dtype.type(value)
    except (OverflowError, FloatingPointError, ValueError) as exc:
        raise ValueError(
            f"{where}: the value {value!r} does not fit the dtype {dtype}; the file is corrupt or was modified."
        ) from exc


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
    items = _list(node, "items", where)
    _expect(len(items) == math.prod(shape), where, "the array's items disagree with its shape")
    items = [_decode(v, reader, where) for v in items]
    _expect(all(v is None or isinstance(v, (str, int, float, bool)) for v in items), where, "invalid array items")
    # Fixed-width strings take itemsize bytes each, however short the items: a few KB of deflated JSON listing
    # empty names could otherwise declare gigabytes. Bounded by what the items themselves take in the JSON.
    json_chars = sum(len(v) + 4 if isinstance(v, str) else 8 for v in items)
    _expect(
        len(items) * dtype.itemsize <= _STRING_SLACK_BYTES + _STRING_BYTES_PER_JSON_CHAR * json_chars,
        where,
        f"{len(items)} items of dtype {dtype} would take far more memory than the items hold",
    )
    array = np.empty(len(items), dtype=dtype)
    array[:] = items
    return array.reshape(shape)


def _check_params(node, cls, where):
    params = node.get("params")
    _expect(isinstance(params, dict), where, "parameters missing")
    known = set(constructor_parameter_names(cls))
    unknown = set(params) - known
    if unknown:
        raise ValueError(
            f"{where}: {sorted(unknown)} are not parameters of {cls.__name__} in this skssl; the file was written "
            "by another version or was modified."
        )
    return params


def _validated(estimator, where):
    try:
        validate_estimator_params(estimator)
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
    decoded = {key: _decode(value, reader, f"{where}.{key}") for key, value in params.items()}
    # A path of the machine that wrote the file (where a refit would write and resume from) is never taken from it.
    decoded.update({key: None for key in _LOCAL_PATH_PARAMETERS if key in decoded})
    estimator.set_params(**decoded)
    _validated(estimator, where)
    if not fitted:
        return estimator
    attributes = node.get("attributes")
    _expect(isinstance(attributes, dict), where, "fitted attributes missing")
    if reader.format_version == 1:
        renames, dropped = _FORMAT_1_RENAMES.get(name, {}), _FORMAT_1_DROPPED.get(name, ())
        attributes = {renames.get(key, key): value for key, value in attributes.items() if key not in dropped}
    for key, value in attributes.items():
        if key not in cls._fitted_attributes or key in _SKIPPED:
            raise ValueError(f"{where}: {key!r} is not a fitted attribute that {name} may have.")
        if key == "embedder_" and value is not None:
            _expect(
                isinstance(value, dict) and value.get("__kind__") == "estimator",
                where,
                "embedder_ must be an skssl embedder or None",
            )
            decoded = _decode_estimator(value, reader, fitted=True, where=f"{where}.{key}")
            _expect(isinstance(decoded, BaseSSLEstimator), where, "embedder_ must be an skssl embedder or None")
        elif key == "ensemble_":
            decoded = _decode_ensemble(value, reader, cls, f"{where}.{key}")
        else:
            decoded = _decode(value, reader, f"{where}.{key}")
            _check_value(key, decoded, where)
        setattr(estimator, key, decoded)
    if type(estimator) in _ENSEMBLE_OF.values():  # a fitted ensemble estimator has every attribute but the names
        missing = [key for key in cls._fitted_attributes if key not in attributes and key != "feature_names_in_"]
        _expect(not missing, where, f"the fitted attributes {missing} are missing")
    if type(estimator) in _ENSEMBLE_OF:
        ensemble_fit = estimator.strategy == "ensemble"
        _expect("ensemble_" in attributes or not ensemble_fit, where, "the ensemble (ensemble_) is missing")
        if "ensemble_" in attributes:
            _nest_ensemble(estimator, attributes, where)
    if "device_" in attributes:
        estimator.device_ = torch.device("cpu")  # the weights are loaded on the CPU
    _check_parameters(estimator, where)
    module = node.get("module")
    has_network = isinstance(estimator, BaseSSLEstimator) or getattr(estimator, "strategy", None) == "finetune"
    _expect((module is not None) == has_network, where, "the network is missing, or present where none belongs")
    if module is not None:
        _expect(isinstance(module, dict) and module.get("__kind__") == "state_dict", where, "invalid network")
        tensors = module.get("tensors")
        _expect(isinstance(tensors, dict), where, "invalid network")
        state = {key: reader.tensor(value, f"{where}.module_.{key}") for key, value in tensors.items()}
        for key, tensor in state.items():
            # A float64 sum is NaN or infinite exactly when a value is (no sum of float32 values overflows float64),
            # without torch.isfinite's temporary mask, which took a third of the loading time.
            _expect(
                not tensor.is_floating_point() or math.isfinite(tensor.sum(dtype=torch.float64)),
                f"{where}.module_.{key}",
                "the stored network weights hold NaN or infinite values",
            )
        estimator.module_ = _rebuild_network(estimator, state, where, upgrade=reader.format_version == 1)
    _check_consistency(estimator, where)
    if isinstance(estimator, EmbedderUser):
        _restore_prefit_embedder(estimator)
        ensemble = getattr(estimator, "ensemble_", None)
        if type(ensemble) in _ENSEMBLE_OF.values() and repr(ensemble.embedder) == repr(estimator.embedder):
            ensemble.embedder = estimator.embedder  # one object, as after fit (ensemble_ shares the parameter)
    return estimator


def _decode_ensemble(node, reader, cls, where):
    """The ``ensemble_`` of a ``cls``: the internal WeightedMembers of a semi-supervised ensemble estimator, or of
    an SSL predictor in a file of format 1 or 2 (wrapped by :func:`_nest_ensemble`); a fitted
    SemiSupervisedEnsembleClassifier / ...Regressor of the predictor's task in a file of format 3 on."""
    nested = cls in _ENSEMBLE_OF and reader.format_version >= 3
    expected = _ENSEMBLE_OF[cls] if nested else WeightedMembers
    message = f"a fitted {expected.__name__} was expected"
    if nested:
        _expect(isinstance(node, dict) and node.get("__kind__") == "estimator", where, message)
        decoded = _decode_estimator(node, reader, fitted=True, where=where)
    else:
        decoded = _decode(node, reader, where)
    _expect(type(decoded) is expected, where, message)
    return decoded


def _nest_ensemble(estimator, attributes, where):
    """An SSL predictor's ``ensemble_`` as fit leaves it: a SemiSupervisedEnsembleClassifier / ...Regressor that
    holds the predictor's ``embedder_``, ``members_`` and ``weights_`` (the same objects).

    Files of format 3 write those three once, within ``ensemble_``: taken from it, and the attributes that both
    hold checked to agree. Files of formats 1 and 2 held the internal WeightedMembers as ``ensemble_`` and the
    three on the predictor: the ensemble estimator is built around them, with the predictor's parameters (as
    ``fit`` builds it) and fitted attributes.
    """
    ensemble = estimator.ensemble_
    public = _ENSEMBLE_OF[type(estimator)]
    shared = [key for key in public._fitted_attributes if key not in ("ensemble_", "held_out_loss_")]
    if isinstance(ensemble, WeightedMembers):  # formats 1 and 2
        needed = [key for key in shared if key != "feature_names_in_"]
        _expect(all(key in attributes for key in needed), where, f"an ensemble needs the fitted {needed}")
        members, ensemble = ensemble, estimator._ensemble()
        for key in shared:
            if hasattr(estimator, key):
                setattr(ensemble, key, getattr(estimator, key))
        ensemble.held_out_loss_ = getattr(members, "held_out_loss_", None)
        ensemble.ensemble_ = members
        estimator.ensemble_ = ensemble
        return
    for key in _ENSEMBLE_ALIASES:
        if key not in attributes:
            setattr(estimator, key, getattr(ensemble, key))
    if estimator.strategy != "ensemble":
        return  # the ensemble_ of an earlier fit, which nothing reads
    for key in shared:
        ours, theirs = getattr(estimator, key, None), getattr(ensemble, key, None)
        if isinstance(ours, np.ndarray) or isinstance(theirs, np.ndarray):
            same = isinstance(ours, np.ndarray) and isinstance(theirs, np.ndarray) and np.array_equal(ours, theirs)
        else:
            same = ours is theirs or (type(ours) is type(theirs) and ours == theirs)
        _expect(bool(same), where, f"ensemble_.{key} disagrees with {key}")


def _check_value(key, value, where):
    """Refuse a fitted attribute whose values break its rule in ``_VALUE_RULES`` (NaN statistics, zero scales)."""
    rule = _VALUE_RULES.get(key)
    if rule is None or value is None:
        return
    numeric = (isinstance(value, (int, float, np.number)) and not isinstance(value, bool)) or (
        isinstance(value, np.ndarray) and value.dtype.kind in "iuf"
    )
    _expect(numeric, f"{where}.{key}", "a number or numeric array was expected")
    values = np.asarray(value, dtype=np.float64)
    if rule == "positive":
        valid, problem = np.isfinite(values).all() and (values > 0).all(), "zero, negative, NaN or infinite scales"
    else:
        valid, problem = np.isfinite(values).all(), "NaN or infinite values"
    _expect(bool(valid), f"{where}.{key}", f"holds {problem}")


def _decode_sklearn(node, reader, where):
    name = node["class"]
    cls = _SKLEARN[name]
    node = {**node, "params": portable_sklearn_params(cls, node.get("params"))}  # written under another release
    params = _check_params(node, cls, where)
    obj = _validated(cls(**{key: _decode(value, reader, f"{where}.{key}") for key, value in params.items()}), where)
    attributes = node.get("attributes")
    _expect(isinstance(attributes, dict), where, "fitted attributes missing")
    state = {}
    for key, value in attributes.items():
        if not sklearn_state_name(cls, key, params):
            raise ValueError(f"{where}: {key!r} is not a fitted attribute that {name} may have.")
        state[key] = _decode(value, reader, f"{where}.{key}")
        _check_value(key, state[key], where)
    return set_sklearn_fitted_state(obj, state)


def _decode_object(node, reader, where):
    name = node["class"]
    cls, init_args, attribute_names = _OBJECTS[name]
    init = node.get("init")
    _expect(isinstance(init, dict) and set(init) == set(init_args), where, f"invalid arguments of {name}")
    obj = cls(*[_decode(init[arg], reader, f"{where}.{arg}") for arg in init_args])
    attributes = node.get("attributes")
    _expect(
        isinstance(attributes, dict) and set(attributes) <= set(attribute_names), where, f"unknown attributes of {name}"
    )
    for key, value in attributes.items():
        decoded = _decode(value, reader, f"{where}.{key}")
        _check_value(key, decoded, where)
        setattr(obj, key, decoded)
    if name == "GraphMember":
        params = _decode(node.get("neighbors"), reader, f"{where}.neighbors_")
        _expect(
            isinstance(params, dict) and set(params) <= set(NearestNeighbors().get_params()),
            where,
            "invalid neighbour search parameters",
        )
        _expect(isinstance(getattr(obj, "points_", None), np.ndarray), where, "points_ missing")
        # The search structure is not stored: refitted on the same points, it finds the same neighbours.
        obj.neighbors_ = _validated(NearestNeighbors(**params), where).fit(obj.points_)
    return obj
