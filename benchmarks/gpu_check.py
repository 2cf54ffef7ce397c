"""Device check (issue 14): does every estimator train on the GPU, agree with the CPU, and how fast is an epoch?

One script, under 5 minutes on one GPU at the default sizes. Sections, each printing plain text lines:

1. ``fit``: every estimator (MaskedAutoencoder, ContrastiveEmbedder with ``objective="scarf"`` and ``"byol"``,
   VAEEmbedder with ``likelihood="gaussian"`` and ``"nb"``, SSLClassifier with its default ensemble and with
   ``strategy="finetune"``) fits on ``--device`` in ``precision="float32"`` and ``"bf16"`` and gives finite
   outputs: one line ``fit <estimator> precision=<p> device=<d>: ok|FAILED``.
2. ``agree``: the same weights embed the same on the CPU and on the device (a model fitted on the device, copied to
   the CPU by pickling, compared with its own device embedding; max abs difference against a stated tolerance),
   and the same seed trains to the same final loss on the CPU and the device (relative difference of the last
   training loss against a tolerance: the corruptions are drawn from the device's own random generator, so the
   weights themselves differ between devices, not the loss they reach).
3. ``pickle``: a model fitted on the device pickles, loads and predicts on the CPU.
4. ``throughput``: samples/s of one epoch of ``MaskedAutoencoder(precision="bf16", batch_size=--batch-size)``'s
   own ``fit`` on a ``--rows`` x ``--genes`` float32 matrix in host memory (default 100 000 x 20 000, 8 GB), timed
   as ``fit`` with 2 epochs (101 with ``--quick``) minus ``fit`` with 1, each the fastest of 3
   (``early_stopping=False``: set-up and the end-of-fit pass cancel), with the fraction of the bf16 matmul FLOP/s
   measured in the same run (a large ``torch.matmul``) that the epoch reaches (FLOPs per sample counted by
   ``torch.utils.flop_counter`` the same way on a few rows); peak GPU memory (``torch.cuda.max_memory_allocated``).

Ends with ``summary: N ok, M failed``; exit status 1 when something failed. Without a CUDA device,
``--device cuda`` (the default) prints ``skipped: ...`` and exits 0. Public API only.

Usage::

    python benchmarks/gpu_check.py                        # cuda, full size
    python benchmarks/gpu_check.py --rows 20000 --genes 2000 --json gpu_check.json
    python benchmarks/gpu_check.py --device cpu --rows 200 --genes 50 --quick   # what the test suite runs

Not run on a GPU in this project yet: the numbers of a first run belong in ``docs/performance.md``. (Its
predecessor, ``dev/gpu_check.py`` at commit 477fbb3, timed a hand-written loop over the estimator's private network
with the data resident on the GPU in bf16; this one times the public ``fit``.)
"""

from __future__ import annotations

import argparse
import io
import json
import math
import pickle
import platform
import resource
import sys
import time
import traceback

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

import skssl
from skssl import ContrastiveEmbedder, MaskedAutoencoder, SSLClassifier, VAEEmbedder, make_expression

PRECISIONS = ("float32", "bf16")
# Same weights, same input: CPU (MKL) and GPU (cuBLAS) sum in different orders; float32 rounding of ~1e-7
# relative per operation over a few layers stays far below this (absolute, embeddings are O(1)).
SAME_WEIGHTS_TOLERANCE = 1e-3
# Same seed, same data, different random streams (corruptions drawn on the device): the last training loss of
# the CPU and the device run may differ by this fraction of the CPU's.
SAME_SEED_LOSS_TOLERANCE = 0.25


def embedders(device, precision, epochs, seed=0):
    """(name, estimator) of every embedder configuration checked."""
    common = dict(device=device, precision=precision, max_epochs=epochs, random_state=seed)
    return [
        ("MaskedAutoencoder", MaskedAutoencoder(**common)),
        ("ContrastiveEmbedder(scarf)", ContrastiveEmbedder(**common)),
        ("ContrastiveEmbedder(byol)", ContrastiveEmbedder(objective="byol", **common)),
        ("VAEEmbedder(gaussian)", VAEEmbedder(likelihood="gaussian", **common)),
        ("VAEEmbedder(nb)", VAEEmbedder(likelihood="nb", **common)),
    ]


def classifiers(device, precision, epochs, seed=0):
    """(name, estimator) of the SSLClassifier configurations; ``precision`` reaches them through the embedder
    (SSLClassifier has no precision of its own: the fine-tuning head trains in float32)."""
    embedder = MaskedAutoencoder(device=device, precision=precision, max_epochs=epochs, random_state=seed)
    return [
        ("SSLClassifier(ensemble)", SSLClassifier(embedder=embedder, device=device, random_state=seed)),
        (
            "SSLClassifier(finetune)",
            SSLClassifier(embedder=embedder, strategy="finetune", max_epochs=epochs, device=device, random_state=seed),
        ),
    ]


def input_for(name, X_log, counts):
    """The VAE with a negative-binomial likelihood models raw counts; everything else log-expression."""
    return counts if name == "VAEEmbedder(nb)" else X_log


class Report:
    """Collects result lines (printed at once, flushed) and the JSON record."""

    def __init__(self):
        self.record = {"checks": [], "failed": 0, "ok": 0}

    def line(self, text):
        print(text, flush=True)

    def check(self, section, name, ok, detail="", **values):
        self.record["checks"].append({"section": section, "name": name, "ok": bool(ok), "detail": detail, **values})
        self.record["ok" if ok else "failed"] += 1
        self.line(f"{section} {name}: {'ok' if ok else 'FAILED'}{' ' + detail if detail else ''}")


def fit_section(report, device, X_log, counts, y_semi, epochs):
    fitted = {}
    for precision in PRECISIONS:
        for name, estimator in embedders(device, precision, epochs) + classifiers(device, precision, epochs):
            start = time.perf_counter()
            try:
                X = input_for(name, X_log, counts)
                if name.startswith("SSLClassifier"):
                    estimator.fit(X, y_semi)
                    output = estimator.predict_proba(X)
                else:
                    output = estimator.fit_transform(X)
                ok = bool(np.all(np.isfinite(output)))
                detail = f"({time.perf_counter() - start:.1f} s, output {output.shape}{'' if ok else ', NOT finite'})"
                fitted[(name, precision)] = estimator
            except Exception as exc:  # a check reports every failure, then goes on
                ok, detail = False, f"{type(exc).__name__}: {exc}"
                traceback.print_exc(file=sys.stderr)
            report.check("fit", f"{name} precision={precision} device={device}", ok, detail)
    return fitted


def agree_section(report, device, fitted, X_log, counts, epochs):
    report.line(
        f"tolerance same-weights max abs difference {SAME_WEIGHTS_TOLERANCE:g}; "
        f"same-seed relative difference of the last training loss {SAME_SEED_LOSS_TOLERANCE:g}"
    )
    for name, _ in embedders(device, "float32", epochs):
        estimator = fitted.get((name, "float32"))
        if estimator is None:
            report.check("agree", f"{name} same-weights", False, "(not fitted)")
            continue
        X = input_for(name, X_log, counts)
        try:
            on_device = estimator.transform(X)
            on_cpu = pickle.loads(pickle.dumps(estimator)).transform(X)
            difference = float(np.max(np.abs(on_device - on_cpu)))
            report.check(
                "agree",
                f"{name} same-weights cpu vs {device}",
                difference <= SAME_WEIGHTS_TOLERANCE,
                f"max abs difference {difference:.3g} (tolerance {SAME_WEIGHTS_TOLERANCE:g})",
                max_abs_difference=difference,
                tolerance=SAME_WEIGHTS_TOLERANCE,
            )
            cpu_fit = type(estimator)(**{**estimator.get_params(), "device": "cpu"}).fit(X)
            cpu_loss, device_loss = cpu_fit.history_["train_loss"][-1], estimator.history_["train_loss"][-1]
            relative = abs(device_loss - cpu_loss) / max(abs(cpu_loss), 1e-12)
            embedding_difference = float(np.max(np.abs(cpu_fit.transform(X) - on_cpu)))
            report.check(
                "agree",
                f"{name} same-seed cpu vs {device}",
                relative <= SAME_SEED_LOSS_TOLERANCE,
                f"last train loss {cpu_loss:.4g} vs {device_loss:.4g}, relative difference {relative:.3g} "
                f"(tolerance {SAME_SEED_LOSS_TOLERANCE:g}); embeddings max abs difference {embedding_difference:.3g} "
                "(not compared: different random streams)",
                relative_loss_difference=relative,
                tolerance=SAME_SEED_LOSS_TOLERANCE,
                embedding_max_abs_difference=embedding_difference,
            )
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            report.check("agree", name, False, f"{type(exc).__name__}: {exc}")


def torch_modules(value, depth=0):
    """The torch modules held by a fitted estimator, also inside fitted sub-estimators and lists of them."""
    if isinstance(value, torch.nn.Module):
        yield value
    elif depth < 4 and isinstance(value, (list, tuple)):
        for item in value:
            yield from torch_modules(item, depth + 1)
    elif depth < 4 and hasattr(value, "get_params"):
        for item in vars(value).values():
            yield from torch_modules(item, depth + 1)


def pickle_section(report, device, fitted, X_log, y_semi):
    for name in ("SSLClassifier(ensemble)", "SSLClassifier(finetune)", "MaskedAutoencoder"):
        estimator = fitted.get((name, "bf16")) or fitted.get((name, "float32"))
        if estimator is None:
            report.check("pickle", name, False, "(not fitted)")
            continue
        try:
            buffer = io.BytesIO()
            pickle.dump(estimator, buffer)
            loaded = pickle.loads(buffer.getvalue())
            modules = list(torch_modules(loaded))
            on_cpu = all(p.device.type == "cpu" for m in modules for p in m.parameters())
            output = loaded.predict(X_log) if name.startswith("SSLClassifier") else loaded.transform(X_log)
            report.check(
                "pickle",
                f"{name} fitted on {device}, predicts on cpu",
                on_cpu and np.all(np.isfinite(np.asarray(output, dtype=float))),
                f"({buffer.getbuffer().nbytes / 1e6:.2f} MB, {len(modules)} torch modules, all on cpu: {on_cpu})",
            )
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            report.check("pickle", name, False, f"{type(exc).__name__}: {exc}")


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops(device, size, repeats):
    """FLOP/s of a ``size`` x ``size`` matmul: bf16 on the GPU; float32 on the CPU (where bf16 is emulated)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    torch.matmul(a, b)  # warm-up: kernel selection, clocks
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.matmul(a, b)
    synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start), str(dtype).removeprefix("torch.")


def synthetic_matrix(rows, genes, device, seed=0):
    """Low-rank log-expression-like float32 data (rows x genes) in host memory, drawn on ``device`` in chunks."""
    generator = torch.Generator(device=device).manual_seed(seed)
    loadings = torch.randn(16, genes, device=device, generator=generator)
    matrix = np.empty((rows, genes), dtype=np.float32)
    chunk = max(1, 2**28 // genes)
    for start in range(0, rows, chunk):
        stop = min(start + chunk, rows)
        factors = torch.randn(stop - start, 16, device=device, generator=generator)
        block = 3.0 + factors @ loadings + 0.5 * torch.randn(stop - start, genes, device=device, generator=generator)
        matrix[start:stop] = block.clamp_(min=0.0).cpu().numpy()
    return matrix


def throughput_estimator(device, batch_size, epochs):
    return MaskedAutoencoder(
        device=device, precision="bf16", batch_size=batch_size, max_epochs=epochs, early_stopping=False, random_state=0
    )


def timed_fit(device, X, batch_size, epochs):
    synchronize(device)
    start = time.perf_counter()
    fitted = throughput_estimator(device, batch_size, epochs).fit(X)
    synchronize(device)
    return time.perf_counter() - start, fitted


def flops_per_sample(device, X, batch_size):
    """Training FLOPs per sample of one epoch: fit with 2 epochs minus fit with 1, under FlopCounterMode."""
    counts = []
    for epochs in (1, 2):
        with FlopCounterMode(display=False) as counter:
            throughput_estimator(device, batch_size, epochs).fit(X)
        counts.append(counter.get_total_flops())
    return (counts[1] - counts[0]) / len(X)


def throughput_section(report, device, rows, genes, batch_size, matmul_size, matmul_repeats, epochs):
    """One bf16 training epoch of MaskedAutoencoder's own fit (public API), as the difference of two fits."""
    flops, matmul_dtype = matmul_flops(device, matmul_size, matmul_repeats)
    report.line(f"throughput matmul {matmul_size}x{matmul_size} {matmul_dtype}: {flops / 1e12:.3f} TFLOP/s")
    try:
        X = synthetic_matrix(rows, genes, device)
        per_sample = flops_per_sample(device, X[: 2 * batch_size], batch_size)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        one = min(timed_fit(device, X, batch_size, 1)[0] for _ in range(3))
        runs = [timed_fit(device, X, batch_size, 1 + epochs) for _ in range(3)]
        more, fitted = min(run[0] for run in runs), runs[-1][1]
        seconds = (more - one) / epochs
        samples_per_s = rows / seconds if seconds > 0 else float("nan")
        model_flops = per_sample * samples_per_s
        fraction = model_flops / flops
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        peak_text = f"{peak:.2f} GiB" if peak is not None else "n/a on cpu"
        loss = fitted.history_["train_loss"][-1]
        report.check(
            "throughput",
            f"MaskedAutoencoder epoch {rows}x{genes} bf16 batch {batch_size} (host float32 data)",
            math.isfinite(loss) and seconds > 0,
            f"{samples_per_s:,.0f} samples/s, {seconds:.2f} s, {model_flops / 1e12:.3f} TFLOP/s = "
            f"{fraction:.1%} of the matmul's; peak GPU memory {peak_text}",
            samples_per_s=samples_per_s,
            epoch_seconds=seconds,
            fit_seconds={"1 epoch": one, f"{1 + epochs} epochs": more},
            model_flops_per_s=model_flops,
            matmul_flops_per_s=flops,
            fraction_of_matmul=fraction,
            peak_gpu_memory_gib=peak,
        )
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        report.check("throughput", "MaskedAutoencoder epoch", False, f"{type(exc).__name__}: {exc}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the throughput epoch (default 100 000)")
    parser.add_argument("--genes", type=int, default=20_000, help="genes of the throughput epoch (default 20 000)")
    parser.add_argument("--batch-size", type=int, default=256, help="batch of the throughput epoch (auto's for big n)")
    parser.add_argument("--check-rows", type=int, default=2000, help="rows of the fit checks (at most --rows)")
    parser.add_argument("--check-genes", type=int, default=1000, help="genes of the fit checks (at most --genes)")
    parser.add_argument("--quick", action="store_true", help="1 epoch per fit, a small matmul: for the test suite")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("skipped: --device cuda but torch sees no CUDA device (use --device cpu for a dry run)")
        return 0
    epochs = 1 if args.quick else 5
    matmul_size, matmul_repeats = (256, 3) if args.quick else ((8192, 50) if device.type == "cuda" else (2048, 3))
    n_check, g_check = min(args.check_rows, args.rows), max(10, min(args.check_genes, args.genes))

    report = Report()
    started = time.perf_counter()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    report.line(
        f"device {device} ({name}); torch {torch.__version__}; skssl {skssl.__version__}; python "
        f"{platform.python_version()}"
    )
    report.record.update(device=str(device), device_name=name, torch=torch.__version__, args=vars(args))

    X_log, y, info = make_expression(n_check, g_check, random_state=0, return_info=True)
    counts = info.counts.astype(np.float32)
    y_semi = y.copy()
    y_semi[np.random.default_rng(0).random(len(y)) > 0.3] = -1  # 30 % labeled
    report.line(f"fit checks on make_expression {n_check} x {g_check}, {epochs} epoch(s), 30 % labeled")

    fitted = fit_section(report, device, X_log, counts, y_semi, epochs)
    agree_section(report, device, fitted, X_log, counts, epochs)
    pickle_section(report, device, fitted, X_log, y_semi)
    throughput_section(
        report,
        device,
        args.rows,
        args.genes,
        min(args.batch_size, args.rows),
        matmul_size,
        matmul_repeats,
        # --quick (the test suite's toy run): 100 extra epochs of one step each, so that the time they add (about
        # 0.7 s) stands well above the scatter of a whole fit's fixed cost (up to 0.07 s seen on a loaded machine);
        # with 4 the difference of the two fits could come out negative and fail the check on timing noise alone.
        epochs=100 if args.quick else 1,
    )

    wall = time.perf_counter() - started
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report.record.update(wall_seconds=wall, peak_rss_mb=peak_rss)
    report.line(f"wall time {wall:.1f} s; peak RSS {peak_rss:.0f} MB")
    report.line(f"summary: {report.record['ok']} ok, {report.record['failed']} failed")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report.record, handle, indent=2)
    return 1 if report.record["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
