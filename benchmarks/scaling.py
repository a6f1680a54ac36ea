"""Scaling: the temperature sweep at 1 and 2 concurrent trials, and one trial's time as its
training set grows 1x / 4x / 16x.

    python -m benchmarks.scaling                 # sweeps/temperature.yaml's grid at --epochs 4
    python -m benchmarks.scaling --epochs 1      # the grid at the spec's own epochs
    python -m benchmarks.scaling --tiny          # 2 tiny trials, tiny data (CI)

`concurrency`: `orchestrator submit` of sweeps/temperature.yaml's fine-tuning grid (18 trials,
trained from scratch: its pretrain stage is left out, since orchestration is what is timed) with
`max_concurrent_trials` 1 and then 2, each in a fresh folder, timed from launch to exit.
`data`: `train_dual_encoder` on one thread (a trial's one CPU) in a process of its own, for the
spec's trial with `data.n_train` times 1, 4 and 16 for one epoch, so the steps grow with the
data; the eval split and the evaluation interval stay as they are. The cost should grow
linearly: `us_per_sample` (wall time over training samples seen) should not rise with the size.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from benchmarks.sweep_overhead import ORCHESTRATOR, run_cli, run_probe
from orchestrator.plan import expand
from orchestrator.spec import load_spec_text

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "sweeps" / "temperature.yaml"
TINY_BASE: dict[str, Any] = {
    "data": {"name": "shapes", "n_train": 64, "n_eval": 32, "image_size": 12},
    "model": {"embed_dim": 8, "text": {"hidden_size": 16, "num_layers": 1, "num_heads": 2}},
    "optim": {"batch_size": 32, "epochs": 1},
    "eval": {"every_steps": 4},
}


def sweep_spec(concurrent: int, epochs: float | None, tiny: bool) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    spec.pop("stages", None)  # the fine-tuning grid alone, from scratch: orchestration is timed
    spec["name"] = f"temperature_c{concurrent}"
    spec["max_concurrent_trials"] = concurrent
    if tiny:
        spec["base"] = TINY_BASE
        spec["parameters"] = {"loss.temperature": {"grid": [0.01, 1.0]}}
    elif epochs is not None:
        spec["base"]["optim"]["epochs"] = epochs
    return spec


def time_sweep(concurrent: int, epochs: float | None, tiny: bool) -> dict[str, Any]:
    spec = sweep_spec(concurrent, epochs, tiny)
    with tempfile.TemporaryDirectory(prefix="gapsweep-scaling-") as folder:
        work = Path(folder)
        text = yaml.safe_dump(spec, sort_keys=False)
        (work / "spec.yaml").write_text(text)
        trials = len(expand(load_spec_text(text, work / "spec.yaml")).trials)
        command = [ORCHESTRATOR, "submit", "spec.yaml", "--yes"]
        _, wall = run_cli("sweep", command, cwd=work, timeout=1800)
    return {
        "table": "concurrency",
        "concurrent_trials": concurrent,
        "trials": trials,
        "epochs": spec["base"]["optim"]["epochs"],
        "wall_s": round(wall, 1),
        "wall_per_trial_s": round(wall / trials, 2),
    }


def time_trial(factor: int, tiny: bool) -> dict[str, Any]:
    """One trial in a fresh process with n_train x factor; the time covers data and training."""
    base = TINY_BASE if tiny else yaml.safe_load(SPEC.read_text())["base"]
    n_train = base["data"]["n_train"] * factor
    # One epoch: the steps, and the evaluations every `eval.every_steps`, grow with the data.
    optim = {**base["optim"], "epochs": 1}
    config = {**base, "data": {**base["data"], "n_train": n_train}, "optim": optim}
    probe = (
        "import json, time, torch; torch.set_num_threads(1)\n"
        "from trainers.config import TrialConfig\n"
        "from trainers.dual_encoder import load_data, train_dual_encoder\n"
        f"config = TrialConfig.model_validate({config!r})\n"
        "small = config.model_copy(update={'data': config.data.model_copy("
        "update={'n_train': 8}), 'optim': config.optim.model_copy(update={'epochs': 0})})\n"
        "train_dual_encoder(small, lambda s, m: None)  # imports and caches, untimed\n"
        "start = time.perf_counter(); data = load_data(config)\n"
        "data_s = time.perf_counter() - start\n"
        "start = time.perf_counter(); result = train_dual_encoder(config, lambda s, m: None)\n"
        "print(json.dumps({'steps': result.steps, 'data_s': data_s,"
        " 'trial_s': time.perf_counter() - start}))"
    )
    measured = json.loads(run_probe(probe).strip().splitlines()[-1])
    samples = measured["steps"] * base["optim"]["batch_size"]
    return {
        "table": "data",
        "factor": factor,
        "n_train": n_train,
        "steps": measured["steps"],
        "data_s": round(measured["data_s"], 2),
        "trial_s": round(measured["trial_s"], 2),
        "us_per_sample": round(1e6 * measured["trial_s"] / samples, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=4.0, help="of the temperature sweep")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument(
        "--concurrency", default="1,2", help="concurrent trials of each sweep run ('' for none)"
    )
    args = parser.parse_args(argv)
    for factor in (1, 4, 16):
        print(json.dumps(time_trial(factor, args.tiny)), flush=True)
    for concurrent in [int(c) for c in args.concurrency.split(",") if c]:
        print(json.dumps(time_sweep(concurrent, args.epochs, args.tiny)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
