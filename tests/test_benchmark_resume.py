"""``skssl-benchmark --resume``: a benchmark killed mid-run continues from its journal to the same results.

Results are compared cell by cell as written in results.csv (same text), every column but the two wall-time
columns (``fit_seconds``, ``pretrain_seconds``): they measure the clock, which differs between any two runs,
interrupted or not. Everything else, including every metric to the 6 significant digits of the file, must match.
"""

import ast
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skssl.benchmark import _journal, _protocol
from skssl.benchmark.__main__ import main

METHODS = ["logreg", "pca_logreg", "vime_probe"]  # two cheap baselines and a tiny embedder (--quick: 2 epochs)
SEEDS = ["0", "1", "2"]
N_RUNS = len(METHODS) * len(SEEDS) * 2  # --quick fractions: 0.25 and 1
ARGS = ["--quick", "--methods", *METHODS, "--seeds", *SEEDS, "--no-progress"]
WALL_TIME_COLUMNS = ("fit_seconds", "pretrain_seconds")
OUTPUTS = ("results.csv", "summary.csv", "macro_f1.png", "report.md")
BENCHMARK_DIR = Path(__file__).resolve().parents[1] / "skssl" / "benchmark"


def _table(path, drop=WALL_TIME_COLUMNS):
    """The cells of a CSV file as written, without the columns in ``drop``."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    keep = [i for i, name in enumerate(rows[0]) if not any(name.startswith(d) for d in drop)]
    return [[row[i] for i in keep] for row in rows]


def _journal_lines(out):
    path = out / _journal.JOURNAL_FILE
    return path.read_bytes().split(b"\n") if path.exists() else [b""]


def _keys(out):
    records, _ = _journal.read_journal(out / _journal.JOURNAL_FILE)
    return [_journal.run_key(r) for r in records]


def _copy_journal(source, target):
    target.mkdir()
    for name in (_journal.JOURNAL_FILE, _journal.CONFIG_FILE):
        shutil.copy(source / name, target / name)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run."""
    out = tmp_path_factory.mktemp("reference")
    assert main([*ARGS, "--out", str(out)]) == 0
    return out


def _assert_same_results(out, reference):
    assert _table(out / "results.csv") == _table(reference / "results.csv")
    assert _table(out / "summary.csv") == _table(reference / "summary.csv")
    assert len(_table(out / "results.csv")) == N_RUNS + 1


def test_a_killed_benchmark_resumes_to_the_results_of_an_uninterrupted_run(tmp_path, reference, capsys):
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "skssl.benchmark", *ARGS, "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Kill (SIGKILL: no clean-up of any kind) once seed 0's vime_probe has a finished run, so that the resumed
    # process must fit seed 0's embedder again for the rest, and fit seeds 1 and 2 from nothing.
    deadline = time.monotonic() + 240
    while len(_journal_lines(out)) - 1 < 5:
        assert process.poll() is None, f"the benchmark ended before it was killed: {process.stderr.read()!r}"
        assert time.monotonic() < deadline, "no run finished within 240 s"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    finished = _keys(out)
    assert 5 <= len(finished) < N_RUNS
    assert not (out / "results.csv").exists()

    assert main([*ARGS, "--out", str(out), "--resume"]) == 0
    assert f"Resuming: {len(finished)} of {N_RUNS} runs already finished" in capsys.readouterr().err
    _assert_same_results(out, reference)
    keys = _keys(out)
    assert keys[: len(finished)] == finished  # the runs of the killed process were kept, not run again,
    assert len(keys) == len(set(keys)) == N_RUNS  # and each of the others ran exactly once
    for name in OUTPUTS:
        assert (out / name).stat().st_size > 0


def test_a_torn_last_line_is_ignored(tmp_path, reference):
    out = tmp_path / "torn"
    _copy_journal(reference, out)
    lines = (out / _journal.JOURNAL_FILE).read_bytes().split(b"\n")[:N_RUNS]
    # A process killed in the middle of appending the 16th run left half of its line, without a newline.
    (out / _journal.JOURNAL_FILE).write_bytes(b"\n".join(lines[:15]) + b"\n" + lines[15][: len(lines[15]) // 2])
    records, length = _journal.read_journal(out / _journal.JOURNAL_FILE)
    assert len(records) == 15 and length == len(b"\n".join(lines[:15]) + b"\n")

    assert main([*ARGS, "--out", str(out), "--resume"]) == 0
    _assert_same_results(out, reference)
    # The fragment was cut off before appending: every line of the journal is a whole record, none twice.
    text = (out / _journal.JOURNAL_FILE).read_text()
    assert text.endswith("\n") and all(json.loads(line) for line in text.splitlines())
    keys = _keys(out)
    assert len(keys) == len(set(keys)) == N_RUNS


def test_a_damaged_line_before_the_last_is_an_error(tmp_path, reference, capsys):
    out = tmp_path / "damaged"
    _copy_journal(reference, out)
    lines = (out / _journal.JOURNAL_FILE).read_text().splitlines()
    lines[3] = lines[3][:20]
    (out / _journal.JOURNAL_FILE).write_text("\n".join(lines) + "\n")
    with pytest.raises(SystemExit) as exc:
        main([*ARGS, "--out", str(out), "--resume"])
    assert exc.value.code == 2
    assert "line 4, is not a run record" in capsys.readouterr().err


@pytest.mark.parametrize(
    "change, option, stored, now",
    [
        (["--seeds", "0", "1"], "--seeds", "[0, 1, 2]", "[0, 1]"),
        (["--methods", "logreg"], "--methods", '["logreg", "pca_logreg", "vime_probe"]', '["logreg"]'),
        (["--top-genes", "20"], "--top-genes", "null", "20"),
        (["--max-epochs", "3"], "--max-epochs / --quick (embedder parameters)", '"max_epochs": 2', '"max_epochs": 3'),
    ],
)
def test_a_different_configuration_is_refused(tmp_path, reference, capsys, change, option, stored, now):
    out = tmp_path / "other"
    _copy_journal(reference, out)
    before = (out / _journal.JOURNAL_FILE).read_bytes()
    argv = [*ARGS, "--out", str(out), "--resume"]
    position = argv.index(change[0]) if change[0] in argv else len(argv)
    if change[0] in argv:  # replace the option's values
        end = position + 1
        while end < len(argv) and not argv[end].startswith("--"):
            end += 1
        argv[position:end] = change
    else:
        argv += change
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    message = capsys.readouterr().err
    assert "belongs to another configuration" in message and f"{option}: journal " in message
    assert stored in message and now in message
    assert (out / _journal.JOURNAL_FILE).read_bytes() == before  # nothing touched
    assert not (out / "results.csv").exists()


def test_changed_data_are_refused(tmp_path, reference, capsys):
    out = tmp_path / "data"
    _copy_journal(reference, out)
    config = json.loads((out / _journal.CONFIG_FILE).read_text())
    config["data_sha256"] = "0" * 64  # as if the data file had changed under the same name
    (out / _journal.CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(SystemExit):
        main([*ARGS, "--out", str(out), "--resume"])
    assert "--data / --labels / --label-column / --log1p (the data themselves)" in capsys.readouterr().err


def _no_runs(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a run was started")

    monkeypatch.setattr(_protocol, "Run", refuse)  # built for every run, before its method fits
    monkeypatch.setattr(_protocol, "pretrain", refuse)


def test_resuming_a_finished_benchmark_runs_nothing(tmp_path, reference, monkeypatch):
    out = tmp_path / "finished"
    _copy_journal(reference, out)
    before = (out / _journal.JOURNAL_FILE).read_bytes()
    _no_runs(monkeypatch)
    assert main([*ARGS, "--out", str(out), "--resume"]) == 0
    _assert_same_results(out, reference)
    # Byte for byte, wall times included: the rows come from the journal, which nothing was appended to.
    assert (out / "results.csv").read_bytes() == (reference / "results.csv").read_bytes()
    assert (out / _journal.JOURNAL_FILE).read_bytes() == before


def test_resume_without_a_journal_starts_from_the_first_run(tmp_path, capsys):
    out = tmp_path / "new"
    assert main(["--quick", "--methods", "logreg", "--no-progress", "--out", str(out), "--resume"]) == 0
    assert "nothing to resume" in capsys.readouterr().err
    assert len(_keys(out)) == 2


def test_without_resume_the_journal_is_replaced(tmp_path, reference):
    out = tmp_path / "replaced"
    _copy_journal(reference, out)
    assert main(["--quick", "--methods", "logreg", "--no-progress", "--out", str(out)]) == 0
    assert _keys(out) == [(0, "logreg", 0.25), (0, "logreg", 1.0)]
    assert json.loads((out / _journal.CONFIG_FILE).read_text())["methods"] == ["logreg"]


def test_every_file_is_replaced_atomically(tmp_path, monkeypatch):
    replaced = []
    real_replace = os.replace

    def replace(src, dst, **kwargs):
        replaced.append(os.path.basename(dst))
        return real_replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    out = tmp_path / "atomic"
    assert main(["--quick", "--methods", "logreg", "--no-progress", "--out", str(out)]) == 0
    # Every file the benchmark leaves is a renamed temporary file; only the journal is appended to afterwards.
    assert sorted(os.listdir(out)) == sorted(set(replaced))
    assert sorted(replaced) == sorted([*OUTPUTS, _journal.JOURNAL_FILE, _journal.CONFIG_FILE])


def _open_modes(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            if name == "open":
                mode = (
                    node.args[1]
                    if len(node.args) > 1
                    else next((k.value for k in node.keywords if k.arg == "mode"), None)
                )
                yield None if mode is None else ast.literal_eval(mode)
            elif name in ("savefig", "to_csv", "write_text", "write_bytes", "dump", "save"):
                yield name


def test_the_benchmark_code_opens_no_file_for_writing():
    """Writers go through skssl._atomic; the journal's append is the one file opened for writing in place."""
    modes = {path.name: list(_open_modes(ast.parse(path.read_text()))) for path in BENCHMARK_DIR.glob("*.py")}
    writes = {name: sorted(m for m in found if m not in (None, "r", "rb")) for name, found in modes.items()}
    writes = {name: found for name, found in writes.items() if found}
    assert writes == {"_journal.py": ["a", "dump"], "_report.py": ["savefig"]}
    # ... and the plot is saved to the temporary path of atomic_path, the JSON dumped into atomic_write's file.
    report = (BENCHMARK_DIR / "_report.py").read_text()
    assert "fig.savefig(tmp," in report and "with atomic_path(path" in report
    assert "json.dump(self.config, f" in (BENCHMARK_DIR / "_journal.py").read_text()


def _interrupt_on_call(monkeypatch, module, name, call):
    real, calls = getattr(module, name), []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, interrupted)


def test_ctrl_c_in_a_fit_stops_the_benchmark_and_resume_finishes_it(tmp_path, reference, monkeypatch, capsys):
    import skssl._training as training

    out = tmp_path / "ctrl_c"
    # The third training epoch of the run is the first of seed 1's vime pre-training (2 epochs per fit): the fit
    # would end early with a FitInterruptedWarning and go on; the benchmark stops instead, and does not record a
    # run scored on that shortened fit.
    _interrupt_on_call(monkeypatch, training, "train_epoch", 3)
    assert main([*ARGS, "--out", str(out)]) == 130
    assert "interrupted; 10 of 18 runs finished" in capsys.readouterr().err
    assert _keys(out)[-1] == (1, "pca_logreg", 1.0) and len(_keys(out)) == 10
    assert not (out / "results.csv").exists()
    monkeypatch.undo()
    assert main([*ARGS, "--out", str(out), "--resume"]) == 0
    _assert_same_results(out, reference)


def test_ctrl_c_between_fits_stops_the_benchmark(tmp_path, monkeypatch, capsys):
    out = tmp_path / "ctrl_c_logreg"
    _interrupt_on_call(monkeypatch, _protocol, "score", 2)  # while scoring the second run
    assert main(["--quick", "--methods", "logreg", "--no-progress", "--out", str(out)]) == 130
    assert "1 of 2 runs finished" in capsys.readouterr().err and len(_keys(out)) == 1
