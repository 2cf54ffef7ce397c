"""Writing: the conversion of an estimator's parameters and fitted attributes to JSON plus a dict of tensors.

Only data is written; no type is recorded by import path. A value of a type the format does not know is refused
with a TypeError rather than dropped.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch

from .._compat import FITTED_NAME, sklearn_fitted_state
from ._schema import (
    _ENSEMBLE_ALIASES,
    _ESTIMATORS,
    _LOCAL_PATH_PARAMETERS,
    _NUMERIC_KINDS,
    _OBJECTS,
    _SKIPPED,
    _SKLEARN,
    _WRAPPERS,
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
        return {
            "__kind__": "random_state",
            "keys": keys.tolist(),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        }
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
        return {
            "__kind__": "ndarray",
            "dtype": native.dtype.str,
            "shape": list(native.shape),
            "order": order,
            "tensor": key,
        }
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
        # A path of this machine (checkpoint) is no part of the model, and is never taken from a file.
        "params": {
            key: None if key in _LOCAL_PATH_PARAMETERS else _encode(value, writer, f"{where}.{key}")
            for key, value in params.items()
        },
    }
    if not fitted or name in _WRAPPERS:
        return spec
    # The estimator's own declaration of its fitted state says what is written; a fitted-looking attribute it does
    # not declare is refused rather than dropped (a prediction might need it).
    declared = type(estimator)._fitted_attributes
    state = vars(estimator)
    undeclared = [
        key
        for key in state
        if FITTED_NAME.match(key) and key not in params and key not in declared and not hasattr(type(estimator), key)
    ]
    if undeclared:
        raise ValueError(
            f"{where}: {name} has fitted attributes that its _fitted_attributes does not declare: {undeclared}; "
            "they would not be saved. Declare them (and document them) in the class."
        )
    # SSLClassifier / SSLRegressor(strategy="ensemble"): embedder_, members_ and weights_ are their ensemble_'s,
    # written once, within it.
    ensemble = state.get("ensemble_")
    nested = type(ensemble) in _ESTIMATORS.values()
    attributes = {}
    for key in declared:
        if key not in state or key in _SKIPPED:
            continue
        value = state[key]
        if nested and key in _ENSEMBLE_ALIASES and value is getattr(ensemble, key, None):
            continue
        if type(value) in _ESTIMATORS.values():  # a fitted embedder_, or the ensemble_ of an SSL predictor
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
    attributes = {key: _encode(value, writer, f"{where}.{key}") for key, value in sklearn_fitted_state(obj).items()}
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
