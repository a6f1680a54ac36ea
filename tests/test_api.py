"""orchestrator.api as a notebook uses it: a tiny sweep submitted through the API on a real local
Ray, a real MLflow SQLite file and a real SQLite results store, then read back as DataFrames
and checked against the store read independently; bad input raises the project's errors; the
CLI's Parquet files hold what its JSON holds."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from orchestrator import api
from orchestrator.errors import InputError
from orchestrator.plan import flatten
from orchestrator.store.repository import ResultsStore
from orchestrator.store.views import NewTrial, TrialView
from tests.helpers import SERVICE_ENV, orchestrator, sweep_spec, write_spec

SWEEP = "api"
TEMPERATURES = [0.05, 0.5]


@dataclass(frozen=True)
class Submitted:
    workdir: Path
    spec: Path
    results_db: str
    result: api.SubmitResult
    again: api.SubmitResult  # the same spec submitted a second time


@pytest.fixture(scope="module")
def submitted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Submitted]:
    """Four tiny trials (two temperatures, two seeds) submitted through the API, twice, from a
    fresh working directory, as a notebook in it would."""
    workdir = tmp_path_factory.mktemp("api")
    spec = sweep_spec(SWEEP)
    spec["parameters"] = {"loss.temperature": {"grid": TEMPERATURES}, **spec["parameters"]}
    path = write_spec(workdir / "api.yaml", spec)
    results_db = f"sqlite:///{workdir / 'results.db'}"
    services = {
        "results_db": results_db,
        "mlflow_uri": f"sqlite:///{workdir / 'mlflow.db'}",
        "storage": workdir / "runs",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name in SERVICE_ENV:
            patch.delenv(name, raising=False)
        patch.chdir(workdir)  # MLflow's artifacts go to the working directory
        first = api.submit(path, **services)  # type: ignore[arg-type]
        again = api.submit(path, **services)  # type: ignore[arg-type]
    yield Submitted(workdir, path, results_db, first, again)


def stored(results_db: str) -> list[tuple[TrialView, list[tuple[int, float]]]]:
    """Each trial and its gap_norm series, read through the store itself."""
    with ResultsStore(results_db) as store:
        return [(t, store.metric_series(SWEEP, t.key, "gap_norm")) for t in store.trials(SWEEP)]


@pytest.mark.slow
def test_submit_returns_the_outcome_and_a_second_submit_runs_nothing(
    submitted: Submitted,
) -> None:
    first, again = submitted.result, submitted.again
    assert first.ok and first.check() is first
    assert first.sweep == SWEEP
    assert [t.status for t in first.trials] == ["completed"] * 4
    assert (first.outcome.ran, first.outcome.skipped) == (4, 0)
    assert (again.outcome.ran, again.outcome.skipped) == (0, 4)
    assert (submitted.workdir / "mlflow.db").is_file()


@pytest.mark.slow
def test_plan_shows_every_trial_completed(submitted: Submitted) -> None:
    preview = api.plan(submitted.spec, results_db=submitted.results_db)
    keys = [t.key for t in preview.plan.trials]
    assert len(keys) == 4
    assert [preview.statuses[k] for k in keys] == ["completed"] * 4
    assert api.load_spec(submitted.spec).spec.name == SWEEP


@pytest.mark.slow
def test_results_frame_holds_what_the_store_holds(submitted: Submitted) -> None:
    frame = api.results(SWEEP, results_db=submitted.results_db)
    views = [view for view, _ in stored(submitted.results_db)]
    assert list(frame["key"]) == [v.key for v in views]
    assert list(frame.columns[:4]) == ["key", "name", "status", "attempts"]
    assert frame.attrs["varied"] == ["loss.temperature", "seed"]
    for (_, row), view in zip(frame.iterrows(), views, strict=True):
        assert (row["name"], row["status"], row["attempts"]) == (view.name, "completed", 1)
        for path, value in flatten(view.config).items():
            assert _same(row[path], value), path
        assert view.metrics
        for metric, value in view.metrics.items():
            assert row[metric] == pytest.approx(value), metric
    assert set(frame.attrs["metrics"]) >= {"gap_norm", "loss", "zero_shot_acc"}


def _same(got: object, want: object) -> bool:
    if isinstance(want, list):
        return list(got) == want  # type: ignore[call-overload]
    if want is None:
        return got is None or bool(pd.isna(got))
    return bool(got == want)


@pytest.mark.slow
def test_series_is_the_stores_metric_series(submitted: Submitted) -> None:
    frame = api.series(SWEEP, "gap_norm", results_db=submitted.results_db)
    assert list(frame.columns) == ["key", "name", "step", "value"]
    for view, series in stored(submitted.results_db):
        mine = frame[frame["key"] == view.key]
        assert list(zip(mine["step"], mine["value"], strict=True)) == series
        assert len(series) >= 2


@pytest.mark.slow
def test_compare_equals_a_pandas_groupby(submitted: Submitted) -> None:
    frame = api.results(SWEEP, results_db=submitted.results_db)
    want = frame.groupby("loss.temperature")["gap_norm"].agg(["count", "mean", "std"])
    half = stats.t.ppf(0.975, want["count"] - 1) * want["std"] / np.sqrt(want["count"])
    got = api.compare(SWEEP, "loss.temperature", results_db=submitted.results_db)
    assert list(got.columns) == [
        "loss.temperature",
        *("metric", "n", "mean", "std", "ci_low", "ci_high"),
    ]
    assert list(got["loss.temperature"]) == TEMPERATURES
    assert list(got["n"]) == list(want["count"]) == [2, 2]
    assert list(got["metric"]) == ["gap_norm"] * 2
    np.testing.assert_allclose(got["mean"], want["mean"], rtol=1e-12)
    np.testing.assert_allclose(got["std"], want["std"], rtol=1e-12)
    np.testing.assert_allclose(got["ci_low"], want["mean"] - half, rtol=1e-9)
    np.testing.assert_allclose(got["ci_high"], want["mean"] + half, rtol=1e-9)


@pytest.mark.slow
def test_bad_input_raises_input_error_not_system_exit(submitted: Submitted) -> None:
    db = submitted.results_db
    with pytest.raises(InputError, match="no sweep named 'nope'"):
        api.results("nope", results_db=db)
    with pytest.raises(InputError, match=r"no\.such: not a setting"):
        api.compare(SWEEP, ["no.such"], results_db=db)
    with pytest.raises(InputError, match="metric no_such_metric"):
        api.series(SWEEP, "no_such_metric", results_db=db)
    with pytest.raises(InputError, match="expected path=value"):
        api.plan(submitted.spec, ["optim.epochs"], results_db=db)
    with pytest.raises(InputError, match="no results store"):
        api.results(SWEEP, results_db=f"sqlite:///{submitted.workdir / 'absent.db'}")
    with pytest.raises(InputError):  # refused while the spec is checked: no Ray starts
        api.submit(submitted.spec, {"optim.epochs": -1}, results_db=db)


@pytest.mark.slow
def test_parquet_round_trips_what_json_holds(submitted: Submitted) -> None:
    workdir, env = submitted.workdir, {"ORCHESTRATOR_RESULTS_DB": submitted.results_db}
    wrote = orchestrator(
        "results", SWEEP, "--format", "parquet", "--out", "r.parquet", cwd=workdir, **env
    )
    assert wrote.returncode == 0, wrote.stderr
    listed = orchestrator("results", SWEEP, "--format", "json", cwd=workdir, **env)
    records = json.loads(listed.stdout)
    frame = pd.read_parquet(workdir / "r.parquet")
    assert list(frame["key"]) == [r["key"] for r in records]
    for (_, row), record in zip(frame.iterrows(), records, strict=True):
        assert (row["name"], row["status"], row["attempts"]) == (
            record["name"],
            record["status"],
            record["attempts"],
        )
        for path, value in record["params"].items():
            assert _same(row[path], value), path
        for metric, value in record["metrics"].items():
            assert row[metric] == value, metric


@pytest.mark.slow
def test_series_parquet_and_csv_hold_what_json_holds(submitted: Submitted) -> None:
    workdir, env = submitted.workdir, {"ORCHESTRATOR_RESULTS_DB": submitted.results_db}
    args = ("series", SWEEP, "gap_norm")
    wrote = orchestrator(*args, "--out", "s.parquet", cwd=workdir, **env)  # by its suffix
    assert wrote.returncode == 0, wrote.stderr
    as_json = json.loads(orchestrator(*args, "--format", "json", cwd=workdir, **env).stdout)
    as_csv = orchestrator(*args, cwd=workdir, **env).stdout
    from_parquet = pd.read_parquet(workdir / "s.parquet").to_dict("records")
    assert from_parquet == as_json
    assert pd.read_csv(io.StringIO(as_csv)).to_dict("records") == as_json


def test_parquet_without_pyarrow_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """pyarrow made unimportable for the CLI's process: no traceback, how to install it."""
    shadow = tmp_path / "shadow" / "pyarrow"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no pyarrow in this test')\n")
    url = f"sqlite:///{tmp_path / 'results.db'}"
    ResultsStore(url).close()
    path = os.pathsep.join([str(shadow.parent), os.environ.get("PYTHONPATH", "")])
    for args in (("results", "s"), ("series", "s", "gap_norm")):
        result = orchestrator(
            *args, "--format", "parquet", "--out", "x.parquet", cwd=tmp_path,
            ORCHESTRATOR_RESULTS_DB=url, PYTHONPATH=path,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [
            "error: Parquet output needs pyarrow, not installed here: "
            "pip install 'gapsweep[frames]'"
        ]
        assert not (tmp_path / "x.parquet").exists()


def test_parquet_to_stdout_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'results.db'}"
    ResultsStore(url).close()
    result = orchestrator(
        "results", "s", "--format", "parquet", cwd=tmp_path, ORCHESTRATOR_RESULTS_DB=url
    )
    assert result.returncode == 2
    assert "give --out FILE" in result.stderr


def test_old_metric_names_are_read_as_todays_with_a_warning(tmp_path: Path) -> None:
    """A digits trial stored before the rename keeps `recall_at_1_a2b` rows: the frames show
    them under today's `class_recall_at_1_a2b`; a non-finite final metric is NaN, not absent."""
    url = f"sqlite:///{tmp_path / 'results.db'}"
    config = {"seed": 0, "data": {"name": "digits"}, "model": {"channels": [4, 8]}}
    with ResultsStore(url) as store:
        store.upsert_sweep("old", "dual_encoder", "name: old\n", "h", ("gap_norm", "min"))
        store.register_trials("old", [NewTrial("k0", "seed=0", 0, config, {"seed": 0})])
        store.mark_running("old", "k0", None, None)
        for step in (1, 2):
            store.record_metrics("old", "k0", step, {"recall_at_1_a2b": step / 4, "gap_norm": 1.0})
        final = {"recall_at_1_a2b": 0.5, "gap_norm": 1.0, "loss": float("nan")}
        store.finish_trial("old", "k0", "completed", final)
    with pytest.warns(UserWarning, match="recall_at_1_a2b as class_recall_at_1_a2b"):
        series = api.series("old", "class_recall_at_1_a2b", results_db=url)
    assert series[["step", "value"]].values.tolist() == [[1, 0.25], [2, 0.5]]
    with pytest.warns(UserWarning):
        frame = api.results("old", results_db=url)
    assert frame.loc[0, "class_recall_at_1_a2b"] == 0.5 and pd.isna(frame.loc[0, "loss"])
    assert "recall_at_1_a2b" not in frame.columns
    assert frame.loc[0, "model.channels"] == [4, 8]
