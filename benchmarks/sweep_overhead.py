"""What a sweep costs beyond its trials' compute: gapsweep against the script a researcher would
otherwise write, on the same trials.

    python -m benchmarks.sweep_overhead            # 8 trials of about 5 s of CPU work each
    python -m benchmarks.sweep_overhead --tiny     # 2 tiny trials (CI)

Each side runs the same `dual_encoder` trials (the temperature sweep's trial at seeds 0..7) in a
process of its own; its wall time runs from launching the process to its exit, start-up and
imports included, each with fresh MLflow and results databases in a folder of its own:

- `sequential`: a plain Python loop calling the trainer, logging to MLflow with the fluent API
  (torch's default threads: all cores for the one trial at a time).
- `ray_tune`: a bare Ray Tune script, one CPU per trial, with `MLflowLoggerCallback`
  (`ray.air.integrations.mlflow`) and Tune's defaults (a fresh worker process per trial).
- `ray_tune_reuse`: the same with `reuse_actors=True`.
- `gapsweep`: `orchestrator submit` of the same trials (SQL store, MLflow mirror, live table,
  a checkpoint with every report).

Per trial (means over the trials, from the driver's and the worker's clocks): `start_to_entered`
(the driver starting the trial until the trial function runs: worker start-up), `entered_to_first`
(imports, data, towers, the step-0 evaluation) and `last_to_done` (the last report until the trial
is recorded as finished). The goal: gapsweep <= 0.7 x `ray_tune`, heading for the limit
`start-up + trials x compute / slots`, whose parts are printed with it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from orchestrator.trace import TRACE_ENV, Trace

ROOT = Path(__file__).resolve().parents[1]
ORCHESTRATOR = str(Path(sys.executable).with_name("orchestrator"))
SIDES = ("sequential", "ray_tune", "ray_tune_reuse", "gapsweep")
# The temperature sweep's trial, 6 epochs: about 5 s of one core on an idle machine.
WORKLOAD: dict[str, Any] = {
    "data": {"name": "shapes", "n_train": 2048, "n_eval": 512},
    "model": {"embed_dim": 32},
    "loss": {"temperature": 0.05},
    "optim": {"lr": 0.001, "batch_size": 64, "epochs": 6},
    "eval": {"every_steps": 32},
}
TINY: dict[str, Any] = {
    "data": {"name": "shapes", "n_train": 128, "n_eval": 32, "image_size": 12},
    "model": {"embed_dim": 8, "text": {"hidden_size": 16, "num_layers": 1, "num_heads": 2}},
    "optim": {"batch_size": 32, "epochs": 2},
    "eval": {"every_steps": 4},
}
SERVICE_ENV = ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "ORCHESTRATOR_RESULTS_DB")


def local_services_env() -> dict[str, str]:
    """This process's environment without service addresses, so every side of a benchmark runs
    on a local Ray and fresh local stores whatever the caller's shell points at."""
    return {k: v for k, v in os.environ.items() if k not in SERVICE_ENV}


# -- the sides, each run in a process of its own ---------------------------------------------------


def side_sequential(work: Path, base: dict[str, Any], trials: int) -> None:
    import mlflow

    from trainers.config import TrialConfig
    from trainers.dual_encoder import train_dual_encoder

    trace = Trace(work / "trace.jsonl")
    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    mlflow.set_experiment("overhead")
    for seed in range(trials):
        key = str(seed)
        trace.event(key, "start", time.time())
        trace.event(key, "entered", time.time())
        config = TrialConfig.model_validate({**base, "seed": seed})

        def report(step: int, metrics: dict[str, float], key: str = key) -> None:
            mlflow.log_metrics(metrics, step=step)
            trace.event(key, "report", time.time(), step=step)

        with mlflow.start_run(run_name=f"seed={seed}"):
            mlflow.log_params({"seed": seed})
            train_dual_encoder(config, report)
        trace.event(key, "done", time.time())


def bare_trainable(tune_config: dict[str, Any], base: dict[str, Any]) -> None:
    """The trial function of the bare Ray Tune script."""
    entered = time.time()
    from ray import tune

    from trainers.config import TrialConfig
    from trainers.dual_encoder import train_dual_encoder

    config = TrialConfig.model_validate({**base, "seed": tune_config["seed"]})

    def report(step: int, metrics: dict[str, float]) -> None:
        timing = {"entered_at": entered, "reported_at": time.time()}
        tune.report({**metrics, "step": step, **timing})

    train_dual_encoder(config, report)


def side_ray_tune(work: Path, base: dict[str, Any], trials: int, reuse: bool) -> None:
    import ray
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    ray.init(include_dashboard=False)
    tuner = tune.Tuner(
        tune.with_parameters(bare_trainable, base=base),
        param_space={"seed": tune.grid_search(list(range(trials)))},
        tune_config=tune.TuneConfig(reuse_actors=reuse),
        run_config=tune.RunConfig(
            storage_path=str(work / "runs"),
            callbacks=[
                MLflowLoggerCallback(
                    tracking_uri=f"sqlite:///{work / 'mlflow.db'}", experiment_name="overhead"
                ),
                _trace_callback(Trace(work / "trace.jsonl")),
            ],
        ),
    )
    tuner.fit()
    ray.shutdown()


def _trace_callback(trace: Trace) -> Any:
    """Benchmark instrumentation only: the trial events gapsweep's recorder traces."""
    from ray.tune import Callback

    class TraceCallback(Callback):
        def __init__(self) -> None:
            self.seen: set[str] = set()

        def on_trial_start(
            self, iteration: int, trials: list[Any], trial: Any, **info: Any
        ) -> None:
            trace.event(trial.trial_id, "start", time.time())

        def on_trial_result(
            self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
        ) -> None:
            if trial.trial_id not in self.seen:
                self.seen.add(trial.trial_id)
                trace.event(trial.trial_id, "entered", result["entered_at"])
            trace.event(trial.trial_id, "report", result["reported_at"], step=result["step"])

        def on_trial_complete(
            self, iteration: int, trials: list[Any], trial: Any, **info: Any
        ) -> None:
            trace.event(trial.trial_id, "done", time.time())

    return TraceCallback()


def run_side_here(side: str, work: Path, base: dict[str, Any], trials: int) -> None:
    if side == "sequential":
        side_sequential(work, base, trials)
    else:
        side_ray_tune(work, base, trials, reuse=side == "ray_tune_reuse")


# -- the parent: launch each side, time it, read its trace ----------------------------------------


def write_spec_text(base: dict[str, Any], trials: int) -> str:
    spec = {
        "name": "overhead",
        "trainer": "dual_encoder",
        "base": base,
        "parameters": {"seed": {"grid": list(range(trials))}},
        "metric": {"name": "gap_norm", "mode": "min"},
        "resources": {"cpu": 1},
    }
    return yaml.safe_dump(spec, sort_keys=False)


def write_spec(work: Path, base: dict[str, Any], trials: int) -> Path:
    path = work / "overhead.yaml"
    path.write_text(write_spec_text(base, trials))
    return path


def side_command(side: str, work: Path, tiny: bool, trials: int) -> list[str]:
    if side == "gapsweep":
        spec = write_spec(work, TINY if tiny else WORKLOAD, trials)
        return [
            ORCHESTRATOR, "submit", str(spec), "--yes",
            "--results-db", f"sqlite:///{work / 'results.db'}",
            "--mlflow-uri", f"sqlite:///{work / 'mlflow.db'}",
            "--storage", str(work / "runs"),
        ]  # fmt: skip
    command = [sys.executable, "-m", "benchmarks.sweep_overhead", "--side", side]
    return command + ["--work", str(work), "--trials", str(trials)] + (["--tiny"] if tiny else [])


def run_cli(
    label: str, command: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None
) -> tuple[float, float]:
    """Run `command` on a local Ray with a private Ray folder (other Ray sessions may share
    /tmp/ray), removed afterwards whatever happens; `env` adds to `local_services_env()`.
    Returns (the epoch time it was launched, its wall seconds); raises when it fails."""
    ray_tmp = tempfile.mkdtemp(prefix="gsr-", dir="/tmp")  # short: Ray's socket paths
    full_env = {
        **local_services_env(),
        "RAY_TMPDIR": ray_tmp,
        "RAY_USAGE_STATS_ENABLED": "0",
        "COLUMNS": "160",
        **(env or {}),
    }
    try:
        launched, start = time.time(), time.perf_counter()
        result = subprocess.run(
            command, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
        )
        wall = time.perf_counter() - start
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    if result.returncode != 0:
        raise RuntimeError(f"{label} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return launched, wall


def run_side(side: str, folder: Path, tiny: bool, trials: int) -> dict[str, Any]:
    work = folder / side
    work.mkdir()
    trace = work / "trace.jsonl"
    launched, wall = run_cli(
        side,
        side_command(side, work, tiny, trials),
        cwd=work,
        timeout=1200,
        env={"PYTHONPATH": str(ROOT), TRACE_ENV: str(trace)},
    )
    return {"side": side, "wall_s": round(wall, 2), **per_trial(trace, launched)}


def per_trial(trace: Path, launched: float) -> dict[str, Any]:
    """Means over the trials of each fixed cost, and when the first trial started."""
    events: dict[str, dict[str, list[float]]] = {}
    for line in trace.read_text().splitlines():
        record = json.loads(line)
        events.setdefault(record["key"], {}).setdefault(record["event"], []).append(record["t"])
    spans: dict[str, list[float]] = {
        "start_to_entered": [],
        "entered_to_first": [],
        "last_to_done": [],
    }
    for e in events.values():
        spans["start_to_entered"].append(e["entered"][0] - e["start"][0])
        spans["entered_to_first"].append(min(e["report"]) - e["entered"][0])
        spans["last_to_done"].append(e["done"][-1] - max(e["report"]))
    first_start = min(e["start"][0] for e in events.values())
    first_entered = min(e["entered"][0] for e in events.values())
    return {
        "trials": len(events),
        "launch_to_first_start_s": round(first_start - launched, 2),
        "launch_to_first_entered_s": round(first_entered - launched, 2),
        **{f"{name}_s": round(sum(v) / len(v), 3) for name, v in spans.items()},
    }


def run_probe(code: str, timeout: float = 1800) -> str:
    """What `python -c code` prints, run from the repository in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return out.stdout


def trial_compute(base: dict[str, Any]) -> tuple[float, float]:
    """(import seconds in a fresh process, seconds of one trial on one thread after imports)."""
    probe = (
        "import time; t = time.perf_counter(); import torch; torch.set_num_threads(1)\n"
        "from trainers.dual_encoder import train_dual_encoder; from trainers.config import "
        "TrialConfig\nfrom transformers import BertModel\nimports = time.perf_counter() - t\n"
        f"config = TrialConfig.model_validate({base!r})\n"
        "t = time.perf_counter(); train_dual_encoder(config, lambda s, m: None)\n"
        "print(imports, time.perf_counter() - t)"
    )
    imports, compute = (float(x) for x in run_probe(probe).split())
    return imports, compute


def summary(
    records: list[dict[str, Any]], trials: int, slots: int, compute: tuple[float, float]
) -> Any:
    """`compute`: trial_compute's (worker imports, one trial's compute) in seconds."""
    wall = {r["side"]: r["wall_s"] for r in records}
    imports, trial_s = compute
    gapsweep = next(r for r in records if r["side"] == "gapsweep")
    limit = gapsweep["launch_to_first_entered_s"] + imports + trials * trial_s / slots
    out: dict[str, Any] = {
        "slots": slots,
        "trial_compute_s": round(trial_s, 2),
        "worker_imports_s": round(imports, 2),
        "limit_s": round(limit, 2),
        "gapsweep_vs_limit": round(wall["gapsweep"] / limit, 3),
    }
    for side in ("ray_tune", "ray_tune_reuse", "sequential"):
        if side in wall:
            out[f"gapsweep_vs_{side}"] = round(wall["gapsweep"] / wall[side], 3)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=None, help="default 8 (tiny: 2)")
    parser.add_argument("--sides", default=",".join(SIDES))
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--side", choices=SIDES[:3], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    trials = args.trials or (2 if args.tiny else 8)
    base = TINY if args.tiny else WORKLOAD
    if args.side is not None:  # inside one side's own process
        run_side_here(args.side, args.work, base, trials)
        return 0
    records = []
    with tempfile.TemporaryDirectory(prefix="gapsweep-overhead-") as folder:
        for side in args.sides.split(","):
            records.append(run_side(side, Path(folder), args.tiny, trials))
            print(json.dumps(records[-1]), flush=True)
    slots = os.cpu_count() or 1
    compute = trial_compute(base)
    print(json.dumps({"summary": summary(records, trials, slots, compute)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
