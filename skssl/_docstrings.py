"""The parameter and attribute descriptions shared by the embedders' docstrings, and ``fill_doc`` that inserts them."""

from __future__ import annotations

import re

# Parameter and attribute descriptions shared by every embedder's docstring (filled in by ``fill_doc``).
TRAINING_PARAMETERS_DOC = """\
    hidden_dims : "auto" or tuple of int, default="auto"
        Widths of the encoder's hidden layers; "auto" uses two layers of 256 (under 1 000 features) or 512.
    dropout : float in [0, 1), default=0.1
        Dropout after each hidden layer.
    batch_size : "auto" or int, default="auto"
        Rows per optimisation step; "auto" is a quarter of the training rows, clipped to [32, 256].
    max_epochs : "auto" or int, default="auto"
        Most passes over the data (a ceiling; early stopping usually ends the fit well before it); "auto" aims for
        about 3 000 optimisation steps (between 3 and 500 epochs).
    learning_rate : float, default=1e-3
        AdamW learning rate. Lower it if training diverges.
    weight_decay : float, default=1e-5
        AdamW weight decay.
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the rows, stop when their loss stops improving and keep the weights of
        the best epoch. Ignored when the held-out part would have fewer than 2 rows.
    validation_fraction : float in (0, 1), default=0.1
        Fraction of rows held out for early stopping.
    n_iter_no_change : "auto" or int, default="auto"
        Epochs without improvement before stopping; "auto" waits for about 200 optimisation steps, at least 10
        epochs (100 epochs of a 2-step epoch on a cohort of about 50 samples). The verbose progress shows the time
        left until the epoch where this rule stops the run if the loss does not improve again.
    tol : float, default=1e-4
        Relative improvement of the validation loss that counts as an improvement.
    standardize : bool, default=True
        Centre and scale each feature with statistics of the ``fit`` data (recommended for log-expression).
    device : str, default="auto"
        "auto" (CUDA if available, else CPU), "cpu", "cuda" or "cuda:N".
    precision : {"float32", "bf16"}, default="float32"
        "bf16" runs the forward and backward passes under bfloat16 autocast (fast on recent GPUs; losses and
        optimiser state stay in float32).
    warm_start : bool, default=False
        When True, ``fit`` on a fitted estimator continues training its network from the current weights (same
        standardisation statistics, a fresh optimiser, up to ``max_epochs`` more epochs; ``history_`` and
        ``n_iter_`` grow) instead of starting anew; ``X`` must have the same features. The way to go on after a
        fit stopped with Ctrl-C (``KeyboardInterrupt``), which keeps the best weights so far and warns with a
        ``FitInterruptedWarning``.
    checkpoint : str or None, default=None
        File where ``fit`` saves its whole training state (weights, optimiser, epoch, best weights, history,
        random generators) at the end of an epoch once a minute. A ``fit`` from scratch with the same parameters
        and data resumes from an existing file and ends exactly (bit for bit on CPU) as an uninterrupted fit; one
        with other parameters or data raises ValueError. The file is removed when training runs to its end and
        kept after a Ctrl-C. Not used by ``partial_fit`` nor by a ``warm_start`` continuation.
    random_state : int, RandomState instance or None, default=None
        Seeds the split, batch order, initial weights and random draws: same seed, same embedding on CPU.
    verbose : int, default=0
        Progress on stdout: 1 shows the epochs (one updating line in a terminal or notebook, about ten lines a run
        otherwise) and a closing line (epochs run, why training stopped, best epoch, wall time); 2 prints a line
        per epoch. Each epoch's line shows the best epoch so far, the time elapsed and an estimate of the time
        left: until the epoch after which early stopping ends the run unless the loss improves again.
"""

FITTED_ATTRIBUTES_DOC = """\
    history_ : dict
        ``"train_loss"`` and ``"validation_loss"`` per epoch.
    n_iter_ : int
        Number of epochs run.
    best_epoch_ : int
        Epoch whose weights were kept.
    batch_size_ : int
        Batch size used.
    device_ : torch.device
        Device the network was trained on and is on (the CPU after ``load_model``).
    hidden_dims_ : tuple of int
        Hidden layer widths used.
    n_components_ : int
        Dimension of the embedding.
    embedding_mean_ : ndarray of shape (n_components_,), dtype float32
        Mean of each component of the encoder output on the ``fit`` data (on the last chunk after
        ``partial_fit``); ``transform`` subtracts it.
    embedding_scale_ : ndarray of shape (n_components_,), dtype float32
        Standard deviation of each component of the encoder output on the same data (1 for a component with no
        spread); ``transform`` divides by it.
    embedding_whitening_ : ndarray of shape (n_components_, n_components_), dtype float32
        Matrix that ``transform`` applies to the standardised components: ``c * I`` with
        ``c = lambda_1 ** -0.25`` for the largest principal variance ``lambda_1`` of the standardised components
        on the same data (the identity when ``lambda_1 <= 1``). Models saved by skssl 0.1.0 hold the symmetric
        matrix of that release, which capped every principal variance at 1; ``transform`` applies whichever is
        stored.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during ``fit`` (only when X has string column names).
"""


def _doc_entries(section):
    """Split a numpydoc section into ``{name: entry text}`` (an entry: its ``name : type`` line and description)."""
    entries = {}
    for entry in re.split(r"(?m)^(?=    \S)", section):
        if entry.strip():
            entries[entry.split(" : ")[0].strip()] = entry
    return entries


def fill_doc(cls=None, **overrides):
    """Class decorator: substitute the shared sections into ``%(training_parameters)s`` / ``%(fitted_attributes)s``.

    ``overrides`` replace the shared description of the named parameters, e.g.
    ``@fill_doc(dropout="    dropout : float, default=0.1\n        Dropout of the encoder.\n")``.
    """
    if cls is None:
        return lambda cls: fill_doc(cls, **overrides)
    entries = _doc_entries(TRAINING_PARAMETERS_DOC)
    unknown = set(overrides) - set(entries)
    if unknown:
        raise ValueError(f"fill_doc overrides unknown parameters: {sorted(unknown)}")
    training = "".join({**entries, **overrides}.values())
    cls.__doc__ = cls.__doc__.replace("    %(training_parameters)s\n", training).replace(
        "    %(fitted_attributes)s\n", FITTED_ATTRIBUTES_DOC
    )
    return cls
