"""The benchmark's journal: every finished run's row, appended as it finishes, so that a killed run can resume.

Two files in the output folder:

- ``journal.jsonl``: one JSON object per finished run (a row of ``results.csv``, floats written exactly), appended
  with flush + fsync, so that a process killed outright loses at most the run in progress. A kill in the middle of
  an append leaves a torn last line (no newline, or not valid JSON): it is ignored, and cut off before appending.
- ``journal_config.json``: the configuration the runs belong to (data fingerprint, methods, fractions, seeds,
  parameters, versions), written atomically. ``--resume`` refuses a journal of another configuration, naming the
  options that differ.

A run is one (seed, method, fraction): one row. Its randomness depends on its seed alone (every estimator and
split is seeded from it), and the shared pre-training of its seed is fitted again when a resumed run needs it,
so skipping finished runs changes no other run's result.
"""

from __future__ import annotations

import json
import os

import numpy as np

from .._atomic import atomic_write

JOURNAL_FILE = "journal.jsonl"
CONFIG_FILE = "journal_config.json"

#: Configuration entries and the command-line option a user would change to change them (for error messages).
CONFIG_OPTIONS = {
    "dataset": "--data",
    "data_sha256": "--data / --labels / --label-column / --log1p (the data themselves)",
    "methods": "--methods",
    "fractions": "--fractions",
    "seeds": "--seeds",
    "test_size": "--test-size",
    "top_genes": "--top-genes",
    "embedder_params": "--max-epochs / --quick (embedder parameters)",
    "classifier_params": "--max-epochs / --quick (classifier parameters)",
    "device": "--device",
    "skssl_version": "the installed skssl version",
    "torch_version": "the installed torch version",
}


def run_key(record):
    """The key of a run: (seed, method, fraction)."""
    return int(record["seed"]), str(record["method"]), float(record["fraction"])


def _plain(config):
    # Compare what was written with what would be written: tuples become lists, keys strings.
    return json.loads(json.dumps(config, sort_keys=True))


def read_journal(path):
    """The records of the complete lines of ``path`` and the byte length of those lines.

    An append writes a whole line ending in a newline, so only a trailing fragment without a newline can be torn
    (the process was killed mid-append): it is ignored. Any other unreadable line means the file was edited or
    damaged, which resuming cannot repair: a ValueError says so.
    """
    with open(path, "rb") as f:
        data = f.read()
    *lines, torn = data.split(b"\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            run_key(record)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"{path}, line {number}, is not a run record ({exc}); the journal was edited or damaged. Run "
                "without --resume to start over."
            ) from None
        records.append(record)
    return records, len(data) - len(torn)


class Journal:
    """Append-only record of finished runs (see the module docstring); use as a context manager."""

    def __init__(self, out, config, *, resume):
        self.out = os.fspath(out)
        self.path = os.path.join(self.out, JOURNAL_FILE)
        self.config_path = os.path.join(self.out, CONFIG_FILE)
        self.config = _plain(config)
        self.records = []
        self.note = None
        os.makedirs(self.out, exist_ok=True)
        if resume and self._load():
            return
        # A fresh start: the configuration first, then an empty journal, each replacing the old one atomically.
        with atomic_write(self.config_path) as f:
            json.dump(self.config, f, indent=2, sort_keys=True)
            f.write("\n")
        with atomic_write(self.path) as f:
            pass

    def _load(self):
        """Read a journal to resume; False when there is none to resume (then the run starts afresh)."""
        has_journal, has_config = os.path.exists(self.path), os.path.exists(self.config_path)
        if not has_journal and not has_config:
            self.note = f"nothing to resume in {self.out} (no {JOURNAL_FILE}): starting from the first run"
            return False
        if not has_config:
            raise ValueError(
                f"--resume: {self.path} has no {CONFIG_FILE} beside it, so it cannot be checked against this "
                "configuration. Run without --resume to start over (the journal is then replaced)."
            )
        with open(self.config_path, encoding="utf-8") as f:
            try:
                stored = json.load(f)
            except ValueError as exc:
                raise ValueError(f"--resume: {self.config_path} is not valid JSON ({exc}).") from None
        differ = [key for key in sorted(set(stored) | set(self.config)) if stored.get(key) != self.config.get(key)]
        if differ:
            details = "; ".join(
                f"{CONFIG_OPTIONS.get(key, key)}: journal {json.dumps(stored.get(key))}, "
                f"now {json.dumps(self.config.get(key))}"
                for key in differ
            )
            raise ValueError(
                f"--resume: the journal in {self.out} belongs to another configuration ({details}). Resume with the "
                "same options, use another --out, or run without --resume to start over (the journal is then "
                "replaced)."
            )
        if not has_journal:
            self.note = f"nothing to resume in {self.out} (no {JOURNAL_FILE}): starting from the first run"
            with atomic_write(self.path) as f:
                pass
            return True
        records, good_end = read_journal(self.path)
        if good_end < os.path.getsize(self.path):
            # Cut the torn line off, so the next append starts on a line of its own.
            os.truncate(self.path, good_end)
        by_key = {}
        for record in records:
            by_key[run_key(record)] = record  # a run recorded twice (cannot happen by appending) counts once
        self.records = list(by_key.values())
        return True

    @property
    def finished(self):
        """Keys of the finished runs."""
        return {run_key(record) for record in self.records}

    def __enter__(self):
        self._file = open(self.path, "a", encoding="utf-8", newline="\n")  # appending, never replacing
        return self

    def __exit__(self, *exc):
        self._file.close()
        return False

    def append(self, record):
        """Record a finished run: one line, flushed and fsynced before the next run starts."""
        line = json.dumps({k: v.item() if isinstance(v, np.generic) else v for k, v in record.items()}, sort_keys=True)
        self._file.write(line + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        # Kept as read back, so that a resumed run and an uninterrupted one write results.csv from equal values.
        self.records.append(json.loads(line))
