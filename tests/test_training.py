"""The training loop's data paths: partial_fit, the vectorised corruption against a per-row reference, schedules."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from _synthetic import low_rank_classes
from scipy import stats

from skssl import ContrastiveEmbedder, MaskedAutoencoder, VAEEmbedder, _reading
from skssl._corruption import scarf_corrupt, vime_mask
from skssl._training import (
    MASKED_AUTOENCODER_PATIENCE_STEPS,
    MAX_GRAD_NORM,
    Schedule,
    auto_batch_size,
    clip_gradients,
    fit_loop,
    make_adamw,
    resolve_schedule,
)

FAST = dict(hidden_dims=(32,), n_components=4, device="cpu", random_state=0)


def reference_scarf_corrupt(x, rate, rng):
    """The per-row loop of the reference implementation (one permutation per sample), in numpy."""
    n, f = x.shape
    out = x.copy()
    k = int(round(rate * f))
    for i in range(n):
        cols = rng.permutation(f)[:k]
        donors = rng.choice(np.delete(np.arange(n), i), size=k)
        out[i, cols] = x[donors, cols]
    return out


def test_vectorised_scarf_matches_per_row_reference_statistically():
    rng = np.random.default_rng(0)
    x = rng.gamma(2.0, 1.0, size=(64, 40)).astype(np.float64)
    ours = np.concatenate(
        [scarf_corrupt(torch.from_numpy(x), 0.6, torch.Generator().manual_seed(s))[0].numpy() for s in range(30)]
    )
    reference = np.concatenate([reference_scarf_corrupt(x, 0.6, rng) for _ in range(30)])
    # Same distribution of corrupted values per feature (two-sample KS on a few features) ...
    for j in range(0, 40, 8):
        assert stats.ks_2samp(ours[:, j], reference[:, j]).pvalue > 1e-3
    # ... and the same fraction of entries changed.
    changed_ours = (ours != np.tile(x, (30, 1))).mean()
    changed_reference = (reference != np.tile(x, (30, 1))).mean()
    assert changed_ours == pytest.approx(changed_reference, abs=0.02)


def test_vime_mask_matches_bernoulli_reference():
    x = torch.zeros(300, 50)
    _, mask = vime_mask(x, 0.3, torch.Generator().manual_seed(0))
    per_row = mask.sum(dim=1).numpy()
    # Binomial(50, 0.3) counts per row: mean 15, variance 10.5.
    assert per_row.mean() == pytest.approx(15, abs=0.6)
    assert per_row.var() == pytest.approx(10.5, rel=0.25)


@pytest.mark.parametrize("cls", [ContrastiveEmbedder, MaskedAutoencoder, VAEEmbedder])
def test_partial_fit_over_chunks_is_close_to_fit_on_the_whole(cls):
    X, _ = low_rank_classes(n_samples=400, n_features=40, seed=3)
    batch = 50
    whole = cls(**FAST, batch_size=batch, max_epochs=4, early_stopping=False).fit(X)
    chunked = cls(**FAST, batch_size=batch)
    for _ in range(4):  # same number of steps: 4 passes of 4 chunks of 2 batches
        for chunk in np.array_split(np.arange(len(X)), 4):
            chunked.partial_fit(X[chunk])
    assert chunked.n_iter_ == 16
    final_whole = whole.history_["train_loss"][-1]
    final_chunked = np.mean(chunked.history_["train_loss"][-4:])
    first_chunked = np.mean(chunked.history_["train_loss"][:4])
    assert final_chunked < first_chunked  # it learns
    assert final_chunked == pytest.approx(final_whole, rel=0.15)


def test_partial_fit_checks_features_and_continues_after_fit():
    X, _ = low_rank_classes(n_samples=100, n_features=20, seed=4)
    model = MaskedAutoencoder(**FAST, max_epochs=2).fit(X)
    before = [p.detach().clone() for p in model.module_.parameters()]
    model.partial_fit(X)
    assert model.n_iter_ == 3
    assert any(not torch.equal(a, b) for a, b in zip(before, model.module_.parameters()))
    with pytest.raises(ValueError, match="features"):
        model.partial_fit(X[:, :5])


def test_auto_schedule_thinks_in_steps():
    X, _ = low_rank_classes(n_samples=60, n_features=10, seed=5)
    small = MaskedAutoencoder(**FAST, early_stopping=False).set_params(max_epochs="auto")
    batch_size, epochs = small._schedule(54)[:2]
    assert batch_size == 32 and epochs == 500  # 2 steps per epoch: many epochs
    batch_size, epochs = small._schedule(1_000_000)[:2]
    assert batch_size == 256 and epochs == 3  # 3 900 steps per epoch: a few epochs
    assert auto_batch_size(10) == 10


def test_bf16_precision_trains(tmp_path):
    X, _ = low_rank_classes(n_samples=100, n_features=20, seed=6)
    model = ContrastiveEmbedder(**FAST, max_epochs=2, precision="bf16").fit(X)
    assert np.isfinite(model.transform(X)).all()
    with pytest.raises(ValueError, match="precision"):
        ContrastiveEmbedder(precision="fp8").fit(X)


def _mapped_megabytes(path):
    """Resident size of this process's mappings of ``path`` (Linux smaps)."""
    total, inside = 0, False
    for line in open("/proc/self/smaps"):
        first = line.split(maxsplit=1)[0]
        if "-" in first and all(c in "0123456789abcdef-" for c in first):
            inside = line.rstrip().endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total / 1024


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/smaps"), reason="needs Linux /proc smaps")
def test_passes_over_a_memmap_keep_its_resident_pages_bounded(tmp_path):
    from skssl import _reading

    path = tmp_path / "big.f32"
    rows, genes = 60_000, 2_000  # 480 MB on disk
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=(rows, genes))
    for start in range(0, rows, 10_000):
        mm[start : start + 10_000] = 1.0
    mm.flush()
    del mm
    X = np.memmap(path, dtype=np.float32, mode="r", shape=(rows, genes))
    peak = 0.0
    for i, _ in enumerate(_reading.iter_batches(X, 256, indices=np.random.default_rng(0).permutation(rows))):
        if i % 8 == 7:  # reading smaps is slow; sample it
            peak = max(peak, _mapped_megabytes(path))
    for _ in _reading.iter_batches(X, 4096):
        peak = max(peak, _mapped_megabytes(path))
    # A batch of 256 random rows may map up to ~256 MB before it is released; never the whole 480 MB file.
    assert peak < 330, peak


# ----------------------------------------------------------------------------- the schedule and the loop as functions
def test_resolve_schedule_is_the_documented_auto_rule():
    # "auto": a quarter of the rows clipped to [32, 256]; about 3 000 steps, 3 to 500 epochs; patience about 200
    # steps, at least 10 epochs.
    assert resolve_schedule(54) == Schedule(32, 500, 100)  # 2 steps per epoch
    assert resolve_schedule(4000) == Schedule(256, 188, 13)  # 16 steps per epoch (15 full + a remainder of 160)
    assert resolve_schedule(1_000_000) == Schedule(256, 3, 10)
    assert resolve_schedule(10).batch_size == 10
    assert resolve_schedule(100, batch_size=500, max_epochs=7, n_iter_no_change=2) == (100, 7, 2)
    # A 1-row remainder is no step: 65 rows in batches of 32 are 2 steps per epoch, 66 rows 3.
    assert resolve_schedule(65, batch_size=32) == (32, 500, 100)
    assert resolve_schedule(66, batch_size=32) == (32, 500, 67)
    with pytest.raises(ValueError, match="at least 1"):
        resolve_schedule(0)


def test_masked_autoencoder_waits_half_as_many_steps_for_an_improvement():
    # MaskedAutoencoder's patience: about 100 optimisation steps, at least 10 epochs; other networks keep 200 steps.
    assert resolve_schedule(51, patience_steps=MASKED_AUTOENCODER_PATIENCE_STEPS) == Schedule(32, 500, 50)
    hsmm = resolve_schedule(244, patience_steps=MASKED_AUTOENCODER_PATIENCE_STEPS)  # 4 steps an epoch
    assert hsmm == Schedule(61, 500, 25)
    assert Schedule(32, 40, 5).last_epoch(37) == 40  # never past max_epochs
    assert Schedule(32, 500, 50).last_epoch(31) == 81 and Schedule(32, 500, 50).last_epoch(31, False) == 500
    # An explicit n_iter_no_change is the patience, as for every network.
    assert resolve_schedule(51, n_iter_no_change=7, patience_steps=MASKED_AUTOENCODER_PATIENCE_STEPS).patience == 7


@pytest.mark.parametrize("n_train", [5000, 5120, 20_000, 100_000, 1_000_000])
def test_large_inputs_keep_the_ten_epoch_patience(n_train):
    # From 5 000 training rows on (epochs of >= 20 steps; e.g. the transfer benchmark's pool pre-training on 20 000
    # rows) both patiences are the 10-epoch minimum, so MaskedAutoencoder's fits there are as before.
    assert resolve_schedule(n_train, patience_steps=MASKED_AUTOENCODER_PATIENCE_STEPS) == resolve_schedule(n_train)
    assert resolve_schedule(n_train).patience == 10


def test_estimators_use_the_shared_schedule():
    model = MaskedAutoencoder(batch_size=64, max_epochs="auto", n_iter_no_change=5)
    assert model._schedule(1000) == resolve_schedule(1000, batch_size=64, n_iter_no_change=5)
    from skssl import SSLClassifier

    assert MaskedAutoencoder()._schedule(51) == resolve_schedule(51, patience_steps=MASKED_AUTOENCODER_PATIENCE_STEPS)
    assert MaskedAutoencoder()._schedule(51) == Schedule(32, 500, 50)
    # The others keep the 200 steps: ContrastiveEmbedder lost scores with 100, the rest was not measured with fewer.
    for estimator in (ContrastiveEmbedder(), VAEEmbedder(), SSLClassifier()):
        assert estimator._schedule(51) == resolve_schedule(51) == Schedule(32, 500, 100)


class _Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)

    def forward(self, x):
        return self.layer(x)[:, 0]


def _run(module, loss_fn, X, *, train_rows, validation_rows=(), targets=None, max_epochs=5, patience=100, **kwargs):
    device = torch.device("cpu")
    return fit_loop(
        module,
        loss_fn,
        reader=_reading.BatchReader(X, device),
        train_rows=np.asarray(train_rows),
        validation_rows=np.asarray(validation_rows, dtype=int),
        schedule=Schedule(4, max_epochs, patience),
        device=device,
        generator=np.random.RandomState(0),
        seed=0,
        optimizer=make_adamw(module.parameters(), lr=1e-2, weight_decay=0.0),
        targets=targets,
        **kwargs,
    )


def test_fit_loop_stops_after_the_patience_and_keeps_the_best_epoch():
    # Validation losses that improve until epoch 24, then stay flat: with a patience of 12 the run ends after epoch
    # 36 and keeps epoch 24's weights.
    validation = iter([10.0 - epoch for epoch in range(24)] + [100.0] * 100)

    def loss_fn(module, x, batch_targets, generator=None):
        return module(x).mean() * 0 + (1.0 if module.training else next(validation))

    module, device = _Linear(), torch.device("cpu")
    result = fit_loop(
        module,
        loss_fn,
        reader=_reading.BatchReader(np.ones((8, 3), dtype=np.float32), device),
        train_rows=np.arange(6),
        validation_rows=np.arange(6, 8),
        schedule=Schedule(6, 500, 12),
        device=device,
        generator=np.random.RandomState(0),
        seed=0,
        optimizer=make_adamw(module.parameters(), lr=1e-2, weight_decay=0.0),
    )
    assert (result.best_epoch, result.n_epochs, result.stop_reason) == (24, 36, "early_stopping")


def test_fit_loop_early_stopping_keeps_the_best_weights_and_says_why():
    X = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    targets = torch.from_numpy(X @ np.array([1.0, -2.0, 0.5], dtype=np.float32))
    rng = np.random.default_rng(1)

    def noisy_validation(module, x, batch_targets, generator=None):
        # Training steps learn; the validation loss is noise, so it stops improving at once.
        if generator is not None:
            return torch.tensor(float(rng.random()))
        return ((module(x) - batch_targets) ** 2).mean()

    module = _Linear()
    result = _run(
        module,
        noisy_validation,
        X,
        train_rows=np.arange(30),
        validation_rows=np.arange(30, 40),
        targets=targets,
        max_epochs=50,
        patience=3,
        early_stopping=True,
    )
    losses = result.history["validation_loss"]
    assert result.stop_reason == "early_stopping" and result.n_epochs < 50 and result.restored_best
    assert result.best_epoch == int(np.argmin(losses)) + 1 and result.n_epochs == result.best_epoch + 3
    assert not module.training
    full = _run(_Linear(), noisy_validation, X, train_rows=np.arange(30), targets=targets, max_epochs=4)
    assert full.stop_reason == "max_epochs" and full.n_epochs == 4 and not full.restored_best


def test_fit_loop_after_step_and_divergence():
    X = np.ones((8, 3), dtype=np.float32)
    steps = []
    _run(
        _Linear(),
        lambda m, x, t, generator=None: m(x).pow(2).mean(),
        X,
        train_rows=np.arange(8),
        max_epochs=3,
        after_step=lambda module: steps.append(1),
    )
    assert len(steps) == 6  # 2 steps per epoch
    with pytest.raises(FloatingPointError, match="Toy training diverged.*learning_rate"):
        _run(_Linear(), lambda m, x, t, generator=None: m(x).sum() * np.inf, X, train_rows=np.arange(8), name="Toy")


@pytest.mark.parametrize("scale", [1e-3, 1e3])
def test_clip_gradients_gives_clip_grad_norms_values_bit_for_bit(scale):
    # Within the norm (scale 1e-3) the CPU path skips clip_grad_norm_'s multiplication by 1; above it (1e3) it
    # scales. Either way the gradients must be exactly clip_grad_norm_'s.
    torch.manual_seed(0)
    modules = [torch.nn.Sequential(torch.nn.Linear(30, 20), torch.nn.ReLU(), torch.nn.Linear(20, 5)) for _ in range(2)]
    modules[1].load_state_dict(modules[0].state_dict())
    x = torch.randn(16, 30)
    for module in modules:
        (module(x).square().sum() * scale).backward()
    modules[1][2].bias.grad = None  # a parameter without a gradient is left out, as clip_grad_norm_ does
    modules[0][2].bias.grad = None
    torch.nn.utils.clip_grad_norm_(modules[0].parameters(), MAX_GRAD_NORM)
    clip_gradients(modules[1])
    norm = torch.nn.utils.get_total_norm([p.grad for p in modules[1].parameters() if p.grad is not None])
    assert (norm <= MAX_GRAD_NORM * (1 + 1e-5)) and (scale < 1 or norm >= MAX_GRAD_NORM * (1 - 1e-5))
    for reference, ours in zip(modules[0].parameters(), modules[1].parameters()):
        assert (reference.grad is None and ours.grad is None) or torch.equal(reference.grad, ours.grad)


def test_importing_skssl_turns_on_torchs_huge_page_allocations_unless_the_user_chose():
    import skssl  # noqa: F401  (the test session imported it already; this names what the test is about)

    assert os.environ.get("THP_MEM_ALLOC_ENABLE") is not None
    code = "import os, skssl; print(os.environ['THP_MEM_ALLOC_ENABLE'])"
    for preset, expected in [(None, "1"), ("0", "0")]:
        env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
        if preset is not None:
            env["THP_MEM_ALLOC_ENABLE"] = preset
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected
