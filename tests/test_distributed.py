"""Data-parallel pre-training over torch.distributed (gloo, CPU, 2 processes started by the test).

The test starts two worker processes once (this file run as a script) that join a gloo process group through a file
store and fit every embedder on the same memory-mapped matrix, then fit once more with rank 1 failing midway; the
test process fits the same estimators in one process and compares. Rows read are counted by wrapping
``skssl._reading.read_rows`` (the one function through which every batch is read from the matrix). The data is tiny and
the batches uneven on purpose: a global batch of 9 rows is cut into shards of 4 and 5 rows, and the 2-row remainder
batch into shards of 1 row.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from skssl import ContrastiveEmbedder, MaskedAutoencoder, VAEEmbedder

ROOT = Path(__file__).resolve().parents[1]
WORLD_SIZE = 2
N_ROWS, N_GENES = 72, 12
PROCESS_GROUP_TIMEOUT_S = 30  # the bound on a rank's wait for a peer that stopped answering
FAILING_READ = 5  # rank 1 fails on its 5th batch read in the last fit (mid first epoch)
COMMON = dict(
    n_components=4, hidden_dims=(16,), batch_size=9, max_epochs=3, n_iter_no_change=2, random_state=0, device="cpu"
)
EMBEDDERS = {
    "scarf": lambda: ContrastiveEmbedder(**COMMON),
    "byol": lambda: ContrastiveEmbedder(objective="byol", **COMMON),
    "vime": lambda: MaskedAutoencoder(**COMMON),
    "vae": lambda: VAEEmbedder(**COMMON),
}


# ---------------------------------------------------------------------------------------------------- workers
class ReadLog:
    """Wraps ``skssl._reading.read_rows``: records the rows of every batch read (index arrays) and counts the rows of
    sequential passes (slices: the statistics passes); optionally raises on the n-th batch read."""

    def __init__(self, fail_at=None):
        from skssl import _reading

        self._reading, self._original = _reading, _reading.read_rows
        self.batches, self.sequential_rows, self.fail_at = [], 0, fail_at
        _reading.read_rows = self

    def __call__(self, X, rows):
        if isinstance(rows, slice):
            self.sequential_rows += len(range(*rows.indices(X.shape[0])))
        else:
            self.batches.append(np.asarray(rows).tolist())
            if self.fail_at is not None and len(self.batches) >= self.fail_at:
                raise OSError("disk unplugged (injected failure)")
        return self._original(X, rows)

    def close(self):
        self._reading.read_rows = self._original


def fit_record(name, X, read_log):
    """Fit embedder ``name`` on X; return what the comparisons need (weights, history, rows read)."""
    read_log.batches, read_log.sequential_rows = [], 0
    embedder = EMBEDDERS[name]().fit(X)
    # Before any training, fit's input checks read one evenly spaced sample of rows
    # (skssl._input_checks._row_sample) on every rank; the batches compared below are those of training and validation.
    from skssl import _input_checks

    n_rows, n_cols = X.shape
    k = min(n_rows, _input_checks._SAMPLE_ROWS, max(8, _input_checks._SAMPLE_VALUES // n_cols))
    check_sample = np.unique(np.linspace(0, n_rows - 1, k).round().astype(np.int64)).tolist()
    assert read_log.batches[0] == check_sample
    del read_log.batches[0]
    return {
        "state": {k: v.detach().clone() for k, v in embedder.module_.state_dict().items()},
        "history": embedder.history_,
        "n_iter": embedder.n_iter_,
        "best_epoch": embedder.best_epoch_,
        "embedding": (embedder.embedding_mean_, embedder.embedding_scale_, embedder.embedding_whitening_),
        "transform": embedder.transform(X[:10]),
        "batches": read_log.batches,
        "sequential_rows": read_log.sequential_rows,
    }


def worker(rank, init_file, data_path, out_dir):
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=WORLD_SIZE,
        timeout=__import__("datetime").timedelta(seconds=PROCESS_GROUP_TIMEOUT_S),
    )
    X = np.load(data_path, mmap_mode="r")
    read_log = ReadLog()
    torch.save({name: fit_record(name, X, read_log) for name in EMBEDDERS}, Path(out_dir, f"rank{rank}.pt"))
    # The failure case: rank 1's reads fail mid-fit.
    read_log.batches, read_log.fail_at = [], FAILING_READ if rank == 1 else None
    start = time.monotonic()
    try:
        EMBEDDERS["vime"]().fit(X)
        outcome = {"error": None}
    except Exception as exc:
        outcome = {"error": f"{type(exc).__name__}: {exc}"}
    outcome["seconds"] = time.monotonic() - start
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(outcome))
    os._exit(1 if outcome["error"] else 0)  # as an uncaught exception ends a process (no wait on the process group)


def run_workers(tmp_path, timeout=150):
    """Start the two ranks, wait for both (at most ``timeout`` seconds); return their exit codes and the time."""
    X = np.random.default_rng(0).lognormal(size=(N_ROWS, N_GENES)).astype(np.float32)
    data_path = tmp_path / "X.npy"
    np.save(data_path, X)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME", "lo")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    args = [str(tmp_path / "store"), str(data_path), str(tmp_path)]
    start = time.monotonic()
    processes = [
        subprocess.Popen([sys.executable, __file__, str(rank), *args], env=env, stderr=subprocess.PIPE, text=True)
        for rank in range(WORLD_SIZE)
    ]
    try:
        errors = [p.communicate(timeout=timeout)[1] for p in processes]
    finally:
        for p in processes:  # a hung rank must not outlive the test
            if p.poll() is None:
                p.kill()
    return [p.returncode for p in processes], errors, time.monotonic() - start, np.load(data_path, mmap_mode="r")


# ---------------------------------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def workers(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ddp")
    codes, errors, seconds, X = run_workers(tmp_path)
    return tmp_path, codes, errors, seconds, X


@pytest.fixture(scope="module")
def two_ranks(workers):
    tmp_path, _, errors, _, X = workers
    missing = [r for r in range(WORLD_SIZE) if not (tmp_path / f"rank{r}.pt").exists()]
    assert not missing, "\n".join(errors)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD_SIZE)]
    read_log = ReadLog()
    try:
        single = {name: fit_record(name, X, read_log) for name in EMBEDDERS}
    finally:
        read_log.close()
    return ranks, single


@pytest.mark.parametrize("name", list(EMBEDDERS))
def test_two_processes_fit_the_weights_of_one(two_ranks, name):
    ranks, single = two_ranks
    rank0, rank1, one = ranks[0][name], ranks[1][name], single[name]
    # Every rank holds the same fitted estimator, bit for bit.
    for key in rank0["state"]:
        assert torch.equal(rank0["state"][key], rank1["state"][key]), key
    np.testing.assert_array_equal(rank0["transform"], rank1["transform"])
    # ... and it is the one-process fit, up to float rounding (gradients summed in another order).
    assert rank0["n_iter"] == one["n_iter"] and rank0["best_epoch"] == one["best_epoch"]
    assert set(rank0["state"]) == set(one["state"])
    for key, value in one["state"].items():
        torch.testing.assert_close(rank0["state"][key], value, rtol=1e-4, atol=1e-5, msg=key)
    for key in ("train_loss", "validation_loss"):
        np.testing.assert_allclose(rank0["history"][key], one["history"][key], rtol=1e-5)
    for fitted, reference in zip(rank0["embedding"], one["embedding"]):
        np.testing.assert_allclose(fitted, reference, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(rank0["transform"], one["transform"], rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("name", list(EMBEDDERS))
def test_each_rank_reads_only_its_shard_of_each_batch(two_ranks, name):
    ranks, single = two_ranks
    one_batches = single[name]["batches"]
    rank_batches = [ranks[r][name]["batches"] for r in range(WORLD_SIZE)]
    assert len(one_batches) > 10  # training and validation batches of 3 epochs
    assert [len(b) for b in rank_batches] == [len(one_batches)] * WORLD_SIZE
    for k, rows in enumerate(one_batches):
        half = len(rows) // 2  # rank 0 reads the first half of the sorted batch, rank 1 the rest
        assert rank_batches[0][k] == rows[:half] and rank_batches[1][k] == rows[half:], k
    n_read = [sum(map(len, b)) for b in rank_batches]
    assert sum(n_read) == sum(map(len, one_batches)) and abs(n_read[0] - n_read[1]) <= len(one_batches)
    # The statistics passes (feature scales before training, embedding statistics after) read the whole matrix
    # sequentially on every rank, as one process does.
    assert [ranks[r][name]["sequential_rows"] for r in range(WORLD_SIZE)] == [single[name]["sequential_rows"]] * 2


def test_a_failing_rank_stops_the_others_with_a_clear_error(workers):
    tmp_path, codes, errors, seconds, _ = workers
    outcomes = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD_SIZE)]
    assert codes == [1, 1], "\n".join(errors)
    assert outcomes[1]["error"] == "OSError: disk unplugged (injected failure)"
    message = outcomes[0]["error"]
    assert message.startswith("RuntimeError: MaskedAutoencoder: data-parallel fit stopped on rank 0 of 2")
    assert "rank 1 failed: OSError: disk unplugged (injected failure)" in message
    # Rank 0 learns of the failure when rank 1's connection closes, well within the process group's timeout.
    assert outcomes[0]["seconds"] < PROCESS_GROUP_TIMEOUT_S and seconds < 120


if __name__ == "__main__":  # a worker: rank, init file, data, output folder, mode
    worker(int(sys.argv[1]), *sys.argv[2:])
