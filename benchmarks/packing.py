"""Trials per hour packed (`pack: auto`, trainers/pack/) against unpacked (`pack: 1`): the same
sweep, the same machine, one run.

    python -m benchmarks.packing               # every workload through orchestrator submit
    python -m benchmarks.packing --tiny        # a tiny version of each (CI)
    python -m benchmarks.packing --gpu         # K = 1, 4, 16, 64 packed on a CUDA GPU

Workloads, each trained from scratch:
- `temperature_grid`: sweeps/temperature.yaml's fine-tuning grid (CNN image tower, transformer
  text tower, shapes; 6 temperatures x 3 seeds, one epoch of 32 steps), its pretraining stage
  left out;
- `mlp_seeds`: sweeps/cone_depth.yaml's relu MLP towers (512 wide, depth 5) trained one epoch of
  16 steps on Gaussian pairs, at 16 init seeds;
- `small_mlps`: 64 small MLP dual encoders (2 layers of 32, 16-d Gaussian pairs; 8 temperatures
  x 8 seeds, 16 steps): trials the size of the paper's simulations, where a trial's compute is
  milliseconds and its Ray trial, MLflow run and evaluations are most of its time.

`sweep` sides run `orchestrator submit` in a process of their own with fresh SQLite stores and
are timed from launch to exit (start-up included; every trial checked completed). `trainer`
sides time the training alone in this process on one thread, no Ray, no stores: the compute
packing changes, without what it saves around it. `--gpu` trains the temperature grid's model
at K = 1, 4, 16, 64 members on the GPU and reports trials per hour against K = 1, the GPU's
utilisation (nvidia-smi, sampled) and its peak memory.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.many_trials import clean_env

ROOT = Path(__file__).resolve().parents[1]
TEMPERATURES = [0.01, 0.02, 0.0333, 0.05, 0.1, 1.0]
BIG_MLP = {"kind": "mlp", "width": 512, "depth": 5, "projection": False}
SMALL_MLP = {"kind": "mlp", "width": 32, "depth": 2}


def workloads(tiny: bool) -> dict[str, dict[str, Any]]:
    """Each workload as a spec (without `pack`)."""
    n = 256 if tiny else 2048
    return {
        "temperature_grid": {
            "base": {
                "data": {"name": "shapes", "n_train": n, "n_eval": 512},
                "model": {"embed_dim": 32},
                "optim": {"lr": 0.002, "batch_size": 64, "epochs": 1},
                "eval": {"every_steps": 8},
            },
            "parameters": {
                "loss.temperature": {"grid": TEMPERATURES[: 2 if tiny else 6]},
                "seed": {"grid": [1] if tiny else [1, 2, 3]},
            },
        },
        "mlp_seeds": {
            "base": {
                "data": {"name": "gaussian", "dim": 512, "n_train": n, "n_eval": 512},
                "model": {"embed_dim": 512, "image": BIG_MLP, "text": BIG_MLP},
                "optim": {"lr": 0.001, "batch_size": 128, "epochs": 1},
                "eval": {"every_steps": 8},
            },
            "parameters": {"model.init.seed": {"grid": list(range(2 if tiny else 16))}},
        },
        "small_mlps": {
            "base": {
                "data": {"name": "gaussian", "dim": 16, "n_train": 512, "n_eval": 256},
                "model": {"embed_dim": 16, "image": SMALL_MLP, "text": SMALL_MLP},
                "optim": {"lr": 0.003, "batch_size": 32, "epochs": 1},
                "eval": {"every_steps": 8},
            },
            "parameters": {
                "loss.temperature": {
                    "grid": [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0][: 2 if tiny else 8]
                },
                "seed": {"grid": list(range(2 if tiny else 8))},
            },
        },
    }


def full_spec(name: str, workload: dict[str, Any], pack: int | str) -> dict[str, Any]:
    return {"name": name, **workload, "metric": {"name": "loss", "mode": "min"}, "pack": pack}


def sweep_side(name: str, workload: dict[str, Any], pack: int | str) -> tuple[float, int]:
    """Wall seconds of `orchestrator submit` and the trials it completed."""
    folder = Path(tempfile.mkdtemp(prefix=f"gapsweep-packing-{name}-"))
    try:
        (folder / "spec.yaml").write_text(yaml.safe_dump(full_spec(name, workload, pack)))
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "submit", "spec.yaml", "--yes"],
            cwd=folder,
            env={**clean_env(), "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{name}: submit failed\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        with sqlite3.connect(folder / "results.db") as results:
            query = "SELECT count(*) FROM trials WHERE status = 'completed'"
            completed = int(results.execute(query).fetchone()[0])
        return wall, completed
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def trainer_side(workload: dict[str, Any], pack: int) -> float:
    """Seconds to train every trial of the workload in this process, alone or in packs."""
    from orchestrator.plan import expand
    from orchestrator.spec import load_spec_text
    from trainers.config import TrialConfig
    from trainers.dual_encoder import train_dual_encoder
    from trainers.pack.grouping import packs
    from trainers.pack.train import Member, train_pack

    text = yaml.safe_dump(full_spec("trainer", workload, 1))
    trials = expand(load_spec_text(text, Path("trainer.yaml"))).trials
    configs = [t.config for t in trials if isinstance(t.config, TrialConfig)]
    start = time.perf_counter()
    for group in packs(configs, pack):
        if pack == 1:
            train_dual_encoder(configs[group[0]], _ignore)
            continue
        outcomes = train_pack([Member(configs[i], _ignore) for i in group])
        if any(isinstance(o, Exception) for o in outcomes):
            raise SystemExit(f"a member failed: {outcomes}")
    return time.perf_counter() - start


def _ignore(step: int, metrics: dict[str, float]) -> None:
    pass


def measure(name: str, workload: dict[str, Any], level: str) -> dict[str, Any]:
    trials = 1
    for domain in workload["parameters"].values():
        trials *= len(domain["grid"])
    row: dict[str, Any] = {"workload": name, "level": level, "trials": trials}
    walls: dict[str, float] = {}
    for side, pack in (("unpacked", 1), ("packed", "auto")):
        if level == "sweep":
            wall, completed = sweep_side(f"{name}-{side}", workload, pack)
            if completed != trials:
                raise SystemExit(f"{name} {side}: {completed} of {trials} trials completed")
        else:
            wall = trainer_side(workload, trials if pack == "auto" else 1)
        walls[side] = wall
        row[f"{side}_s"] = round(wall, 1)
        row[f"{side}_trials_per_hour"] = round(trials * 3600 / wall)
    # From the unrounded times: a tiny run's side can take under 0.05 s, shown as 0.0.
    row["packed_vs_unpacked"] = round(walls["unpacked"] / walls["packed"], 2)
    return row


def gpu_packs(device: str, sizes: list[int], steps: int) -> list[dict[str, Any]]:
    """The temperature grid's model at K members on `device`: trials per hour against K = 1."""
    import torch

    from trainers.config import TrialConfig
    from trainers.pack.train import Member, train_pack

    rows: list[dict[str, Any]] = []
    base = workloads(False)["temperature_grid"]["base"]
    for k in sizes:
        configs = [
            TrialConfig.model_validate(
                {
                    **base,
                    "device": device,
                    "seed": i,
                    "loss": {"temperature": 0.01 * (1 + i)},
                    "optim": {**base["optim"], "epochs": steps * 64 / 2048},
                }
            )
            for i in range(k)
        ]
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        with _Utilisation(device) as busy:
            start = time.perf_counter()
            train_pack([Member(c, _ignore) for c in configs])
            wall = time.perf_counter() - start
        row = {"device": device, "members": k, "wall_s": round(wall, 2)}
        row["trials_per_hour"] = round(k * 3600 / wall)
        row["vs_k1"] = (
            round(row["trials_per_hour"] / rows[0]["trials_per_hour"], 2) if rows else 1.0
        )
        if device == "cuda":
            row["peak_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            row["gpu_utilisation_pct"] = busy.mean()
        rows.append(row)
    return rows


class _Utilisation:
    """nvidia-smi's utilisation.gpu sampled every 0.2 s while the block runs (CUDA only)."""

    def __init__(self, device: str) -> None:
        self.on = device == "cuda" and shutil.which("nvidia-smi") is not None
        self.samples: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> _Utilisation:
        if self.on:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.on:
            self.thread.join()

    def _sample(self) -> None:
        query = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
        while not self.stop.wait(0.2):
            out = subprocess.run(query, capture_output=True, text=True).stdout.split()
            if out:
                self.samples.append(float(out[0]))

    def mean(self) -> float | None:
        return round(sum(self.samples) / len(self.samples), 1) if self.samples else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--gpu", action="store_true", help="K = 1, 4, 16, 64 on CUDA")
    parser.add_argument("--levels", default="sweep,trainer", help="comma-separated")
    args = parser.parse_args()
    if args.gpu:
        for row in gpu_packs("cuda", [1, 4, 16, 64], steps=64):
            print(json.dumps(row), flush=True)
        return
    import torch

    torch.set_num_threads(1)  # the trainer level runs as a one-CPU trial does
    # The sweeps start Ray twice each (tens of seconds): the tiny run (CI) leaves them to
    # tests/test_packed_sweeps.py and times the trainers only.
    levels = ["trainer"] if args.tiny else args.levels.split(",")
    if "trainer" in levels:  # untimed: a process's first trial pays for lazy imports
        for tiny in workloads(True).values():
            trainer_side(tiny, 1), trainer_side(tiny, 2)
    for level in levels:
        for name, workload in workloads(args.tiny).items():
            if not (args.tiny and name == "mlp_seeds"):  # its 512-wide towers are not tiny
                print(json.dumps(measure(name, workload, level)), flush=True)
    if args.tiny:  # the GPU script's path, on the CPU at K = 1 and 2
        for row in gpu_packs("cpu", [1, 2], steps=2):
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
