"""What recording costs the driver per report, with reports written as they come against
gathered for GAPSWEEP_RECORD_EVERY_S (orchestrator/report_batch.py), on a sweep of many small
trials: the landscape trainer, whose trials take milliseconds of compute and report once per
shift (61 reports each at the default size).

    python -m benchmarks.many_trials                 # 50 trials of 61 reports, each side
    python -m benchmarks.many_trials --trials 1000   # the issue's 1,000 (long)
    python -m benchmarks.many_trials --tiny          # 6 trials of 12 reports (CI)

Each side is one `orchestrator submit` in a process of its own, with fresh MLflow and results
databases (SQLite files, the defaults), the sides taking turns. The recorder's Tune callbacks are
timed in that process: `driver_ms_per_report` is the time of all of them over the reports, of
which `of_which_start_and_end_ms_per_trial` is that of a trial's start and end (its MLflow run
made and closed, its artifacts, the reports gathered before them written) over the trials.
`trials_per_hour` counts from launching the process to its exit, start-up included.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SIDES = {"each_report": "0", "batched": "0.25"}  # GAPSWEEP_RECORD_EVERY_S
# The driver with the recorder's callbacks timed: the time inside each kind and the reports seen.
TIMED_DRIVER = """
import functools, json, sys, time
from orchestrator.recorder import Recorder
spent = {"per_trial_s": 0.0, "per_report_s": 0.0, "reports": 0}
PER_TRIAL = ("on_trial_start", "on_trial_complete", "on_trial_error")
def timed(name, event):
    @functools.wraps(event)
    def run(*args, **kwargs):
        start = time.perf_counter()
        try:
            return event(*args, **kwargs)
        finally:
            kind = "per_trial_s" if name in PER_TRIAL else "per_report_s"
            spent[kind] += time.perf_counter() - start
            spent["reports"] += name == "on_trial_result"
    return run
for name in (*PER_TRIAL, "on_step_end", "on_trial_result", "on_checkpoint", "on_experiment_end"):
    setattr(Recorder, name, timed(name, getattr(Recorder, name)))
from orchestrator.cli import app
out, *args = sys.argv[1:]
try:
    app(args, standalone_mode=False)
finally:
    open(out, "w").write(json.dumps(spent))
"""


def spec(trials: int, shifts: int) -> dict[str, Any]:
    temperatures = [round(0.01 + i * 0.99 / max(trials - 1, 1), 6) for i in range(trials)]
    return {
        "name": "many",
        "trainer": "landscape",
        "base": {"shifts": shifts},
        "parameters": {"temperature": {"grid": temperatures}},
        "metric": {"name": "min_loss_gap", "mode": "max"},
    }


def run_side(side: str, trials: int, shifts: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix=f"gapsweep-many-{side}-"))
    try:
        (folder / "spec.yaml").write_text(yaml.safe_dump(spec(trials, shifts)))
        out = folder / "spent.json"
        env = {"GAPSWEEP_RECORD_EVERY_S": SIDES[side], "PYTHONPATH": str(ROOT)}
        command = [sys.executable, "-c", TIMED_DRIVER, str(out), "submit", "spec.yaml", "--yes"]
        start = time.perf_counter()
        done = subprocess.run(
            command, cwd=folder, env={**clean_env(), **env}, capture_output=True, text=True
        )
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{side}: submit failed\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        spent = json.loads(out.read_text())
        recorded = _recorded_once(folder, trials, spent["reports"])
        busy = spent["per_trial_s"] + spent["per_report_s"]
        return {
            "side": side,
            "trials": trials,
            "reports": spent["reports"],
            "driver_ms_per_report": round(1000 * busy / spent["reports"], 2),
            "of_which_start_and_end_ms_per_trial": round(1000 * spent["per_trial_s"] / trials, 1),
            "wall_s": round(wall, 1),
            "trials_per_hour": round(trials * 3600 / wall),
            "values_in_sql_and_mlflow": recorded,
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _recorded_once(folder: Path, trials: int, reports: int) -> int:
    """Every trial completed, every report stored, and MLflow holding exactly the values the
    results store holds (a value logged twice, or not at all, shows as a difference); the
    number of values. Raises SystemExit otherwise."""
    with sqlite3.connect(folder / "results.db") as results:
        done = results.execute("SELECT count(*) FROM trials WHERE status = 'completed'")
        steps = results.execute("SELECT count(DISTINCT trial_id || '/' || step) FROM metrics")
        values = results.execute("SELECT count(*) FROM metrics")
        counts = (done.fetchone()[0], steps.fetchone()[0], values.fetchone()[0])
    with sqlite3.connect(folder / "mlflow.db") as mlflow:
        children = "SELECT run_uuid FROM tags WHERE key = 'mlflow.parentRunId'"
        query = f"SELECT count(*) FROM metrics WHERE run_uuid IN ({children})"  # not the sweep's
        logged = mlflow.execute(query).fetchone()[0]
    if counts[:2] != (trials, reports) or logged != counts[2]:
        raise SystemExit(
            f"recorded: {counts[0]} of {trials} trials completed, {counts[1]} of {reports} "
            f"reports stored, {counts[2]} values in SQL against {logged} in MLflow"
        )
    return int(logged)


def clean_env() -> dict[str, str]:
    """This environment without the services a sweep would otherwise use instead of its own."""
    services = ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "ORCHESTRATOR_RESULTS_DB")
    return {k: v for k, v in os.environ.items() if k not in services}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--shifts", type=int, default=61)
    parser.add_argument("--sides", default=",".join(SIDES), help="comma-separated")
    args = parser.parse_args()
    trials, shifts = (6, 12) if args.tiny else (args.trials, args.shifts)
    rows = {}
    for side in args.sides.split(","):
        rows[side] = run_side(side, trials, shifts)
        print(json.dumps(rows[side]), flush=True)
    if set(rows) != set(SIDES):
        return
    each, batched = rows["each_report"], rows["batched"]
    summary = {
        "driver time per report, batched / each report": round(
            batched["driver_ms_per_report"] / each["driver_ms_per_report"], 3
        ),
        "trials per hour, batched / each report": round(
            batched["trials_per_hour"] / each["trials_per_hour"], 3
        ),
    }
    print(json.dumps({"summary": summary}), flush=True)


if __name__ == "__main__":
    main()
