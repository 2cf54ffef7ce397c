"""load_model / read_model_info on hostile files: bounded memory and time, and a ValueError that blames the file.

Each file here is a few kilobytes that the previous loader turned into gigabytes, an endless read or a blocked
open, or loaded although its values were unusable (a few cases guard checks added with the fixes). The memory
cases run in one child process under an address-space ceiling (tests/_bounded.py), so that a regression fails
here instead of exhausting the machine.
"""

import io
import json
import os
import struct
import sys
import zipfile
import zlib

import pandas as pd
import pytest
import torch
from _bounded import GROWTH, run_child

from skssl import MaskedAutoencoder, SSLClassifier, load_model, read_model_info, save_model
from skssl.datasets import make_expression
from skssl.persistence import MAX_BYTES, MAX_META_BYTES

TINY = dict(n_components=4, hidden_dims=(16,), max_epochs=1, random_state=0, device="cpu")
MIB = 1024**2


@pytest.fixture(scope="module")
def data():
    X, y = make_expression(n_samples=40, n_genes=12, random_state=0)
    return pd.DataFrame(X, columns=[f"G{i}" for i in range(X.shape[1])]), y


@pytest.fixture(scope="module")
def valid(data, tmp_path_factory):
    """A small valid model file, and its meta.json and tensors.pt."""
    path = tmp_path_factory.mktemp("valid") / "model.skssl"
    save_model(MaskedAutoencoder(**TINY).fit(data[0]), path)
    with zipfile.ZipFile(path) as archive:
        return path, json.loads(archive.read("meta.json")), archive.read("tensors.pt")


def _write(path, meta, tensors):
    """A model file of ``meta`` (a dict) and ``tensors`` (a dict of tensors, or the raw bytes of tensors.pt)."""
    if isinstance(tensors, dict):
        buffer = io.BytesIO()
        torch.save(tensors, buffer)
        tensors = buffer.getvalue()
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("meta.json", json.dumps(meta), compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr("tensors.pt", tensors)
    return path


def _edited(valid, path, edit):
    """The valid file with ``edit(meta, tensors)`` applied."""
    _, meta, raw = valid
    meta = json.loads(json.dumps(meta))
    tensors = torch.load(io.BytesIO(raw), weights_only=True)
    edit(meta, tensors)
    return _write(path, meta, tensors)


def _attributes(meta):
    return meta["estimator"]["attributes"]


# ---------------------------------------------------------------------------------------------------------------
# Crafted archives: members whose zip directory declares (or hides) gigabytes
# ---------------------------------------------------------------------------------------------------------------


def _repeated_deflate(prefix, filler, n_mib):
    """A raw deflate stream of ``prefix`` then ``n_mib`` MiB of ``filler`` bytes, a few KB long: each MiB block
    follows a full flush (no reference to earlier data), so one compressed block is repeated."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = compressor.compress(prefix) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(filler * MIB) + compressor.flush(zlib.Z_FULL_FLUSH)
    return head + block * n_mib + compressor.flush(zlib.Z_FINISH), len(prefix) + n_mib * MIB


def _crafted_zip(path, members):
    """Write a zip archive of ``(name, stored bytes, method, declared size)`` members. The CRC of a deflated member
    is left 0: a loader that reads it to its end reports the mismatch, one that refuses it first never gets there."""
    body, directory = bytearray(), bytearray()
    for name, data, method, size in members:
        offset, encoded = len(body), name.encode()
        crc = zlib.crc32(data) if method == zipfile.ZIP_STORED else 0
        body += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0, crc, len(data), size, len(encoded), 0)
        body += encoded + data
        sizes = (crc, len(data), size, len(encoded))  # CRC, stored size, declared size, name length
        directory += struct.pack(
            "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0, *sizes, 0, 0, 0, 0, 0, offset
        )
        directory += encoded
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(directory), len(body), 0)
    path.write_bytes(bytes(body + directory + end))
    return path


def _stored(name, data):
    return (name, data, zipfile.ZIP_STORED, len(data))


def _tensor_bomb(valid, path):
    """Valid meta.json; tensors.pt deflated, inflating (and declaring) just over MAX_BYTES."""
    _, meta, _ = valid
    bomb, size = _repeated_deflate(b"", b"\0", MAX_BYTES // MIB + 64)
    members = [_stored("meta.json", json.dumps(meta).encode()), ("tensors.pt", bomb, zipfile.ZIP_DEFLATED, size)]
    return _crafted_zip(path, members)


def _meta_bomb(valid, path, declared=None):
    """meta.json: the valid description followed by 2 GiB of spaces (valid JSON), deflated to a few KB."""
    _, meta, raw = valid
    bomb, size = _repeated_deflate(json.dumps(meta).encode(), b" ", 2048)
    return _crafted_zip(
        path, [("meta.json", bomb, 8, size if declared is None else declared), _stored("tensors.pt", raw)]
    )


def _legacy_container(valid, path):
    """tensors.pt in torch's pre-1.6 container, whose pickle declares each storage's size before its data."""
    _, meta, raw = valid
    buffer = io.BytesIO()
    torch.save(torch.load(io.BytesIO(raw), weights_only=True), buffer, _use_new_zipfile_serialization=False)
    return _write(path, meta, buffer.getvalue())


def _pickle_bomb(valid, path):
    """tensors.pt whose pickle is 5 MiB of EMPTY_LIST opcodes: each byte a 56-byte list once unpickled."""
    _, meta, raw = valid
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw)) as source, zipfile.ZipFile(buffer, "w") as container:
        for record in source.infolist():
            content = source.read(record)
            if record.filename.endswith("data.pkl"):
                content = b"\x80\x02" + b"]" * (5 * MIB) + b"."
            container.writestr(record.filename, content)
    return _write(path, meta, buffer.getvalue())


def _oversized_record(valid, path):
    """tensors.pt's own zip directory declares a record of 2 GB (torch allocates a record at its declared size)."""
    _, meta, raw = valid
    raw = bytearray(raw)
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as container:
        name = max(container.infolist(), key=lambda info: info.file_size).filename.encode()
    entry = raw.find(b"PK\x01\x02")  # the central directory's records: fixed 46 bytes, then the name
    while raw[entry + 46 : entry + 46 + len(name)] != name:
        entry = raw.find(b"PK\x01\x02", entry + 1)
    raw[entry + 24 : entry + 28] = struct.pack("<I", 2 * 10**9)  # the record's declared uncompressed size
    return _write(path, meta, bytes(raw))


# ---------------------------------------------------------------------------------------------------------------
# The memory and blocking cases, in one child process under a ceiling
# ---------------------------------------------------------------------------------------------------------------


def _wide_layers(meta, tensors):
    # 8 KB that declare 2 000 hidden layers of 1 000 units: 8 GB of weights for the old loader to build.
    _attributes(meta)["hidden_dims_"] = {"__kind__": "tuple", "items": [1000] * 2000}
    meta["estimator"]["params"]["hidden_dims"] = [1000] * 2000


def _wide_input(meta, tensors):
    _attributes(meta)["n_features_in_"] = 2 * 10**7


def _wide_names(meta, tensors):
    # 150 000 empty names as 4 096-character strings: 2.5 GB for a file of kilobytes.
    _attributes(meta)["n_features_in_"] = 150_000
    _attributes(meta)["feature_names_in_"] = {
        "__kind__": "ndarray",
        "dtype": "<U4096",
        "shape": [150_000],
        "items": [""] * 150_000,
    }


def _many_lists(meta, tensors):
    # 6 MB of "[]," (under MAX_META_BYTES): two million lists, 150 MB of Python objects once parsed.
    meta["metadata"] = {"notes": [[]] * 2_000_000}


def _many_members(valid, path):
    """The valid members and a thousand empty ones: zipfile would build an object for every directory entry."""
    _, meta, raw = valid
    fillers = [_stored(f"filler{i}", b"") for i in range(1000)]
    return _crafted_zip(path, [_stored("meta.json", json.dumps(meta).encode()), _stored("tensors.pt", raw), *fillers])


MEMORY_CASES = {
    # case: (how the file is made, the function called, the outcome, a pattern its message must contain)
    "wide_layers": (lambda valid, path: _edited(valid, path, _wide_layers), "load_model", "hidden_dims_ declares"),
    "wide_input": (lambda valid, path: _edited(valid, path, _wide_input), "load_model", "n_features_in_=20000000"),
    "wide_names": (lambda valid, path: _edited(valid, path, _wide_names), "load_model", "far more memory"),
    "wide_names_info": (lambda valid, path: _edited(valid, path, _wide_names), "read_model_info", "far more memory"),
    "tensor_bomb": (_tensor_bomb, "load_model", f"tensors.pt declares {MAX_BYTES // MIB * MIB + 64 * MIB} bytes"),
    "tensor_bomb_info": (_tensor_bomb, "read_model_info", None),  # reads meta.json only: succeeds
    "meta_bomb": (_meta_bomb, "load_model", f"over the limit of {MAX_META_BYTES} bytes"),
    "meta_bomb_info": (_meta_bomb, "read_model_info", f"over the limit of {MAX_META_BYTES} bytes"),
    # The zip directory understates the size: the read stops at the declared size (and the CRC check fails).
    "meta_bomb_understated": (lambda valid, path: _meta_bomb(valid, path, declared=4096), "load_model", "corrupt"),
    "many_members": (_many_members, "read_model_info", "lists 1002 members"),
    "json_containers": (lambda valid, path: _edited(valid, path, _many_lists), "read_model_info", "lists and objects"),
    "legacy_container": (_legacy_container, "load_model", "not in torch's zip container"),
    "pickle_bomb": (_pickle_bomb, "load_model", "holds a pickle of"),
    "oversized_record": (_oversized_record, "load_model", "declares records larger than itself"),
    "dev_zero": (lambda valid, path: os.symlink("/dev/zero", path) or path, "load_model", "not a regular file"),
    "directory": (lambda valid, path: path.mkdir() or path, "load_model", "is a directory"),
    # Last: the old loader blocks here forever, and the child is killed at its timeout.
    "fifo": (lambda valid, path: os.mkfifo(path) or path, "load_model", "FIFO"),
}


@pytest.fixture(scope="module")
def outcomes(valid, tmp_path_factory):
    if not sys.platform.startswith("linux") or not os.path.exists("/dev/zero"):
        pytest.skip("the memory ceiling of these cases needs Linux")
    folder = tmp_path_factory.mktemp("hostile")
    manifest = [
        [case, function, str(make(valid, folder / f"{case}.skssl"))]
        for case, (make, function, _) in MEMORY_CASES.items()
    ]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    results = folder / "results.jsonl"
    records, note = run_child(__file__, [folder / "manifest.json", results], results, timeout=180)
    return records, note


@pytest.mark.parametrize("case", list(MEMORY_CASES))
def test_hostile_file_is_refused_within_bounds(case, outcomes):
    records, note = outcomes
    assert case in records, f"the child recorded no outcome for {case!r} ({note})"
    entry = records[case]
    expected = MEMORY_CASES[case][2]
    if expected is None:
        assert entry["outcome"] == "ok", entry
    else:
        assert entry["outcome"] == "ValueError", entry
        assert expected in entry["message"], entry
    assert entry["growth"] < GROWTH, entry


def _child(manifest, results):
    from _bounded import cap_address_space, record

    import skssl

    functions = {"load_model": skssl.load_model, "read_model_info": skssl.read_model_info}
    cap_address_space()
    with open(results, "w") as out:
        for case, function, path in json.loads(open(manifest).read()):
            record(out, case, lambda function=function, path=path: functions[function](path))


# ---------------------------------------------------------------------------------------------------------------
# Values: what loaded and then failed silently, or blamed the user's input
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0.0, float("nan")])
def test_refuses_an_unusable_embedding_scale(valid, tmp_path, value):
    def edit(meta, tensors):
        key = _attributes(meta)["embedding_scale_"]["tensor"]
        tensors[key] = torch.full_like(tensors[key], value)

    path = _edited(valid, tmp_path / "m.skssl", edit)
    with pytest.raises(ValueError, match=r"embedding_scale_: holds zero, negative, NaN or infinite.*file is corrupt"):
        load_model(path)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_refuses_non_finite_weights(valid, tmp_path, value):
    def edit(meta, tensors):
        key = meta["estimator"]["module"]["tensors"]["encoder.0.weight"]
        tensors[key][0, 0] = value

    path = _edited(valid, tmp_path / "m.skssl", edit)
    with pytest.raises(ValueError, match=r"encoder\.0\.weight: the stored network weights hold NaN or infinite"):
        load_model(path)


def test_refuses_a_non_finite_whitening(valid, tmp_path):
    def edit(meta, tensors):
        key = _attributes(meta)["embedding_whitening_"]["tensor"]
        tensors[key][1, 1] = float("nan")

    with pytest.raises(ValueError, match="embedding_whitening_: holds NaN"):
        load_model(_edited(valid, tmp_path / "m.skssl", edit))


def test_refuses_an_embedder_without_its_network(valid, tmp_path):
    def edit(meta, tensors):
        for key in meta["estimator"].pop("module")["tensors"].values():
            del tensors[key]

    with pytest.raises(ValueError, match="the network is missing"):
        load_model(_edited(valid, tmp_path / "m.skssl", edit))  # the previous loader returned an embedder without one


def test_refuses_parameters_that_disagree_with_the_fitted_network(valid, tmp_path):
    def huge_hidden_dims(meta, tensors):
        meta["estimator"]["params"]["hidden_dims"] = [10**9]

    with pytest.raises(ValueError, match=r"hidden_dims=\[1000000000\] disagrees with the fitted hidden_dims_=\(16,\)"):
        load_model(_edited(valid, tmp_path / "a.skssl", huge_hidden_dims))

    def other_n_components(meta, tensors):
        _attributes(meta)["n_components_"] = 3  # the parameter and the stored network say 4

    with pytest.raises(ValueError, match="n_components=4 disagrees with the fitted n_components_=3"):
        load_model(_edited(valid, tmp_path / "b.skssl", other_n_components))


def test_refuses_an_embedder_parameter_that_disagrees_with_the_fitted_embedder(data, tmp_path):
    X, y = data
    path = tmp_path / "clf.skssl"
    save_model(
        SSLClassifier(MaskedAutoencoder(**TINY), strategy="finetune", max_epochs=1, random_state=0).fit(X, y), path
    )
    with zipfile.ZipFile(path) as archive:
        meta, raw = json.loads(archive.read("meta.json")), archive.read("tensors.pt")
    meta["estimator"]["params"]["embedder"]["params"]["hidden_dims"] = [10**9]  # what a refit would build
    with pytest.raises(ValueError, match=r"embedder: the parameter hidden_dims=\[1000000000\] disagrees"):
        load_model(_write(path, meta, raw))


def test_a_checkpoint_path_is_neither_written_nor_read(data, valid, tmp_path):
    fitted = MaskedAutoencoder(**TINY).fit(data[0])
    fitted.checkpoint = str(tmp_path / "run.ckpt")  # fitted with checkpoint=...: a path of this machine
    path = save_model(fitted, tmp_path / "a.skssl")
    with zipfile.ZipFile(path) as archive:
        assert json.loads(archive.read("meta.json"))["estimator"]["params"]["checkpoint"] is None
    assert load_model(path).checkpoint is None

    def planted(meta, tensors):
        meta["estimator"]["params"]["checkpoint"] = "/home/victim/.bashrc"  # where a refit would write

    assert load_model(_edited(valid, tmp_path / "b.skssl", planted)).checkpoint is None


@pytest.mark.parametrize(
    "scalar",
    [
        {"__kind__": "scalar", "dtype": "|i1", "value": 300},
        {"__kind__": "scalar", "dtype": "<u4", "value": -1},
        {"__kind__": "scalar", "dtype": "<f4", "value": 1e300},
        {"__kind__": "scalar", "dtype": "<i8", "value": 1.5},
        {"__kind__": "scalar", "dtype": "<f8", "value": [1.0, 2.0]},
    ],
    ids=["int8-300", "uint32-minus-1", "float32-1e300", "int64-1.5", "float64-list"],
)
def test_a_scalar_outside_its_dtype_is_a_value_error(valid, tmp_path, scalar):
    def edit(meta, tensors):
        meta["estimator"]["params"]["random_state"] = scalar

    with pytest.raises(ValueError, match=r"params\.random_state|random_state: "):
        load_model(_edited(valid, tmp_path / "m.skssl", edit))


def test_deeply_nested_names_are_a_value_error_for_both_readers(valid, tmp_path):
    def edit(meta, tensors):
        nested = ["G0"]
        for _ in range(600):  # far below json's own limit, far above any valid model's nesting (about 15)
            nested = [nested]
        _attributes(meta)["feature_names_in_"]["items"][0] = nested

    path = _edited(valid, tmp_path / "m.skssl", edit)
    for reader in (read_model_info, load_model):
        with pytest.raises(ValueError, match="nested too deeply"):
            reader(path)


def test_read_model_info_reads_no_tensor(valid, tmp_path):
    path = _write(tmp_path / "m.skssl", valid[1], b"not a tensor file at all")
    assert read_model_info(path)["estimator"] == "MaskedAutoencoder"
    with pytest.raises(ValueError, match="not in torch's zip container"):
        load_model(path)


def test_max_bytes_bounds_the_file_and_can_be_raised(valid):
    path = valid[0]
    size = sum(info.file_size for info in zipfile.ZipFile(path).infolist())
    with pytest.raises(ValueError, match=r"tensors\.pt declares \d+ bytes, over the limit.*pass a larger max_bytes"):
        load_model(path, max_bytes=size - 1)
    assert load_model(path, max_bytes=size).n_features_in_ == 12
    for invalid in (0, -1, 1.5, "1GB", True):
        with pytest.raises(ValueError, match="max_bytes must be a positive integer"):
            load_model(path, max_bytes=invalid)


if __name__ == "__main__":
    _child(*sys.argv[1:])
