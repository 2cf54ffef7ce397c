"""A seeded fuzz of the model loader: every mutation of a valid file loads, or raises a ValueError.

A fixed number of seeded mutations of three small valid files (an embedder, a fine-tuned classifier whose
description nests an embedder, an ensemble classifier holding scikit-learn objects): truncations, byte flips,
member swaps, edits of meta.json's values, shapes, dtypes, kinds and class names, and edits of the stored tensors.
They run in one child process under a memory ceiling (tests/_bounded.py), so a mutation that makes the loader
allocate gigabytes or hang fails the test rather than the machine. Any exception other than ValueError, from
load_model or read_model_info, fails it too, with the mutation that caused it.
"""

import copy
import io
import json
import random
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from _bounded import GROWTH, run_child

from skssl import MaskedAutoencoder, SSLClassifier, save_model
from skssl.datasets import make_expression

N_CASES = 500  # per run; each case is one mutated file given to load_model and to read_model_info
SEED = 20240522
TINY = dict(n_components=3, hidden_dims=(8,), max_epochs=1, random_state=0, device="cpu")


@pytest.fixture(scope="module")
def fuzz_outcomes(tmp_path_factory):
    if not sys.platform.startswith("linux"):
        pytest.skip("the memory ceiling of the fuzz needs Linux")
    folder = tmp_path_factory.mktemp("fuzz")
    X, y = make_expression(n_samples=40, n_genes=10, random_state=0)
    X = pd.DataFrame(X, columns=[f"G{i}" for i in range(X.shape[1])])
    y_semi = np.full_like(y, -1)
    for label in np.unique(y):
        y_semi[np.flatnonzero(y == label)[:2]] = label  # two labels a class: the ensemble's fast path
    embedder = MaskedAutoencoder(**TINY).fit(X)
    models = {
        "embedder": embedder,
        "finetuned": SSLClassifier(MaskedAutoencoder(**TINY), strategy="finetune", max_epochs=1, random_state=0).fit(
            X, y
        ),
        "ensemble": SSLClassifier(embedder, prefit=True, random_state=0).fit(X, y_semi),
    }
    bases = [str(save_model(model, folder / f"{name}.skssl")) for name, model in models.items()]
    results = folder / "results.jsonl"
    records, note = run_child(__file__, [folder, results, *bases], results, timeout=300)
    return records, note


def test_every_mutation_loads_or_raises_a_value_error(fuzz_outcomes):
    records, note = fuzz_outcomes
    assert len(records) == 2 * N_CASES, f"the child stopped after {len(records)} of {2 * N_CASES} outcomes ({note})"
    wrong = [entry for entry in records.values() if entry["outcome"] not in ("ok", "ValueError")]
    assert not wrong, f"{len(wrong)} mutations raised something else than ValueError; first ones: {wrong[:3]}"
    heavy = [entry for entry in records.values() if entry["growth"] >= GROWTH]
    assert not heavy, f"mutations that grew the loader's memory beyond {GROWTH} bytes: {heavy[:3]}"
    # The fuzz exercises both sides: files the mutation left loadable and files refused at many different checks.
    outcomes = [entry["outcome"] for entry in records.values()]
    assert outcomes.count("ok") >= 20 and outcomes.count("ValueError") >= N_CASES // 2
    # Messages start with the file's path or the place in its description: what follows names the check.
    checks = {entry["message"].split(": ")[-1][:40] for entry in records.values() if entry["outcome"] == "ValueError"}
    assert len(checks) >= 10


# ---------------------------------------------------------------------------------------------------------------
# The mutations (run in the child)
# ---------------------------------------------------------------------------------------------------------------

_VALUES = [None, True, False, -1, 0, 1, 7, 2**31, 2**63, 10**30, -(10**30), 1.5, -1e308, 1e308, "", "x", "auto",
           [], {}, [1, 2], [[1]], {"a": 1}, {"__kind__": "ndarray"}, {"__kind__": "tuple", "items": [10**9]},
           {"__kind__": "scalar", "dtype": "<i2", "value": 70000}, {"__kind__": "float", "value": "nan"},
           {"__kind__": "dict", "items": [[[1], 2]]}, {"__kind__": "slice", "items": [0, 10**20, None]},
           {"__kind__": "random_state", "keys": [1] * 624, "pos": 0, "cached_gaussian": [1]},
           {"__kind__": "csr", "shape": [2**62, 2**62], "data": None}, {"__kind__": "device", "value": "cuda:9"},
           {"__kind__": "estimator", "class": "MaskedAutoencoder", "params": {}}]  # fmt: skip
_DTYPES = ["<f4", "<f8", "<f2", "<i8", "|i1", "|u1", "|b1", "<c8", "<U5", "<U4096", "|O", "V8", "<M8", "garbage", 3]
_KINDS = ["ndarray", "scalar", "tuple", "dict", "slice", "device", "random_state", "csr", "estimator", "sklearn",
          "object", "state_dict", "float", "unknown"]  # fmt: skip
_CLASSES = ["MaskedAutoencoder", "VAEEmbedder", "SSLRegressor", "PCA", "Ridge", "GraphMember", "GeneViews",
            "FrozenEstimator", "os.system", "LinearMember"]  # fmt: skip


def _nodes(node, path=()):
    """Every (path, value) of a JSON tree."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _nodes(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _nodes(value, (*path, index))


def _edit_json(meta, rng):
    """``(a copy of meta with one random edit, the edit)``: a value replaced or removed, or a shape, dtype, kind or
    class edited."""
    meta = copy.deepcopy(meta)
    nodes = list(_nodes(meta))[1:]
    targeted = [(p, v) for p, v in nodes if p[-1] in ("shape", "dtype", "__kind__", "class", "items", "tensor")]
    path, value = rng.choice(targeted if targeted and rng.random() < 0.5 else nodes)
    parent = meta
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if key == "shape" and isinstance(value, list):
        choice = rng.randrange(4)
        new = [[*value, 1], [0] * len(value), [10**12] * max(len(value), 1), [-1, *value[1:]]][choice]
    elif key == "dtype":
        new = rng.choice(_DTYPES)
    elif key == "__kind__":
        new = rng.choice(_KINDS)
    elif key == "class":
        new = rng.choice(_CLASSES)
    elif key == "items" and isinstance(value, list) and value and rng.random() < 0.5:
        new = value[: rng.randrange(len(value))] if rng.random() < 0.5 else value + value[:1]
    elif isinstance(parent, dict) and rng.random() < 0.2:
        del parent[key]
        return meta, f"{list(path)} deleted"
    else:
        new = copy.deepcopy(rng.choice(_VALUES))
    parent[key] = new
    return meta, f"{list(path)} = {json.dumps(new)[:80]}"


def _edit_tensors(tensors, rng):
    """One random edit of a copy of the stored tensors: shape, dtype, values, a tensor removed or added."""
    tensors = dict(tensors)
    key = rng.choice(sorted(tensors))
    tensor = tensors[key]
    choice = rng.randrange(7)
    if choice == 0:
        tensors[key] = torch.zeros(tensor.numel() + 1)
    elif choice == 1:
        tensors[key] = tensor.to(rng.choice([torch.float64, torch.int64, torch.bool, torch.complex64, torch.uint8]))
    elif choice == 2 and tensor.is_floating_point() and tensor.numel():
        tensors[key] = tensor.clone().fill_(rng.choice([float("nan"), float("inf"), 0.0, -1.0]))
    elif choice == 3:
        tensors[key] = tensor.reshape(-1)
    elif choice == 4:
        del tensors[key]
    elif choice == 5:
        tensors["extra"] = torch.zeros(3)
    else:
        tensors[key] = torch.tensor(1.0)
    return tensors


def _archive(members):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members:
            method = zipfile.ZIP_DEFLATED if name == "meta.json" else zipfile.ZIP_STORED
            archive.writestr(name, content, compress_type=method)
    return buffer.getvalue()


def _mutated(raw, meta, tensors, rng):
    """``(what was done, the bytes of a mutated file)``."""
    meta_bytes = json.dumps(meta).encode()
    choice = rng.randrange(8)
    if choice == 0:
        cut = rng.randrange(len(raw))
        return f"truncated at {cut}", raw[:cut]
    if choice == 1:
        content = bytearray(raw)
        offsets = [rng.randrange(len(content)) for _ in range(rng.randint(1, 8))]
        for offset in offsets:
            content[offset] ^= rng.randrange(1, 256)
        return f"bytes flipped at {offsets}", bytes(content)
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    tensor_bytes = buffer.getvalue()
    if choice == 2:
        swaps = [
            [("meta.json", tensor_bytes), ("tensors.pt", meta_bytes)],
            [("meta.json", meta_bytes)],
            [("tensors.pt", tensor_bytes)],
            [("meta.json", meta_bytes), ("tensors.pt", tensor_bytes), ("meta.json", meta_bytes)],
            [("meta.json", meta_bytes), ("tensors.pt", meta_bytes)],
            [("meta.json", meta_bytes), ("tensors.pt", b"")],
        ]
        index = rng.randrange(len(swaps))
        return f"members swapped ({index})", _archive(swaps[index])
    if choice == 3:
        content = bytearray(meta_bytes)
        offsets = [rng.randrange(len(content)) for _ in range(rng.randint(1, 4))]
        for offset in offsets:
            content[offset] = rng.choice(b'{}[]",:0123456789-.eE tfn')
        return f"meta.json bytes replaced at {offsets}", _archive(
            [("meta.json", bytes(content)), ("tensors.pt", tensor_bytes)]
        )
    if choice in (4, 5, 6):
        edited, edits = meta, []
        for _ in range(rng.randint(1, 3)):
            edited, edit = _edit_json(edited, rng)
            edits.append(edit)
        edit = "; ".join(edits)
        return f"meta.json edited: {edit}", _archive(
            [("meta.json", json.dumps(edited).encode()), ("tensors.pt", tensor_bytes)]
        )
    buffer = io.BytesIO()
    torch.save(_edit_tensors(tensors, rng), buffer)
    return "tensors edited", _archive([("meta.json", meta_bytes), ("tensors.pt", buffer.getvalue())])


def _child(folder, results, *bases):
    import warnings
    from pathlib import Path

    from _bounded import cap_address_space, record

    import skssl

    warnings.simplefilter("ignore")  # e.g. scikit-learn's warnings about mutated parameters: not the subject here
    sources = []
    for base in bases:
        raw = Path(base).read_bytes()
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            meta = json.loads(archive.read("meta.json"))
            tensors = torch.load(io.BytesIO(archive.read("tensors.pt")), weights_only=True)
        sources.append((Path(base).stem, raw, meta, tensors))
    cap_address_space()
    rng = random.Random(SEED)
    path = Path(folder) / "mutated.skssl"
    with open(results, "w") as out:
        for case in range(N_CASES):
            name, raw, meta, tensors = rng.choice(sources)
            what, content = _mutated(raw, meta, tensors, rng)
            path.write_bytes(content)
            label = f"{case} {name}: {what}"
            record(out, f"{label} / load_model", lambda: skssl.load_model(path))
            record(out, f"{label} / read_model_info", lambda: skssl.read_model_info(path))


if __name__ == "__main__":
    _child(*sys.argv[1:])
