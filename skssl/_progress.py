"""Progress of a training run on stdout, as scikit-learn's verbose estimators print it.

At ``verbose=1`` a terminal or a Jupyter notebook shows one line updated in place (carriage return); any other
stream (a log file, a pipe) gets a plain line every few epochs. At ``verbose>=2`` every epoch gets its own line.
An epoch's line shows the best epoch so far, the time elapsed and an estimate of the time left: the epochs until the
stopping rule ends the run if the loss does not improve again (``Schedule.last_epoch``), at the mean time of an
epoch so far; an improvement moves that end further. Either way a run ends with one summary line: epochs run out of
the budget, why it stopped, the epoch whose weights were kept and the wall time. A fit nested in another one (the
embedder pre-trained by ``SSLClassifier(strategy="finetune")``) names its phase:
``[SSLClassifier] pre-training (MaskedAutoencoder)``.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import shutil
import sys
import time

# Plain (non-interactive) output: about this many progress lines per run, whatever its length, and at least one
# line every PLAIN_SECONDS when epochs are slow.
PLAIN_LINES_PER_RUN = 10
PLAIN_SECONDS = 30.0
# An interactive line is redrawn at most this often (every redraw is a message to a notebook's front end).
REDRAW_SECONDS = 0.2

# The estimator and phase of an enclosing fit, e.g. ("SSLClassifier", "pre-training"): set by the outer fit
# around the inner one, read by the inner fit's progress label. Display only: no result depends on it.
_enclosing_phase = contextvars.ContextVar("skssl_enclosing_phase", default=None)


@contextlib.contextmanager
def phase(estimator_name, name):
    """Within this block, progress of nested fits is labelled ``[estimator_name] name (inner estimator)``."""
    token = _enclosing_phase.set((estimator_name, name))
    try:
        yield
    finally:
        _enclosing_phase.reset(token)


def _is_notebook(stream):
    # ipykernel's OutStream, recognised by its class so that IPython is never imported.
    kind = type(stream)
    return kind.__name__ == "OutStream" and (kind.__module__ or "").startswith("ipykernel")


def is_interactive(stream):
    """Whether ``stream`` redraws a carriage-returned line: a terminal, or a Jupyter notebook's output stream."""
    if _is_notebook(stream):
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def _loss(value):
    return f"{value:.4g}"


def _duration(seconds):
    """``4.2 s``, ``38 s``, ``3.5 min``: one or two significant figures, as a time-left estimate deserves."""
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"


class EpochProgress:
    """Reports the epochs of one training run; ``fit_loop`` calls ``start``, ``epoch``, then ``finish`` or ``abort``.

    Parameters
    ----------
    estimator_name : str
        Name of the estimator being fitted.
    phase : str or None, default=None
        The phase this run is, e.g. "fine-tuning"; None for a run that is the whole fit. Inside a
        :func:`phase` block the enclosing fit's name and phase take its place, followed by ``estimator_name``.
    max_epochs_param : "auto" or int, default="auto"
        The ``max_epochs`` parameter behind the budget, quoted next to it.
    verbose : int, default=1
        1: an updating line (terminal, notebook) or a line every few epochs; 2 or more: a line per epoch.
    stream : file-like or None, default=None
        Where to write; None is ``sys.stdout`` at the time of writing.
    """

    def __init__(self, estimator_name, *, phase=None, max_epochs_param="auto", verbose=1, stream=None):
        enclosing = _enclosing_phase.get()
        if enclosing is not None:
            outer, outer_phase = enclosing
            self.label = f"[{outer}] {outer_phase} ({estimator_name})"
        elif phase is not None:
            self.label = f"[{estimator_name}] {phase}"
        else:
            self.label = f"[{estimator_name}]"
        # Whose budget: inside a phase, name the estimator whose max_epochs it is (not the enclosing one's).
        owner = "" if enclosing is None and phase is None else f"{estimator_name}."
        self.budget = f"{owner}max_epochs={max_epochs_param!r}"
        self.verbose = verbose
        self._stream = stream
        self._interactive = False
        self._line_open = False
        self._drawn_width = 0
        self._epochs_seen = 0
        self._last_draw = -math.inf

    @property
    def stream(self):
        return sys.stdout if self._stream is None else self._stream

    def start(self, schedule, *, has_validation):
        self.schedule, self.max_epochs = schedule, schedule.max_epochs
        self.has_validation = has_validation
        self._interactive = self.verbose < 2 and is_interactive(self.stream)
        # A terminal returns only to the start of the last screen row: an updating line must fit in one row.
        self._width = None if not self._interactive or _is_notebook(self.stream) else shutil.get_terminal_size().columns
        self._every = self._line_interval(self.max_epochs)
        self._start = self._last_draw = time.perf_counter()
        self._epochs_seen = 0
        self._first_epoch = None

    def _line_interval(self, run_epochs):
        """Epochs between two plain lines: every epoch at verbose >= 2, else a tenth of a run of ``run_epochs``."""
        return 1 if self.verbose >= 2 else max(1, math.ceil(run_epochs / PLAIN_LINES_PER_RUN))

    def epoch(self, epoch, train_loss, validation_loss=None, *, best_epoch=None, last_epoch=None):
        """After ``epoch`` (counted from 1) with its mean training loss and, if any, validation loss.

        ``best_epoch`` is the best epoch so far and ``last_epoch`` the epoch after which the run stops unless the
        loss improves (``fit_loop`` passes both): the line then shows the time left until ``last_epoch``, at the
        mean time of the epochs of this run so far. Without them the line shows ``epoch/max_epochs``.
        """
        self._epochs_seen = epoch
        if self._first_epoch is None:
            self._first_epoch = epoch  # a resumed run starts after epoch 1
        elapsed = time.perf_counter() - self._start
        validation = "" if validation_loss is None else f", validation loss {_loss(validation_loss)}"
        losses = f"train loss {_loss(train_loss)}{validation}"
        if best_epoch is None or last_epoch is None:
            text = f"{self.label} epoch {epoch}/{self.max_epochs} ({self.budget}): {losses}, {elapsed:.1f} s"
        else:
            per_epoch = elapsed / (epoch - self._first_epoch + 1)
            left = max(0, last_epoch - epoch) * per_epoch
            if last_epoch >= self.max_epochs:
                end = f"last epoch {self.max_epochs}: {self.budget}"
            else:
                end = f"last epoch {last_epoch} unless the loss improves; at most {self.max_epochs}: {self.budget}"
            text = (
                f"{self.label} epoch {epoch}, best {best_epoch}: {losses}; {elapsed:.1f} s, "
                f"~{_duration(left)} left ({end})"
            )
            self._every = self._line_interval(last_epoch)  # a tenth of the run as the stopping rule foresees it
        now = time.perf_counter()
        if self._interactive:
            if epoch == 1 or epoch == self.max_epochs or now - self._last_draw >= REDRAW_SECONDS:
                self._redraw(text)
                self._last_draw = now
        elif epoch == 1 or epoch % self._every == 0 or now - self._last_draw >= PLAIN_SECONDS:
            self._write_line(text)
            self._last_draw = now

    def finish(self, result):
        """Close the run with one summary line (replacing the updating line on a terminal)."""
        self._write_line(self.summary(result))

    def abort(self, reason):
        """End the run early on an exception: terminate the updating line, say why, then let it propagate."""
        self._write_line(f"{self.label} {reason} after {self._epochs_seen} epoch(s)")

    def summary(self, result):
        patience = self.schedule.patience
        stopped = {
            "early_stopping": f"stopped early (no improvement in {patience} epochs)",
            "max_epochs": "reached max_epochs",
            "interrupted": "interrupted (KeyboardInterrupt)",
        }.get(result.stop_reason, result.stop_reason)
        monitored = "validation loss" if self.has_validation else "train loss"
        losses = result.history["validation_loss" if self.has_validation else "train_loss"]
        best = losses[result.best_epoch - 1] if 0 < result.best_epoch <= len(losses) else math.nan
        kept = "its weights kept" if result.restored_best else "the last epoch's weights kept"
        return (
            f"{self.label} done: {result.n_epochs} of at most {self.max_epochs} epochs ({self.budget}), {stopped}; "
            f"best epoch {result.best_epoch} ({monitored} {_loss(best)}), {kept}; {result.seconds:.1f} s"
        )

    def _redraw(self, text):
        if self._width is not None:
            text = text[: self._width - 1]
        # Pad over the remains of a longer previous line.
        width = max(len(text), self._drawn_width)
        self.stream.write("\r" + text.ljust(width))
        self.stream.flush()
        self._drawn_width = len(text)
        self._line_open = True

    def _write_line(self, text):
        if self._line_open:
            self.stream.write("\r" + text.ljust(self._drawn_width) + "\n")
            self._line_open = False
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
