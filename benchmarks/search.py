"""Adaptive search: what ASHA saves on the temperature grid, and TPE against random search.

    python -m benchmarks.search            # sweeps/temperature_asha.yaml; 40 trials x 5 seeds
    python -m benchmarks.search --tiny     # a 4-trial grid of tiny trials; 12 trials x 2 seeds

`asha`: `orchestrator submit` of sweeps/temperature_asha.yaml as shipped and with its scheduler
removed, each in a fresh folder, side by side in one run: the trial-steps each spent (the sum of
every trial's last step, from the results store) and whether both runs' best trial by the
sweep's metric is the same trial (the same settings).

`tpe_vs_random`: Optuna's TPE and random samplers, built as a sweep builds them
(orchestrator/study.py), at equal budget on a seeded objective: the best value after N trials,
for 5 sampler seeds. The objective is the 6-dimensional Hartmann function (minimum -3.3224),
a standard smooth test function with several local minima, so nothing is trained here.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from benchmarks.scaling import TINY_BASE as SCALING_TINY
from benchmarks.sweep_overhead import ORCHESTRATOR, run_cli
from orchestrator.study import make_sampler

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "sweeps" / "temperature_asha.yaml"
# scaling.py's tiny trial, trained long enough (64 steps) for ASHA's rungs at 8, 16 and 32.
TINY_BASE: dict[str, Any] = {
    **SCALING_TINY,
    "data": {**SCALING_TINY["data"], "n_train": 256, "n_eval": 64},
    "optim": {"batch_size": 32, "epochs": 4},
    "eval": {"every_steps": 8},
}
# Hartmann 6-D (Dixon and Szego 1978): alpha, A and P as the literature gives them.
ALPHA = (1.0, 1.2, 3.0, 3.2)
A = (
    (10, 3, 17, 3.5, 1.7, 8),
    (0.05, 10, 17, 0.1, 8, 14),
    (3, 3.5, 1.7, 10, 17, 8),
    (17, 8, 0.05, 10, 0.1, 14),
)
P = (
    (0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886),
    (0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991),
    (0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650),
    (0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381),
)


def hartmann6(x: list[float]) -> float:
    return -sum(
        a * math.exp(-sum(A[i][j] * (x[j] - P[i][j]) ** 2 for j in range(6)))
        for i, a in enumerate(ALPHA)
    )


def asha_spec(scheduled: bool, tiny: bool) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    spec["name"] = "asha" if scheduled else "grid"
    if tiny:
        spec["base"] = TINY_BASE
        spec["parameters"] = {
            "loss.temperature": {"grid": [0.01, 0.1, 1.0]},
            "seed": {"grid": [0, 1]},
        }
        spec["scheduler"] = {"kind": "asha", "grace_steps": 8, "reduction_factor": 2}
    if not scheduled:
        spec.pop("scheduler")
    return spec


def spent(workdir: Path, sweep: str, metric: str, mode: str) -> tuple[int, dict[str, Any], str]:
    """Trial-steps spent, the best trial's settings, and its status counts."""
    from orchestrator.store.repository import ResultsStore

    with ResultsStore(f"sqlite:///{workdir / 'results.db'}") as store:
        trials = store.trials(sweep)
    steps = sum(t.last_step or 0 for t in trials)
    done = [t for t in trials if t.status == "completed" and metric in t.metrics]
    pick = min if mode == "min" else max
    best = pick(done, key=lambda t: t.metrics[metric])
    statuses = ", ".join(
        f"{sum(t.status == s for t in trials)} {s}" for s in ("completed", "pruned")
    )
    return steps, {**best.varied, metric: round(best.metrics[metric], 4)}, statuses


def compare_asha(tiny: bool) -> dict[str, Any]:
    runs = {}
    for scheduled in (False, True):
        spec = asha_spec(scheduled, tiny)
        with tempfile.TemporaryDirectory(prefix="gapsweep-bench-search-") as folder:
            workdir = Path(folder)
            (workdir / "spec.yaml").write_text(yaml.safe_dump(spec))
            _, wall = run_cli(spec["name"], [ORCHESTRATOR, "submit", "spec.yaml"], workdir, 1800)
            metric = spec["metric"]
            runs[spec["name"]] = (
                wall,
                *spent(workdir, spec["name"], metric["name"], metric["mode"]),
            )
    (grid_wall, grid_steps, grid_best, _), (asha_wall, asha_steps, asha_best, asha_statuses) = (
        runs["grid"],
        runs["asha"],
    )
    same = {k: v for k, v in grid_best.items() if k in SPEC_PATHS} == {
        k: v for k, v in asha_best.items() if k in SPEC_PATHS
    }
    return {
        "summary": {
            "full grid: trial-steps, wall s": f"{grid_steps}, {grid_wall:.0f}",
            "with ASHA: trial-steps, wall s": f"{asha_steps}, {asha_wall:.0f} ({asha_statuses})",
            "trial-steps with ASHA / full grid": f"{asha_steps / grid_steps:.2f}",
            "best trial, full grid": json.dumps(grid_best),
            "best trial, with ASHA": json.dumps(asha_best),
            "the same best trial": "yes" if same else "no",
        }
    }


SPEC_PATHS = ("loss.temperature", "seed")


def tpe_vs_random(trials: int, seeds: int) -> list[dict[str, Any]]:
    import optuna

    from orchestrator.spec import SweepSpec

    rows = []
    for name in ("tpe", "random"):
        spec = SweepSpec.model_validate(
            {"name": "bench", "search": "optuna", "sampler": name, "num_samples": trials,
             "parameters": {f"x{i}": {"uniform": [0.0, 1.0]} for i in range(6)}}
        )  # fmt: skip
        bests = []
        for seed in range(seeds):
            seeded = spec.model_copy(update={"seed": seed})
            study = optuna.create_study(sampler=make_sampler(seeded, 0))
            study.optimize(lambda t: hartmann6([t.suggest_float(f"x{i}", 0, 1) for i in range(6)]),
                           n_trials=trials)  # fmt: skip
            bests.append(study.best_value)
        per_seed = " ".join(f"{b:.3f}" for b in bests)
        mean = round(sum(bests) / len(bests), 3)
        rows.append({"sampler": name, "trials": trials, "best per seed": per_seed,
                     "mean best (min -3.322)": mean})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (CI)")
    args = parser.parse_args(argv)
    for row in tpe_vs_random(12 if args.tiny else 40, 2 if args.tiny else 5):
        print(json.dumps(row), flush=True)
    print(json.dumps(compare_asha(args.tiny)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
