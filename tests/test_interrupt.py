"""Ctrl-C stops a fit without losing it, ``warm_start`` continues it, and a checkpointed fit survives being killed."""

import os
import signal
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch

import skssl._training as training
from skssl import ContrastiveEmbedder, MaskedAutoencoder, VAEEmbedder
from skssl.datasets import make_expression
from skssl.exceptions import FitInterruptedWarning

SMALL = dict(n_components=4, hidden_dims=(16,), max_epochs=6, n_iter_no_change=100, random_state=0)


@pytest.fixture(scope="module")
def X():
    return make_expression(n_samples=60, n_genes=12, random_state=0)[0]


def _interrupt_at_step(estimator, step):
    """Make the ``step``-th training loss of ``estimator`` raise KeyboardInterrupt (as Ctrl-C would)."""
    loss, calls = estimator._batch_loss, []

    def interrupted_loss(module, x, targets=None, generator=None):
        if generator is None:  # a training step, not a validation batch
            calls.append(1)
            if len(calls) == step:
                raise KeyboardInterrupt
        return loss(module, x, targets, generator)

    estimator._batch_loss = interrupted_loss


def _state(estimator):
    return {key: value.clone() for key, value in estimator.module_.state_dict().items()}


def _assert_same_fit(a, b, X):
    assert a.history_ == b.history_ and a.n_iter_ == b.n_iter_ and a.best_epoch_ == b.best_epoch_
    state_a, state_b = a.module_.state_dict(), b.module_.state_dict()
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[key], state_b[key]) for key in state_a)
    np.testing.assert_array_equal(a.transform(X), b.transform(X))


def test_keyboard_interrupt_keeps_a_fitted_model_and_warm_start_continues_it(X):
    model = MaskedAutoencoder(**SMALL)
    steps_per_epoch = 2  # 54 training rows in batches of 32
    _interrupt_at_step(model, 2 * steps_per_epoch + 1)  # during the third epoch
    with pytest.warns(
        FitInterruptedWarning, match=r"after 2 of at most 6 epochs.*best epoch \(2\).*warm_start=True"
    ) as caught:
        model.fit(X)
    [warning] = [w for w in caught if w.category is FitInterruptedWarning]
    assert warning.filename == __file__  # points at the fit call, not into skssl or scikit-learn
    assert model.n_iter_ == 2 and model.best_epoch_ == 2
    assert len(model.history_["train_loss"]) == len(model.history_["validation_loss"]) == 2
    assert model.transform(X).shape == (60, 4) and np.isfinite(model.transform(X)).all()
    del model._batch_loss  # the keyboard is quiet again

    before, history = _state(model), {key: list(values) for key, values in model.history_.items()}
    model.set_params(warm_start=True, max_epochs=3).fit(X)
    assert model.n_iter_ == 5 and len(model.history_["train_loss"]) == 5
    assert model.history_["train_loss"][:2] == history["train_loss"]  # the history grows, it does not restart
    assert any(not torch.equal(before[key], value) for key, value in model.module_.state_dict().items())
    # Continued from the trained weights: the first new epoch starts about where the interrupted fit ended.
    fresh = MaskedAutoencoder(**{**SMALL, "max_epochs": 1}).fit(X)
    assert model.history_["train_loss"][2] < fresh.history_["train_loss"][0]

    with pytest.raises(ValueError, match="warm_start=True continues.*12 features, but X has 5"):
        model.fit(X[:, :5])


def test_warm_start_on_an_unfitted_estimator_is_an_ordinary_fit(X):
    warm = MaskedAutoencoder(**{**SMALL, "max_epochs": 2}, warm_start=True).fit(X)
    cold = MaskedAutoencoder(**{**SMALL, "max_epochs": 2}).fit(X)
    _assert_same_fit(warm, cold, X)


def test_interrupt_without_validation_keeps_the_last_weights(X):
    model = MaskedAutoencoder(**SMALL, early_stopping=False)
    _interrupt_at_step(model, 3)  # 60 rows in batches of 32: the second step of the second epoch
    with pytest.warns(FitInterruptedWarning, match="after 1 of at most 6 epochs.*its last weights"):
        model.fit(X)
    assert model.n_iter_ == 1 and model.history_["validation_loss"] == []
    assert np.isfinite(model.transform(X)).all()


def test_interrupt_during_the_preparation_still_raises(X, monkeypatch):
    model = MaskedAutoencoder(**SMALL)

    def interrupted_statistics(X):
        raise KeyboardInterrupt

    monkeypatch.setattr(model, "_fit_statistics", interrupted_statistics)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X)
    assert not hasattr(model, "module_")


def test_fit_loop_reports_an_interrupted_run():
    module = torch.nn.Linear(3, 1)
    X = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    steps = []

    def after_step(module):
        steps.append(1)
        if len(steps) == 9:  # 4 steps per epoch: the first step of the third epoch
            raise KeyboardInterrupt

    device = torch.device("cpu")
    result = training.fit_loop(
        module,
        lambda m, x, t, generator=None: m(x).pow(2).mean(),
        reader=training_reader(X, device),
        train_rows=np.arange(16),
        validation_rows=np.arange(0),
        schedule=training.Schedule(4, 5, 100),
        device=device,
        generator=np.random.RandomState(0),
        seed=0,
        optimizer=training.make_adamw(module.parameters(), lr=1e-2, weight_decay=0.0),
        after_step=after_step,
    )
    assert result.stop_reason == "interrupted" and result.n_epochs == 2 and len(result.history["train_loss"]) == 2
    assert not module.training


def training_reader(X, device):
    from skssl import _reading

    return _reading.BatchReader(X, device)


# ---------------------------------------------------------------------------------------------------- checkpoints
class _Killed(Exception):
    """Stands in for SIGKILL in-process: a fit that dies right after writing a checkpoint."""


@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: MaskedAutoencoder(**SMALL, **kw),
        lambda **kw: ContrastiveEmbedder(**SMALL, objective="byol", **kw),
        lambda **kw: VAEEmbedder(**SMALL, **kw),
    ],
    ids=["masked", "byol", "vae"],
)
def test_a_fit_killed_after_a_checkpoint_resumes_bit_for_bit(X, tmp_path, monkeypatch, make):
    path = str(tmp_path / "fit.ckpt")
    reference = make().fit(X)
    monkeypatch.setattr(training, "CHECKPOINT_SECONDS", 0.0)  # a checkpoint after every epoch
    save = training.Checkpoint.save

    def save_then_die(self, *args, **state):
        save(self, *args, **state)
        if state["epoch"] == 3:
            raise _Killed

    monkeypatch.setattr(training.Checkpoint, "save", save_then_die)
    with pytest.raises(_Killed):
        make(checkpoint=path).fit(X)
    assert os.path.exists(path)
    monkeypatch.setattr(training.Checkpoint, "save", save)

    resumed_from = []
    restore = training._restore
    monkeypatch.setattr(training, "_restore", lambda *a: resumed_from.append(restore(*a)) or resumed_from[-1])
    resumed = make(checkpoint=path).fit(X)
    assert resumed_from == [3]
    _assert_same_fit(resumed, reference, X)
    assert not os.path.exists(path)  # removed once training ran to its end


def test_a_checkpoint_of_another_fit_is_refused(X, tmp_path, monkeypatch):
    path = str(tmp_path / "fit.ckpt")
    monkeypatch.setattr(training, "CHECKPOINT_SECONDS", 0.0)
    model = MaskedAutoencoder(**SMALL, checkpoint=path)
    _interrupt_at_step(model, 5)  # in the third epoch, after two checkpoints
    with pytest.warns(FitInterruptedWarning):
        model.fit(X)
    assert os.path.exists(path)  # kept after Ctrl-C: fitting again resumes from it
    with pytest.raises(ValueError, match="other parameters or data.*mask_rate"):
        MaskedAutoencoder(**SMALL, mask_rate=0.5, checkpoint=path).fit(X)
    with pytest.raises(ValueError, match="other parameters or data.*shape"):
        MaskedAutoencoder(**SMALL, checkpoint=path).fit(X[:50])
    with open(path, "wb") as file:
        file.write(b"not a checkpoint")
    with pytest.raises(ValueError, match="Cannot read the checkpoint"):
        MaskedAutoencoder(**SMALL, checkpoint=path).fit(X)


_CHILD = textwrap.dedent(
    """
    import sys, time
    import torch
    torch.set_num_threads(int(sys.argv[2]))
    import skssl._training as training
    from skssl import MaskedAutoencoder
    from skssl.datasets import make_expression

    training.CHECKPOINT_SECONDS = 0.0
    save = training.Checkpoint.save

    def save_and_wait_to_be_killed(self, *args, **state):
        save(self, *args, **state)
        if state["epoch"] == 3:
            print("checkpoint written", flush=True)
            time.sleep(600)

    training.Checkpoint.save = save_and_wait_to_be_killed
    X = make_expression(n_samples=60, n_genes=12, random_state=0)[0]
    MaskedAutoencoder({params}, checkpoint=sys.argv[1]).fit(X)
    """
)


def test_a_process_killed_after_a_checkpoint_resumes_in_another_one(X, tmp_path, monkeypatch):
    path = str(tmp_path / "fit.ckpt")
    params = ", ".join(f"{key}={value!r}" for key, value in SMALL.items())
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD.format(params=params), path, str(torch.get_num_threads())],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "checkpoint written"
        assert os.path.exists(path)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    resumed_from = []
    restore = training._restore
    monkeypatch.setattr(training, "_restore", lambda *a: resumed_from.append(restore(*a)) or resumed_from[-1])
    resumed = MaskedAutoencoder(**SMALL, checkpoint=path).fit(X)
    assert resumed_from == [3]
    _assert_same_fit(resumed, MaskedAutoencoder(**SMALL).fit(X), X)
    assert not os.path.exists(path)


def test_interrupted_fine_tuning_keeps_a_fitted_classifier(X, monkeypatch):
    from skssl import SSLClassifier

    y = make_expression(n_samples=60, n_genes=12, random_state=0)[1]
    epochs, train_epoch = [], training.train_epoch

    def interrupted_epoch(*args, **kwargs):
        epochs.append(1)
        if len(epochs) == 4:  # the embedder's 2 epochs, then the second epoch of fine-tuning
            raise KeyboardInterrupt
        return train_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "train_epoch", interrupted_epoch)
    embedder = MaskedAutoencoder(**{**SMALL, "max_epochs": 2})
    clf = SSLClassifier(embedder, strategy="finetune", max_epochs=5, random_state=0)
    with pytest.warns(FitInterruptedWarning, match="SSLClassifier: training interrupted.*after 1 of at most 5"):
        clf.fit(X, y)
    assert clf.n_iter_ == 1 and clf.predict(X).shape == (60,)


# ----------------------------------------------------------------------------------------------- nested fits


def _interrupt_epoch(monkeypatch, epoch, before=None):
    """Make the ``epoch``-th epoch of training, counted over every phase of a fit, raise KeyboardInterrupt;
    ``before(n)``, if given, runs at the start of the n-th epoch. Returns the list of epochs begun."""
    calls, train_epoch = [], training.train_epoch

    def interrupted_epoch(*args, **kwargs):
        calls.append(1)
        if before is not None:
            before(len(calls))
        if len(calls) == epoch:
            raise KeyboardInterrupt
        return train_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "train_epoch", interrupted_epoch)
    return calls


def _fit_recording(model, X, y):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X, y)
    return caught


def _embed(model, X):
    body = model.module_.body.eval()
    with torch.no_grad():
        return model.module_.scale(body.embed(torch.as_tensor(X, dtype=torch.float32))).double().numpy()


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_interrupted_pretraining_stops_the_whole_finetune_fit(X, monkeypatch, task):
    from sklearn.linear_model import LogisticRegression

    from skssl import SSLClassifier, SSLRegressor

    y = make_expression(n_samples=60, n_genes=12, random_state=0)[1]
    kind = SSLClassifier if task == "classification" else SSLRegressor
    target = y if task == "classification" else y + np.linspace(0, 1, len(y))
    calls = _interrupt_epoch(monkeypatch, 2)  # the second of the embedder's 3 epochs
    model = kind(MaskedAutoencoder(**{**SMALL, "max_epochs": 3}), strategy="finetune", max_epochs=5, random_state=0)
    caught = _fit_recording(model, X, target)

    [warning] = [w for w in caught if issubclass(w.category, FitInterruptedWarning)]  # one warning for the fit
    message = str(warning.message)
    assert message.startswith(f"{kind.__name__}: fit interrupted (KeyboardInterrupt) during the pre-training")
    assert "MaskedAutoencoder: training interrupted (KeyboardInterrupt) after 1 of at most 3 epochs" in message
    assert "Fine-tuning was skipped" in message and "warm_start=True" in message and "prefit=True" in message
    assert warning.filename == __file__  # at the user's fit line
    assert len(calls) == 2  # no epoch after the interrupted one: fine-tuning never started
    assert model.embedder_.n_iter_ == 1 and model.n_iter_ == 0 and model.best_epoch_ == 0
    assert model.history_ == {"train_loss": [], "validation_loss": []}
    prediction = model.predict(X)
    assert prediction.shape == (60,) and np.isfinite(prediction.astype(float)).all()
    if task == "classification":
        proba = model.predict_proba(X)
        np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
        # The head is the fine-tuning's start, the logistic-regression probe of the embeddings (not random weights).
        embedding = _embed(model, X)
        probe = LogisticRegression(max_iter=1000).fit(embedding, y)
        assert np.mean(prediction == probe.predict(embedding)) >= 0.95


def test_interrupted_pretraining_of_the_ensemble_member_warns_once(X, monkeypatch):
    from skssl import SSLClassifier

    y = make_expression(n_samples=60, n_genes=12, random_state=0)[1]
    calls = _interrupt_epoch(monkeypatch, 2)
    clf = SSLClassifier(MaskedAutoencoder(**{**SMALL, "max_epochs": 3}), random_state=0)
    caught = _fit_recording(clf, X, y)
    [warning] = [w for w in caught if issubclass(w.category, FitInterruptedWarning)]
    assert "SSLClassifier: fit interrupted (KeyboardInterrupt) during the pre-training" in str(warning.message)
    assert "The ensemble was fitted" in str(warning.message) and warning.filename == __file__
    assert len(calls) == 2 and clf.embedder_.n_iter_ == 1 and "embedding" in clf.members_
    assert clf.predict(X).shape == (60,) and np.isfinite(clf.predict_proba(X)).all()


def test_interrupted_pretraining_follows_the_warning_filters_and_lets_other_warnings_through(X, monkeypatch):
    from skssl import SSLClassifier

    y = make_expression(n_samples=60, n_genes=12, random_state=0)[1]

    def note(epoch):
        if epoch == 1:
            warnings.warn("a note from the first epoch", RuntimeWarning, stacklevel=2)

    calls = _interrupt_epoch(monkeypatch, 2, before=note)
    clf = SSLClassifier(MaskedAutoencoder(**{**SMALL, "max_epochs": 3}), strategy="finetune", random_state=0)
    caught = _fit_recording(clf, X, y)
    assert [str(w.message) for w in caught if w.category is RuntimeWarning] == ["a note from the first epoch"]

    calls.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("error", FitInterruptedWarning)  # "make an interrupted fit raise instead"
        with pytest.raises(FitInterruptedWarning, match="SSLClassifier: fit interrupted"):
            clf.fit(X, y)
    calls.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", FitInterruptedWarning)  # silenced, and still one Ctrl-C stops the fit
        clf.fit(X, y)
    assert len(calls) == 2 and clf.n_iter_ == 0


# ------------------------------------------------------------------------------ a fit is all or nothing
# Ctrl-C at any point of a fit leaves the previous fitted state or a new, complete one: never new weights with old
# statistics, and never an estimator that looks fitted but is not.
def _interrupt_statistics_pass(monkeypatch):
    """Make the embedding-statistics pass after training (every embedder's last step of fit) raise KeyboardInterrupt."""
    from skssl import _statistics

    monkeypatch.setattr(_statistics, "streaming_mean_covariance", _ctrl_c)


def _ctrl_c(*args, **kwargs):
    raise KeyboardInterrupt


def _snapshot(model, X):
    return _state(model), model.transform(X), dict(model.__dict__)


def _assert_unchanged(model, X, snapshot):
    state, Z, attributes = snapshot
    assert model.__dict__.keys() == attributes.keys()
    assert all(torch.equal(state[key], value) for key, value in model.module_.state_dict().items())
    np.testing.assert_array_equal(model.transform(X), Z)


@pytest.mark.parametrize("warm_start", [False, True], ids=["refit", "warm-start"])
def test_interrupt_after_training_keeps_the_previous_fit(X, monkeypatch, warm_start):
    model = MaskedAutoencoder(**SMALL).fit(X)
    snapshot = _snapshot(model, X)
    _interrupt_statistics_pass(monkeypatch)
    model.set_params(warm_start=warm_start, random_state=1)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X + 1.0)  # trained anew (or on), interrupted before its embedding statistics
    monkeypatch.undo()
    _assert_unchanged(model, X, snapshot)


def test_interrupt_during_a_refit_to_other_genes_keeps_the_previous_fit(X):
    from sklearn.exceptions import NotFittedError

    for make in (lambda: MaskedAutoencoder(**SMALL), lambda: VAEEmbedder(**SMALL, likelihood="nb")):
        model = make().fit(np.round(2.0**X))
        snapshot = _snapshot(model, np.round(2.0**X))
        model._fit_statistics = _ctrl_c  # on the instance only, removed below (no monkeypatch teardown to race)
        with pytest.raises(KeyboardInterrupt):
            model.fit(np.round(2.0 ** X[:, :8]))
        del model._fit_statistics
        _assert_unchanged(model, np.round(2.0**X), snapshot)
        assert model.n_features_in_ == 12
    # Before the first epoch of a first fit: still unfitted.
    fresh = MaskedAutoencoder(**SMALL)
    fresh._fit_statistics = _ctrl_c
    with pytest.raises(KeyboardInterrupt):
        fresh.fit(X)
    with pytest.raises(NotFittedError):
        fresh.transform(X)
    assert not hasattr(fresh, "n_features_in_")


def test_interrupted_partial_fit_keeps_the_previous_state(X):
    model = MaskedAutoencoder(**{**SMALL, "batch_size": 8})
    model.partial_fit(X)
    snapshot = _snapshot(model, X)
    optimizer_state = {k: v["exp_avg"].clone() for k, v in model._optimizer.state_dict()["state"].items()}
    _interrupt_at_step(model, 3)  # the third of 8 steps: some already taken
    with pytest.raises(KeyboardInterrupt):
        model.partial_fit(X)
    del model._batch_loss
    _assert_unchanged(model, X, snapshot)
    assert model.n_iter_ == 1 and len(model.history_["train_loss"]) == 1
    assert all(torch.equal(v["exp_avg"], optimizer_state[k]) for k, v in model._optimizer.state_dict()["state"].items())


@pytest.mark.parametrize("strategy", ["finetune", "ensemble"])
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_interrupted_refit_of_a_semi_supervised_model_keeps_the_previous_fit(X, monkeypatch, task, strategy):
    from sklearn.exceptions import NotFittedError

    from skssl import SSLClassifier, SSLRegressor

    y = make_expression(n_samples=60, n_genes=12, random_state=0)[1]
    kind = SSLClassifier if task == "classification" else SSLRegressor
    target = y if task == "classification" else y + np.linspace(0, 1, len(y))
    make = lambda: kind(
        MaskedAutoencoder(**{**SMALL, "max_epochs": 2}), strategy=strategy, max_epochs=2, random_state=0
    )
    model = make().fit(X, target)
    prediction, attributes = model.predict(X), dict(model.__dict__)
    _interrupt_statistics_pass(monkeypatch)  # in the pre-training of the refit's embedder
    with pytest.raises(KeyboardInterrupt):
        model.fit(X[:, :8], target)
    assert model.__dict__.keys() == attributes.keys() and model.n_features_in_ == 12
    monkeypatch.undo()
    np.testing.assert_array_equal(model.predict(X), prediction)
    fresh = make()
    _interrupt_statistics_pass(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        fresh.fit(X, target)
    with pytest.raises(NotFittedError):
        fresh.predict(X)
