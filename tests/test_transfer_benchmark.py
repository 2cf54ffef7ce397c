"""The transfer protocol (skssl-benchmark --transfer): pairing, the gap table, the verdict and the command line."""

import math

import numpy as np
import pytest

from skssl import make_compendium
from skssl.benchmark import __main__ as cli
from skssl.benchmark._transfer import (
    DEFAULT_TRANSFER_METHODS,
    TRANSFER_METHODS,
    check_transfer_methods,
    gap_table,
    transfer_benchmark,
    transfer_verdict,
)

TINY = {"hidden_dims": (8,), "n_components": 3, "max_epochs": 2}


@pytest.fixture(scope="module")
def compendium():
    data = make_compendium(
        n_studies=4, samples_per_study=30, n_genes=40, n_cohort_samples=80, n_cohort_studies=2, random_state=0
    )
    cohorts = np.unique(data.study_cohort)
    X_cohorts = [data.X_cohort[data.study_cohort == s] for s in cohorts]
    y_cohorts = [data.y_cohort[data.study_cohort == s] for s in cohorts]
    return data, X_cohorts, y_cohorts


def _record(method, seed, fraction, f1):
    return {"method": method, "seed": seed, "fraction": fraction, "n_labeled": 10 * fraction, "f1_macro": f1}


def test_gap_table_arithmetic_and_seeds_won():
    records = []
    for seed, (lr5, pre5, lr100) in enumerate([(0.5, 0.7, 0.9), (0.6, 0.5, 0.9), (0.4, 0.6, 0.9)]):
        records += [
            _record("logreg", seed, 0.05, lr5),
            _record("vime_probe", seed, 0.05, pre5),
            _record("logreg", seed, 1.0, lr100),
            _record("vime_probe", seed, 1.0, lr100 - 0.01),
        ]
    rows = {row["fraction"]: row for row in gap_table(records)}
    row = rows[0.05]
    assert row["best_baseline"] == "logreg" and row["best_pretrained"] == "vime_probe"
    assert row["baseline_score"] == pytest.approx(0.5) and row["pretrained_score"] == pytest.approx(0.6)
    assert row["gap_closed"] == pytest.approx((0.6 - 0.5) / (0.9 - 0.5))
    assert (row["seeds_won"], row["seeds"]) == (2, 3)
    assert math.isnan(rows[1.0]["gap_closed"])  # no room left at 100 %: the gap is undefined, not infinite
    assert "recommended_score" not in row  # vime_prefit was not run
    named = records + [_record("vime_prefit", s, f, 0.55) for s in range(3) for f in (0.05, 1.0)]
    row = {r["fraction"]: r for r in gap_table(named)}[0.05]
    assert row["best_pretrained"] == "vime_probe"  # the best pick, and the route named in advance beside it
    assert row["recommended_score"] == pytest.approx(0.55) and row["recommended_seeds_won"] == 2
    assert row["recommended_gap_closed"] == pytest.approx(0.05 / 0.4)
    expected = "SSLClassifier on the VIME embedding (`vime_prefit`), against the same baseline — 0.05: +0.050"
    assert expected + ", higher on 2 of 3 seeds" in transfer_verdict(named)
    text = transfer_verdict(records)
    assert "0.05: VIME embedding + logistic regression (`vime_probe`) +0.100 against logistic regression on" in text
    assert "higher on 2 of 3 seeds" in text
    assert "beat every baseline at fractions 0.05" in text and "but not at 1" in text


def test_verdict_says_when_pretraining_never_wins():
    records = [_record("logreg", s, f, 0.8) for s in range(3) for f in (0.1, 1.0)]
    records += [_record("vime_probe", s, f, 0.7) for s in range(3) for f in (0.1, 1.0)]
    assert "did not beat the best baseline at any labeled fraction" in transfer_verdict(records)


def test_methods_resolve():
    assert check_transfer_methods("default") == DEFAULT_TRANSFER_METHODS
    assert set(check_transfer_methods("all")) == set(TRANSFER_METHODS)
    assert check_transfer_methods("logreg,vime_probe") == ("logreg", "vime_probe")
    with pytest.raises(ValueError, match="Unknown transfer method 'nope'"):
        check_transfer_methods(["nope"])


def test_runs_are_paired_and_pretraining_happens_once(compendium, monkeypatch):
    data, X_cohorts, y_cohorts = compendium
    from skssl.benchmark import _transfer

    calls = []
    real = _transfer.pretrain_on_pool

    def counted(key, X_pool, **kwargs):
        calls.append(key)
        return real(key, X_pool, **kwargs)

    monkeypatch.setattr(_transfer, "pretrain_on_pool", counted)
    seen = {}
    original = _transfer.fit_predict

    def spy(method, pretrained, X_train, y_train, labeled, X_test, **kwargs):
        seen.setdefault((kwargs["seed"], len(labeled)), []).append((X_test.sum(), y_train[labeled].tolist()))
        return original(method, pretrained, X_train, y_train, labeled, X_test, **kwargs)

    monkeypatch.setattr(_transfer, "fit_predict", spy)
    methods = ["logreg", "pool_pca_logreg", "vime_probe", "vime_study_probe"]
    records = transfer_benchmark(
        data.X_pool,
        X_cohorts,
        y_cohorts,
        pool_study=data.study_pool,
        methods=methods,
        fractions=(0.1, 1.0),
        seeds=3,
        embedder_params=TINY,
    )
    assert len(records) == 3 * len(methods) * 2
    assert sorted(calls, key=str) == sorted(["pool_pca", ("vime", False), ("vime", True)], key=str)
    for views in seen.values():  # every method saw the same test block and the same labeled rows
        assert len(views) == len(methods) and all(v == views[0] for v in views)
    assert {r["cohort"] for r in records} == {0, 1}  # seed s scores cohort s mod 2
    assert all(r["n_pool"] == data.X_pool.shape[0] for r in records)


def test_study_methods_need_the_pool_studies(compendium):
    data, X_cohorts, y_cohorts = compendium
    with pytest.raises(ValueError, match="pool_study"):
        transfer_benchmark(data.X_pool, X_cohorts, y_cohorts, methods=["vime_study_probe"], embedder_params=TINY)


def test_cohort_genes_must_match_the_pool(compendium):
    data, X_cohorts, y_cohorts = compendium
    with pytest.raises(ValueError, match="GeneAligner"):
        transfer_benchmark(data.X_pool, [X_cohorts[0][:, :-1]], [y_cohorts[0]], methods=["logreg"])


def test_command_line_quick_run_writes_the_report(tmp_path, capsys):
    out = tmp_path / "transfer"
    status = cli.main(["--transfer", "--quick", "--no-progress", "--out", str(out), "--methods", "logreg,vime_probe"])
    assert status == 0
    report = (out / "report.md").read_text()
    assert "**Verdict.**" in report and "## Gap closed" in report and "make_compendium(" in report
    assert "## Study mixing" in report and "| vime |" in report and "| genes (standardised) |" in report
    assert (out / "pool.npy").exists()  # the pool went to disk and was read back as a memmap
    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert {"method", "seed", "fraction", "f1_macro", "n_pool", "shared"} <= set(header)


def test_command_line_curves(tmp_path):
    out = tmp_path / "curve"
    argv = ["--transfer", "--quick", "--no-progress", "--out", str(out), "--methods", "logreg,pool_pca_logreg"]
    assert cli.main([*argv, "--pool-sizes", "1", "3", "--shared", "0", "1"]) == 0
    curve = (out / "curve.csv").read_text().splitlines()
    pools = {line.split(",")[1] for line in curve[1:]}
    shared = {line.split(",")[0] for line in curve[1:]}
    assert pools == {"40", "120"} and shared == {"0", "1"}
    assert "## Curves over pool size and pool relevance" in (out / "report.md").read_text()


def test_command_line_user_pool(tmp_path, compendium):
    data, X_cohorts, y_cohorts = compendium
    np.save(tmp_path / "pool.npy", np.asarray(data.X_pool))
    np.save(tmp_path / "studies.npy", np.asarray(data.study_pool))
    np.savez(tmp_path / "cohort.npz", X=X_cohorts[0], y=y_cohorts[0])
    argv = ["--transfer", "--no-progress", "--out", str(tmp_path / "o"), "--methods", "logreg,pool_pca_logreg"]
    argv += ["--pool", str(tmp_path / "pool.npy"), "--cohort", str(tmp_path / "cohort.npz"), "--fractions", "0.5", "1"]
    assert cli.main(argv) == 0
    assert "your pool" in (tmp_path / "o" / "report.md").read_text()
    np.savez(tmp_path / "bad.npz", X=X_cohorts[0])
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv[:-5], "--cohort", str(tmp_path / "bad.npz")])
    assert exc.value.code == 2
