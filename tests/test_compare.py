"""`compare` over several settings, checked against an independent pandas groupby with SciPy's
t quantile, on a sweep stored in a real SQLite file and read through the real CLI."""

from __future__ import annotations

import csv
import io
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from orchestrator.report.figures import interval
from orchestrator.store.repository import ResultsStore
from orchestrator.store.views import NewTrial
from tests.helpers import orchestrator

SWEEP = "grid3"
BY = ["loss.temperature", "optim.lr"]


def stored_grid(url: str) -> pd.DataFrame:
    """A 2 x 2 x 3 sweep (temperature, learning rate, seed) with seeded gap values."""
    rng = np.random.default_rng(5)
    rows = []
    with ResultsStore(url) as store:
        store.upsert_sweep(SWEEP, "dual_encoder", "name: grid3\n", "h", ("gap_norm", "min"))
        grid = list(itertools.product([0.01, 0.1], [1e-3, 1e-2], [0, 1, 2]))
        trials = [
            NewTrial(
                f"k{i}",
                f"t{i}",
                i,
                {"seed": seed, "loss": {"temperature": tau}, "optim": {"lr": lr}},
                {"loss.temperature": tau, "optim.lr": lr, "seed": seed},
            )
            for i, (tau, lr, seed) in enumerate(grid)
        ]
        store.register_trials(SWEEP, trials)
        for trial, (tau, lr, seed) in zip(trials, grid, strict=True):
            gap = float(rng.normal(1.0 - tau - 10 * lr, 0.05))
            store.mark_running(SWEEP, trial.key, None, None)
            store.finish_trial(SWEEP, trial.key, "completed", {"gap_norm": gap})
            rows.append({"loss.temperature": tau, "optim.lr": lr, "seed": seed, "gap_norm": gap})
    return pd.DataFrame(rows)


def expected(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    grouped = frame.groupby(by)["gap_norm"].agg(["count", "mean", "std"]).reset_index()
    half = stats.t.ppf(0.975, grouped["count"] - 1) * grouped["std"] / np.sqrt(grouped["count"])
    return grouped.assign(ci_low=grouped["mean"] - half, ci_high=grouped["mean"] + half)


@pytest.fixture
def sweep(tmp_path: Path) -> tuple[Path, dict[str, str], pd.DataFrame]:
    url = f"sqlite:///{tmp_path / 'results.db'}"
    return tmp_path, {"ORCHESTRATOR_RESULTS_DB": url}, stored_grid(url)


def test_grouping_by_two_settings_equals_a_pandas_groupby(
    sweep: tuple[Path, dict[str, str], pd.DataFrame],
) -> None:
    workdir, env, frame = sweep
    result = orchestrator(
        "compare", SWEEP, "--by", ",".join(BY), "--format", "json", cwd=workdir, **env
    )
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    want = expected(frame, BY)
    assert len(got) == len(want) == 4
    for record, (_, row) in zip(got, want.iterrows(), strict=True):
        assert (record["loss.temperature"], record["optim.lr"]) == (row[BY[0]], row[BY[1]])
        assert record["n"] == row["count"] == 3
        for column in ("mean", "std", "ci_low", "ci_high"):
            assert record[column] == pytest.approx(row[column], rel=1e-9), column


def test_csv_holds_what_json_holds(sweep: tuple[Path, dict[str, str], pd.DataFrame]) -> None:
    workdir, env, _ = sweep
    args = ("compare", SWEEP, "--by", ",".join(BY))
    as_json = json.loads(orchestrator(*args, "--format", "json", cwd=workdir, **env).stdout)
    as_csv = list(
        csv.DictReader(
            io.StringIO(orchestrator(*args, "--format", "csv", cwd=workdir, **env).stdout)
        )
    )
    assert [float(r["mean"]) for r in as_csv] == pytest.approx([r["mean"] for r in as_json])
    assert [r["optim.lr"] for r in as_csv] == [str(r["optim.lr"]) for r in as_json]


def test_a_setting_that_varies_within_a_group_is_named(
    sweep: tuple[Path, dict[str, str], pd.DataFrame],
) -> None:
    workdir, env, frame = sweep
    refused = orchestrator("compare", SWEEP, "--by", "loss.temperature", cwd=workdir, **env)
    assert refused.returncode == 2
    assert "optim.lr: differs within a group" in refused.stderr
    over = orchestrator(
        "compare", SWEEP, "--by", "loss.temperature", "--over", "seed,optim.lr",
        "--format", "json", cwd=workdir, **env,
    )  # fmt: skip
    assert over.returncode == 0, over.stderr
    want = expected(frame, ["loss.temperature"])
    got = json.loads(over.stdout)
    assert [r["n"] for r in got] == [6, 6]
    assert [r["mean"] for r in got] == pytest.approx(list(want["mean"]))
    bad = orchestrator(
        "compare", SWEEP, "--by", "loss.temperature", "--over", "sed", cwd=workdir, **env
    )
    assert bad.returncode == 2 and "--over sed: not a setting" in bad.stderr


def test_the_report_uses_the_same_t_interval() -> None:
    values = [0.2, 0.5, 0.3]
    mean, half = interval(values)
    assert mean == pytest.approx(np.mean(values))
    assert half == pytest.approx(stats.t.ppf(0.975, 2) * np.std(values, ddof=1) / np.sqrt(3))
    assert interval([0.4]) == (0.4, 0.0)
