"""Progress display (verbose): an updating line on terminals and notebooks, plain lines elsewhere, a closing line."""

import io
import math
import os

import numpy as np
import pytest
from _synthetic import low_rank_classes

from skssl import MaskedAutoencoder
from skssl._progress import EpochProgress, is_interactive, phase
from skssl._training import FitResult, Schedule
from skssl.supervised import SSLClassifier

FAST = dict(hidden_dims=(16,), n_components=4, device="cpu", random_state=0)


class FakeStream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


def _run(stream, *, max_epochs=50, n_epochs=50, verbose=1, stop_reason="max_epochs", **kwargs):
    progress = EpochProgress("Model", max_epochs_param=max_epochs, verbose=verbose, stream=stream, **kwargs)
    progress.start(Schedule(32, max_epochs, 10), has_validation=True)
    history = {"train_loss": [], "validation_loss": []}
    for epoch in range(1, n_epochs + 1):
        history["train_loss"].append(1.0 / epoch)
        history["validation_loss"].append(2.0 / epoch)
        progress.epoch(epoch, 1.0 / epoch, 2.0 / epoch)
    progress.finish(FitResult(history, n_epochs, n_epochs, stop_reason, True, 1.25))
    return stream.getvalue()


def test_terminal_gets_one_updating_line_and_a_closing_line(monkeypatch):
    monkeypatch.setattr("skssl._progress.REDRAW_SECONDS", 0.0)  # redraw at every epoch
    monkeypatch.setattr("shutil.get_terminal_size", lambda *args: os.terminal_size((200, 24)))
    out = _run(FakeStream(tty=True))
    assert out.count("\n") == 1 and out.endswith("\n")  # one line, redrawn in place, then closed
    assert out.count("\r") == 51  # 50 redraws, then the closing line over them
    assert "epoch 50/50 (max_epochs=50): train loss 0.02, validation loss 0.04" in out
    closing = out.split("\r")[-1].strip()
    assert closing == (
        "[Model] done: 50 of at most 50 epochs (max_epochs=50), reached max_epochs; best epoch 50 (validation loss "
        "0.04), its weights kept; 1.2 s"
    )


def test_terminal_line_fits_in_one_row(monkeypatch):
    monkeypatch.setattr("shutil.get_terminal_size", lambda *args: os.terminal_size((40, 24)))
    stream = FakeStream(tty=True)
    progress = EpochProgress("Model", stream=stream)
    progress.start(Schedule(32, 50, 10), has_validation=True)
    progress.epoch(1, 0.5, 0.25)
    line = "[Model] epoch 1/50 (max_epochs='auto'): train loss 0.5, validation loss 0.25"
    assert stream.getvalue() == "\r" + line[:39]


def test_plain_stream_gets_a_line_every_tenth_of_the_budget():
    out = _run(FakeStream(tty=False))
    assert "\r" not in out
    lines = out.splitlines()
    epochs = [int(line.split("epoch ")[1].split("/")[0]) for line in lines[:-1]]
    assert epochs == [1, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50]
    assert lines[-1].startswith("[Model] done: 50 of at most 50 epochs")
    # verbose=2: every epoch on its own line, even on a terminal.
    every = _run(FakeStream(tty=True), max_epochs=5, n_epochs=5, verbose=2)
    assert "\r" not in every and len(every.splitlines()) == 6


def test_closing_line_says_why_training_stopped():
    out = _run(FakeStream(tty=False), n_epochs=23, stop_reason="early_stopping")
    assert "23 of at most 50 epochs (max_epochs=50), stopped early (no improvement in 10 epochs)" in out
    assert "best epoch 23 (validation loss 0.08696)" in out


def test_notebook_stream_is_interactive_without_importing_ipython():
    OutStream = type("OutStream", (io.StringIO,), {"__module__": "ipykernel.iostream"})
    assert is_interactive(OutStream()) and is_interactive(FakeStream(tty=True))
    assert not is_interactive(FakeStream(tty=False)) and not is_interactive(object())
    closed = io.StringIO()
    closed.close()  # isatty() raises on a closed stream
    assert not is_interactive(closed)


def test_interrupted_run_closes_its_line():
    stream = FakeStream(tty=True)
    progress = EpochProgress("Model", stream=stream)
    progress.start(Schedule(32, 50, 10), has_validation=False)
    progress.epoch(1, 0.5)
    progress.abort("interrupted")
    out = stream.getvalue()
    assert out.count("\n") == 1 and out.endswith("\n")
    assert out.split("\r")[-1].strip() == "[Model] interrupted after 1 epoch(s)"


def _line(progress, epoch, best, last, elapsed, monkeypatch, stream):
    monkeypatch.setattr("time.perf_counter", lambda: 100.0 + elapsed)
    progress.epoch(epoch, 0.5, 0.25, best_epoch=best, last_epoch=last)
    return stream.getvalue().splitlines()[-1]


def test_epoch_line_estimates_the_time_left_by_the_stopping_rule(monkeypatch):
    # 4 s for 8 epochs: 0.5 s an epoch; the rule stops after epoch 14 unless the loss improves: ~3 s left.
    stream = FakeStream(tty=False)
    progress = EpochProgress("Model", verbose=2, stream=stream)
    monkeypatch.setattr("time.perf_counter", lambda: 100.0)
    progress.start(Schedule(32, 500, 8), has_validation=True)
    for epoch in range(1, 9):
        line = _line(progress, epoch, epoch, epoch + 6, 0.5 * epoch, monkeypatch, stream)
    assert line == (
        "[Model] epoch 8, best 8: train loss 0.5, validation loss 0.25; 4.0 s, ~3.0 s left (last epoch 14 unless "
        "the loss improves; at most 500: max_epochs='auto')"
    )
    # Minutes for long estimates, whole seconds from 10 s; the ceiling when it comes first.
    assert "~5.0 min left" in _line(progress, 10, 10, 40, 100.0, monkeypatch, stream)
    assert "~12 s left" in _line(progress, 10, 10, 11, 120.0, monkeypatch, stream)
    assert _line(progress, 498, 498, 500, 498.0, monkeypatch, stream).endswith(
        "~2.0 s left (last epoch 500: max_epochs='auto')"
    )


def test_plain_stream_lines_follow_the_foreseen_end_not_the_ceiling():
    # A run the rule ends after 20 epochs prints a line every tenth of its foreseen length (which grows with the
    # best epoch): 13 lines, where a tenth of max_epochs=500 (50 epochs) would have printed the first alone.
    stream = FakeStream(tty=False)
    progress = EpochProgress("Model", stream=stream)
    progress.start(Schedule(32, 500, 8), has_validation=True)
    for epoch in range(1, 21):
        progress.epoch(epoch, 1.0, 1.0, best_epoch=min(epoch, 15), last_epoch=min(epoch, 15) + 5)
    epochs = [int(line.split("epoch ")[1].split(",")[0]) for line in stream.getvalue().splitlines()]
    assert epochs == [1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 18, 20]


def test_closing_line_names_the_patience_that_stopped_the_run():
    stream = FakeStream(tty=False)
    progress = EpochProgress("Model", stream=stream)
    progress.start(Schedule(32, 500, 8), has_validation=True)
    history = {"train_loss": [1.0] * 40, "validation_loss": [1.0] * 40}
    progress.finish(FitResult(history, 40, 32, "early_stopping", True, 3.0))
    assert "40 of at most 500 epochs (max_epochs='auto'), stopped early (no improvement in 8 epochs)" in (
        stream.getvalue()
    )


def test_phase_names_the_enclosing_fit_and_whose_budget():
    with phase("SSLClassifier", "pre-training"):
        nested = EpochProgress("MaskedAutoencoder", max_epochs_param="auto")
    assert nested.label == "[SSLClassifier] pre-training (MaskedAutoencoder)"
    assert nested.budget == "MaskedAutoencoder.max_epochs='auto'"
    own = EpochProgress("SSLClassifier", phase="fine-tuning", max_epochs_param=3)
    assert own.label == "[SSLClassifier] fine-tuning" and own.budget == "SSLClassifier.max_epochs=3"
    assert EpochProgress("MaskedAutoencoder").label == "[MaskedAutoencoder]"


@pytest.fixture(scope="module")
def cohort():
    X, y = low_rank_classes(n_samples=120, n_features=20, seed=0)
    y = np.where(np.arange(len(y)) % 3 == 0, y, -1)
    return X, y


def test_finetune_reports_each_phase_with_its_own_budget(cohort, capsys):
    X, y = cohort
    embedder = MaskedAutoencoder(**FAST)  # max_epochs="auto": its own budget, not the classifier's
    SSLClassifier(embedder, strategy="finetune", max_epochs=3, verbose=1, device="cpu", random_state=0).fit(X, y)
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = captured.out.splitlines()
    pretraining = [line for line in lines if line.startswith("[SSLClassifier] pre-training (MaskedAutoencoder)")]
    finetuning = [line for line in lines if line.startswith("[SSLClassifier] fine-tuning")]
    assert pretraining and finetuning and len(pretraining) + len(finetuning) == len(lines)
    budget = embedder._schedule(108).max_epochs  # 120 rows, 12 held out
    # Each epoch line: the best epoch, the time left until the stopping rule would end the run, and whose budget.
    first = pretraining[0].split(" (MaskedAutoencoder) ")[1]
    assert first.startswith("epoch 1, best 1: train loss ")
    last = 1 + embedder._schedule(108).patience  # after epoch 1, if the loss never improves
    assert f" s left (last epoch {last} unless the loss improves; " in first
    assert first.endswith(f"at most {budget}: MaskedAutoencoder.max_epochs='auto')")
    assert pretraining[-1].startswith("[SSLClassifier] pre-training (MaskedAutoencoder) done: ")
    assert f"of at most {budget} epochs (MaskedAutoencoder.max_epochs='auto')" in pretraining[-1]
    assert finetuning[0].startswith("[SSLClassifier] fine-tuning epoch 1, best 1: ")
    assert finetuning[0].endswith("s left (last epoch 3: SSLClassifier.max_epochs=3)")
    assert not any(f"at most {budget}" in line for line in finetuning)
    assert finetuning[-1].startswith(
        "[SSLClassifier] fine-tuning done: 3 of at most 3 epochs (SSLClassifier.max_epochs=3), reached max_epochs"
    )
    assert math.isfinite(float(finetuning[-1].rsplit("; ", 1)[1].split(" s")[0]))


def test_silent_by_default_and_baseline_phase_name(cohort, capsys):
    X, y = cohort
    SSLClassifier(
        MaskedAutoencoder(**FAST, max_epochs=2), strategy="finetune", max_epochs=2, random_state=0, device="cpu"
    ).fit(X, y)
    assert capsys.readouterr().out == ""
    SSLClassifier(
        MaskedAutoencoder(**FAST, max_epochs=2),
        strategy="finetune",
        pretrain=False,
        max_epochs=2,
        verbose=1,
        random_state=0,
        device="cpu",
    ).fit(X, y)
    out = capsys.readouterr().out
    assert "pre-training" not in out and out.splitlines()[-1].startswith("[SSLClassifier] training from scratch done")


def test_ensemble_with_an_embedding_reports_the_pre_training_with_the_time_left(cohort, capsys):
    # SSLClassifier(verbose=1) with the embedding member: the embedder's pre-training prints its epochs (time left
    # by the stopping rule) under the classifier's name, then the ensemble's two closing lines go to stderr.
    X, y = cohort
    embedder = MaskedAutoencoder(**FAST, max_epochs=4)
    SSLClassifier(embedder, members=("genes", "embedding"), verbose=1, random_state=0, device="cpu").fit(X, y)
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines and all(line.startswith("[SSLClassifier] pre-training (MaskedAutoencoder) ") for line in lines)
    assert "epoch 1, best 1: " in lines[0] and " s left (last epoch " in lines[0]
    assert lines[-1].startswith("[SSLClassifier] pre-training (MaskedAutoencoder) done: ")
    assert captured.err.startswith("[SSLClassifier] ensemble of genes, embedding fitted on 120 samples")
