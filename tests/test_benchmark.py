"""The label-efficiency benchmark: protocol, no leakage, outputs, command line and argument errors (tiny configs)."""

import csv
import math
import sys

import numpy as np
import pytest
import torch

from skssl.benchmark import (
    METHODS,
    _report,
    label_efficiency,
    labeled_subsets,
    summarize,
    train_test_indices,
)
from skssl.benchmark.__main__ import main
from skssl.datasets import make_expression

TINY_EMBEDDER = {"max_epochs": 2, "hidden_dims": (16,), "n_components": 4}
TINY_CLASSIFIER = {"max_epochs": 3}
COLUMNS = [
    "dataset",
    "method",
    "seed",
    "fraction",
    "n_labeled",
    "n_train",
    "n_test",
    "n_features",
    "accuracy",
    "balanced_accuracy",
    "f1_macro",
    "roc_auc",
    "fit_seconds",
    "pretrain_seconds",
]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # The networks here are tiny: one thread is fastest, and immune to a busy machine's oversubscription.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tiny():
    return make_expression(n_samples=72, n_genes=30, random_state=0)


def _run(X, y, **kwargs):
    params = {
        "fractions": [0.2, 1.0],
        "seeds": [0],
        "embedder_params": TINY_EMBEDDER,
        "classifier_params": TINY_CLASSIFIER,
        "device": "cpu",
        "as_frame": False,
    }
    params.update(kwargs)
    return label_efficiency(X, y, **params)


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------------------------- protocol


def test_rows_one_per_run(tiny):
    X, y = tiny
    methods = ["logreg", "pca_logreg", "vime_probe", "scarf_finetune"]
    results = _run(X, y, methods=methods, seeds=[0, 1])
    assert len(results) == len(methods) * 2 * 2
    assert list(results[0]) == COLUMNS
    assert {(r["method"], r["seed"], r["fraction"]) for r in results} == {
        (m, s, f) for m in methods for s in (0, 1) for f in (0.2, 1.0)
    }
    for r in results:
        assert r["n_train"] + r["n_test"] == 72 and r["n_test"] == 18
        assert r["n_features"] == 30
        assert 3 <= r["n_labeled"] <= r["n_train"]
        if r["fraction"] == 1.0:
            assert r["n_labeled"] == r["n_train"]
        for metric in ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc"):
            assert 0.0 <= r[metric] <= 1.0
        has_pretraining = r["method"] != "logreg"
        assert math.isnan(r["pretrain_seconds"]) != has_pretraining
    summary = summarize(results, as_frame=False)
    assert len(summary) == len(methods) * 2
    assert all(row["n_runs"] == 2 for row in summary)


def test_every_method_runs(tiny):
    X, y = tiny
    results = _run(X, y, methods="all", fractions=[1.0])
    assert [r["method"] for r in results] == list(METHODS)


def test_splits_are_stratified_and_nested():
    y = np.array([0] * 30 + [1] * 12 + [2] * 6)
    train, test = train_test_indices(y, test_size=0.25, random_state=3)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(y)
    assert set(y[test]) == {0, 1, 2} and set(y[train]) == {0, 1, 2}
    subsets = labeled_subsets(y[train], [0.05, 0.5, 1.0], random_state=3)
    for rows in subsets.values():
        assert set(y[train][rows]) == {0, 1, 2}  # >= 1 per class, even at 5 %
    assert set(subsets[0.05]) <= set(subsets[0.5]) <= set(subsets[1.0])
    assert len(subsets[1.0]) == len(train)
    # Deterministic per seed.
    again = labeled_subsets(y[train], [0.05, 0.5, 1.0], random_state=3)
    assert all(np.array_equal(subsets[f], again[f]) for f in subsets)


# ----------------------------------------------------------------------------------------------- no leakage


def _fitted_arrays(obj, prefix="", out=None, seen=None):
    """Every fitted array of an estimator (sklearn attributes ending in '_', torch state dicts), recursively."""
    out = {} if out is None else out
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return out
    seen.add(id(obj))
    if isinstance(obj, torch.nn.Module):
        for key, value in obj.state_dict().items():
            out[f"{prefix}{key}"] = value.detach().cpu().numpy().copy()
        return out
    if hasattr(obj, "steps"):  # Pipeline
        for name, step in obj.steps:
            _fitted_arrays(step, f"{prefix}{name}.", out, seen)
        return out
    for key, value in vars(obj).items():
        if not key.endswith("_") or key.startswith("_"):
            continue
        if isinstance(value, np.ndarray) and value.dtype.kind in "fiub":
            out[f"{prefix}{key}"] = value.copy()
        elif isinstance(value, torch.nn.Module) or hasattr(value, "get_params"):
            _fitted_arrays(value, f"{prefix}{key}.", out, seen)
    return out


def test_no_leakage_from_the_test_split(tiny):
    """Changing the test-split values changes no fitted model, and no prediction on the train rows."""
    X, y = tiny
    methods = ["logreg", "pca_logreg", "ssl_ensemble", "mlp_scratch", "vime_probe", "scarf_finetune", "vae_finetune"]
    seed, test_size = 1, 0.25

    def capture(store):
        def callback(run):
            X_train = run["X_train"]  # what the models were fitted on (after the gene filter)
            model, pre = run["estimator"], run["pretrained"]
            features = (
                X_train if pre is None or run["record"]["method"].endswith("_finetune") else pre.transform(X_train)
            )
            assert set(run["labeled_index"]) <= set(run["train_index"])
            assert not set(run["train_index"]) & set(run["test_index"])
            store.append(
                {
                    "method": run["record"]["method"],
                    "fraction": run["record"]["fraction"],
                    "test_index": run["test_index"],
                    "model": _fitted_arrays(model),
                    "pretrained": {} if pre is None else _fitted_arrays(pre),
                    "gene_filter": _fitted_arrays(run["gene_filter"]),
                    "X_train": X_train.copy(),
                    "train_proba": model.predict_proba(features),
                    "record": run["record"],
                }
            )

        return callback

    first, second = [], []
    common = {"methods": methods, "seeds": [seed], "test_size": test_size, "top_genes": 20}
    _run(X, y, callback=capture(first), **common)

    _, test = train_test_indices(y, test_size=test_size, random_state=seed)
    X_perturbed = X.copy()
    rng = np.random.default_rng(0)
    X_perturbed[test] = rng.permutation(X_perturbed[test].ravel()).reshape(len(test), -1) * 3.0 + 5.0
    assert not np.allclose(X_perturbed[test], X[test])
    _run(X_perturbed, y, callback=capture(second), **common)

    assert len(first) == len(second) == len(methods) * 2
    changed_scores = 0
    for a, b in zip(first, second):
        assert (a["method"], a["fraction"]) == (b["method"], b["fraction"])
        assert np.array_equal(a["test_index"], test)
        np.testing.assert_array_equal(a["X_train"], b["X_train"])
        assert a["X_train"].shape[1] == 20 and "support_" in a["gene_filter"]
        for part in ("model", "pretrained", "gene_filter"):
            assert a[part].keys() == b[part].keys()
            for key in a[part]:
                assert np.array_equal(a[part][key], b[part][key]), f"{a['method']}: {part} {key} saw the test split"
        assert len(a["model"]) > 0
        np.testing.assert_array_equal(a["train_proba"], b["train_proba"])
        changed_scores += a["record"]["f1_macro"] != b["record"]["f1_macro"] or (
            a["record"]["roc_auc"] != b["record"]["roc_auc"]
        )
    assert changed_scores > 0  # the perturbation did reach the evaluation


# ----------------------------------------------------------------------------------------------- outputs, CLI


def test_cli_writes_the_four_files(tmp_path, capsys):
    out = tmp_path / "bench"
    status = main(
        [
            "--quick",
            "--out",
            str(out),
            "--methods",
            "logreg",
            "vime_probe",
            "--seeds",
            "0",
            "1",
            "--fractions",
            "0.5",
            "1",
        ]
    )
    assert status == 0
    for name in ("results.csv", "summary.csv", "macro_f1.png", "report.md"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    results = _read_csv(out / "results.csv")
    assert len(results) == 2 * 2 * 2 and list(results[0]) == COLUMNS
    summary = _read_csv(out / "summary.csv")
    assert [(r["method"], float(r["fraction"])) for r in summary] == [
        ("logreg", 0.5),
        ("logreg", 1.0),
        ("vime_probe", 0.5),
        ("vime_probe", 1.0),
    ]
    report = (out / "report.md").read_text()
    for text in (
        "![macro-F1 vs labeled fraction](macro_f1.png)",
        "Seeds**: 0, 1",
        "Wall time",
        "Torch device",
        "90 samples × 60 genes",
        "| VIME embedding + logistic regression (`vime_probe`) |",
    ):
        assert text in report, text
    captured = capsys.readouterr()
    assert "[8/8]" in captured.err and "results.csv" in captured.out


def test_without_pandas_and_matplotlib(tmp_path, monkeypatch, capsys, tiny):
    def no_pandas():
        raise ImportError("No module named 'pandas'")

    # sklearn has imported pandas already, so it is hidden from the benchmark's lazy import only.
    monkeypatch.setattr(_report, "_import_pandas", no_pandas)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    X, y = tiny
    results = label_efficiency(X, y, methods=["logreg"], fractions=[1.0], seeds=[0])
    assert isinstance(results, list) and results[0]["method"] == "logreg"
    with pytest.raises(ImportError, match="pandas"):
        label_efficiency(X, y, methods=["logreg"], fractions=[1.0], seeds=[0], as_frame=True)
    out = tmp_path / "nolibs"
    assert main(["--quick", "--out", str(out), "--methods", "logreg", "--no-progress"]) == 0
    assert {p.name for p in out.iterdir()} == {
        "results.csv",
        "summary.csv",
        "report.md",
        "journal.jsonl",  # the journal of finished runs that --resume continues from
        "journal_config.json",
    }
    assert "matplotlib is not installed" in capsys.readouterr().err
    assert "Plot skipped" in (out / "report.md").read_text()


def test_dataframe_output(tiny):
    pd = pytest.importorskip("pandas")
    X, y = tiny
    results = label_efficiency(X, y, methods=["logreg"], fractions=[0.5, 1.0], seeds=2)
    assert isinstance(results, pd.DataFrame) and list(results.columns) == COLUMNS and len(results) == 4
    summary = summarize(results)
    assert isinstance(summary, pd.DataFrame) and len(summary) == 2
    assert summary["f1_macro_sd"].notna().all()


def _write_table(tmp_path, X, sample_rows, header):
    expression = tmp_path / "toy.expression.csv"
    with open(expression, "w") as f:
        f.write("sample_id," + ",".join(f"g{j}" for j in range(X.shape[1])) + "\n")
        f.writelines(f"s{i}," + ",".join(f"{v:.4f}" for v in row) + "\n" for i, row in enumerate(X))
    samples = tmp_path / "toy.samples.csv"
    with open(samples, "w") as f:
        f.write(header + "\n")
        f.writelines(row + "\n" for row in sample_rows)
    return expression, samples


def test_cli_on_a_table_with_labels(tmp_path):
    counts, y = make_expression(n_samples=40, n_genes=25, output="counts", random_state=1)
    names = np.array(["tumour", "normal", "metastasis"])[y]
    rows = [f"s{i},{'NA' if i == 3 else names[i]},{i}" for i in range(40)]
    _write_table(tmp_path, counts, rows, "sample_id,tissue,age")
    out = tmp_path / "out"
    # Named data set resolved in --data-dir; the sample table is found next to it.
    argv = ["--data", "toy", "--data-dir", str(tmp_path), "--label-column", "tissue", "--quick", "--out", str(out)]
    assert main([*argv, "--methods", "logreg", "pca_logreg", "--no-progress", "--top-genes", "10"]) == 0
    report = (out / "report.md").read_text()
    assert "39 samples × 25 genes" in report and "1 sample(s) without a label dropped" in report
    assert "log1p applied (auto rule" in report  # counts: non-negative with a maximum above 100
    assert "10 most variable genes" in report
    results = _read_csv(out / "results.csv")
    assert {r["n_features"] for r in results} == {"10"} and {r["dataset"] for r in results} == {"toy"}


def test_cli_errors(tmp_path, capsys):
    counts, y = make_expression(n_samples=20, n_genes=12, random_state=1)
    rows = [f"s{i},{y[i]}" for i in range(20)]
    expression, samples = _write_table(tmp_path, counts, rows, "sample_id,group")
    base = ["--data", str(expression), "--labels", str(samples), "--out", str(tmp_path / "o"), "--quick"]
    with pytest.raises(SystemExit) as exc:
        main([*base, "--label-column", "cancer"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "'cancer' is not in the sample table" in err and "group" in err
    with pytest.raises(SystemExit):
        main(base)  # no --label-column
    assert "--label-column is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--label-column", "group", "--methods", "logreg", "simclr"])
    err = capsys.readouterr().err
    assert "Unknown method 'simclr'" in err and "scarf_probe" in err
    with pytest.raises(SystemExit):
        main(["--data", "no_such_set", "--data-dir", str(tmp_path)])
    assert "toy" in capsys.readouterr().err  # lists the data sets found
    with pytest.raises(SystemExit):
        main(["--fractions", "0", "--quick"])
    assert "(0, 1]" in capsys.readouterr().err


def test_argument_errors(tiny):
    X, y = tiny
    with pytest.raises(ValueError, match="Unknown method 'simclr'.*logreg.*vae_finetune"):
        label_efficiency(X, y, methods=["logreg", "simclr"])
    for bad in ([0.0], [1.5], [-0.1], [float("nan")]):
        with pytest.raises(ValueError, match=r"\(0, 1\]"):
            label_efficiency(X, y, methods=["logreg"], fractions=bad)
    y_rare = y.copy()
    y_rare[0] = 7  # a class with a single sample
    with pytest.raises(ValueError, match="Too few samples per class.*7"):
        label_efficiency(X, y_rare, methods=["logreg"], fractions=[1.0], seeds=[0])
    with pytest.raises(ValueError, match="at least 2"):
        label_efficiency(X, np.zeros(len(y)), methods=["logreg"])
    with pytest.raises(ValueError, match="samples but y has"):
        label_efficiency(X[:-1], y, methods=["logreg"], fractions=[1.0], seeds=[0])
    with pytest.raises(ValueError, match="missing labels"):
        label_efficiency(X, np.where(y == 0, np.nan, y), methods=["logreg"])
    with pytest.raises(ValueError, match="top_genes"):
        label_efficiency(X, y, methods=["logreg"], top_genes=0)
    with pytest.raises(ValueError, match="Seeds"):
        label_efficiency(X, y, methods=["logreg"], seeds=[-1])


# ----------------------------------------------------------------------------------------------- shared data


@pytest.mark.data
def test_shared_tcga_quick(shared_data_dir, tmp_path):
    out = tmp_path / "tcga"
    argv = ["--data", "tcga_acc.RNASeq2GeneNorm", "--data-dir", str(shared_data_dir), "--label-column", "C1A.C1B"]
    assert main([*argv, "--quick", "--methods", "logreg", "--out", str(out), "--no-progress"]) == 0
    report = (out / "report.md").read_text()
    assert "log1p applied" in report and "C1A" in report and "78 samples × 198 genes" in report


def test_report_opens_with_a_verdict_against_the_better_baseline():
    from skssl.benchmark._report import verdict

    def rec(method, seed, fraction, f1):
        return {"method": method, "seed": seed, "fraction": fraction, "f1_macro": f1}

    records = []
    for seed, (lr, pca, ours) in enumerate([(0.5, 0.6, 0.7), (0.5, 0.7, 0.6), (0.4, 0.6, 0.8)]):
        records += [
            rec("logreg", seed, 0.1, lr),
            rec("pca_logreg", seed, 0.1, pca),
            rec("ssl_ensemble", seed, 0.1, ours),
        ]
        records += [
            rec("logreg", seed, 1.0, 0.9),
            rec("pca_logreg", seed, 1.0, 0.8),
            rec("ssl_ensemble", seed, 1.0, 0.9),
        ]
    text = verdict(records)
    assert text.startswith("**Verdict.**")
    assert "0.1: SSLClassifier() (`ssl_ensemble`) (0.700)" in text
    assert "1: logistic regression on the genes (`logreg`) (0.900)" in text
    # Paired: against pca_logreg (the better baseline at 0.1), higher on seeds 0 and 2.
    assert "0.1: +0.067 against PCA + logistic regression (`pca_logreg`) (higher on 2 of 3 seeds)" in text
    assert "1: +0.000 against logistic regression on the genes (`logreg`) (higher on 0 of 3 seeds, equal on 3)" in text


# ----------------------------------------------------------------------------------------------- method registry


def test_the_registry_drives_the_cli_and_the_report(capsys):
    from skssl.benchmark import DEFAULT_METHODS
    from skssl.benchmark.__main__ import build_parser
    from skssl.benchmark._methods import BASELINE_METHODS, PRETRAINED, RECOMMENDED_METHOD, Method

    assert isinstance(METHODS, dict) and list(METHODS)[:2] == ["logreg", "pca_logreg"]
    for name, method in METHODS.items():
        assert isinstance(method, Method) and method.name == name and method.description
        assert method.pretrained is None or method.pretrained in PRETRAINED
    assert set(DEFAULT_METHODS) | set(BASELINE_METHODS) | {RECOMMENDED_METHOD} <= set(METHODS)

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    # argparse wraps the epilog's lines; compare without the line breaks.
    help_text = " ".join(capsys.readouterr().out.split())
    for name, method in METHODS.items():
        marker = "*" if name in DEFAULT_METHODS else ""
        assert f"{name}{marker} {' '.join(method.description.split())}" in help_text, name

    args = build_parser().parse_args(["--methods", "logreg,vime_probe", "default"])
    assert args.methods == [("logreg", "vime_probe"), ("default",)]
    assert build_parser().parse_args([]).methods == [("default",)]


def test_classifier_step_budget_is_the_estimators_schedule_rule():
    from skssl._training import resolve_schedule
    from skssl.benchmark._methods import epochs_for_steps, with_budget

    # 40 rows: 4 held out for early stopping, batches of 32 -> 2 steps per epoch -> 150 epochs for 300 steps.
    assert epochs_for_steps(40, 300, {}) == 150 == resolve_schedule(36, steps=300).max_epochs
    assert epochs_for_steps(40, 300, {"early_stopping": False, "batch_size": 10}) == 75
    # Large labeled sets: the estimators' minimum of 3 epochs (the benchmark's own rule used to say 10).
    assert epochs_for_steps(100_000, 300, {}) == 3
    assert with_budget({"max_epochs": 7}, 40, 300) == {"max_epochs": 7}
    assert with_budget({}, 40, None) == {}


def test_verdict_says_whether_any_self_supervised_method_beat_the_baselines():
    from skssl.benchmark._report import verdict

    def rec(method, fraction, f1):
        return {"method": method, "seed": 0, "fraction": fraction, "f1_macro": f1}

    records = [rec("logreg", 0.1, 0.5), rec("pca_logreg", 0.1, 0.6), rec("vime_probe", 0.1, 0.55)]
    records += [rec("logreg", 1.0, 0.9), rec("pca_logreg", 1.0, 0.8), rec("vime_probe", 1.0, 0.95)]
    expected = "Self-supervised methods above the better baseline: VIME embedding + logistic regression (`vime_probe`)"
    assert expected + " at 1 (+0.050)." in verdict(records)
    records[-1]["f1_macro"] = 0.85
    assert "No self-supervised method (the embedders' probes and fine-tunings) beat" in verdict(records)


def test_every_method_has_its_own_line_style_in_the_plots():
    from skssl.benchmark._methods import METHODS
    from skssl.benchmark._report import _style
    from skssl.benchmark._transfer import TRANSFER_METHODS

    for names in (METHODS, TRANSFER_METHODS):
        styles = [_style(name) for name in names]
        assert len(set(styles)) == len(styles), "two methods would be drawn alike"
        assert all(color is not None for color, _, _ in styles)
