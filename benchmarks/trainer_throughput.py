"""Throughput of the `dual_encoder` training loop as the product runs it, against a bare loop.

    python -m benchmarks.trainer_throughput              # the temperature sweep's trial, 5 epochs
    python -m benchmarks.trainer_throughput --tiny       # seconds: the CI size

Every side trains the same towers on the same data with the same batch size, on one thread (a
trial given one CPU), in this one process, taking turns; each side's best of `--repeat` runs
counts, since other load on the machine only ever adds time. Setup (generating the data,
building the towers) is inside every side's time; it is the same work on each side.

- `bare`: the loop a researcher writes: `Adam` with its defaults, a shuffled order each epoch,
  forward, InfoNCE, backward, step; no evaluation, no reporting.
- `bare_tuned`: the same loop with the product's two speed settings (fused Adam, channels-last
  images).
- `product_end`: `train_dual_encoder`, evaluating only at step 0 and at the end, checkpointing
  each time.
- `product`: `train_dual_encoder` evaluating, reporting and checkpointing every
  `eval.every_steps` (the default unless `--every-steps`).

`product / bare` is the issue's ratio (goal >= 0.95); `product / bare_tuned` what reporting and
periodic evaluation cost against the product's own step; the cost of one evaluation (with its
checkpoint and report) is measured by two more runs taking turns with the four sides in the same
rounds, see `evaluation_cost`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from trainers.checkpoint import FolderCheckpoints
from trainers.config import TrialConfig
from trainers.dual_encoder import load_data, train_dual_encoder
from trainers.loss import Temperature, contrastive_loss
from trainers.towers.registry import build_towers

# The trial of sweeps/temperature.yaml (tau 0.07, seed 0), at the default evaluation interval.
WORKLOAD: dict[str, Any] = {
    "data": {"name": "shapes", "n_train": 2048, "n_eval": 512},
    "model": {"embed_dim": 32},
    "optim": {"lr": 0.001, "batch_size": 64},
}
TINY: dict[str, Any] = {
    "data": {"name": "shapes", "n_train": 256, "n_eval": 64, "image_size": 12},
    "model": {"embed_dim": 8, "text": {"hidden_size": 16, "num_layers": 1, "num_heads": 2}},
    "optim": {"batch_size": 32},
}
NEVER = 1_000_000  # an eval interval no run reaches: evaluation at step 0 and the end only


def config_for(base: dict[str, Any], epochs: float, every_steps: int) -> TrialConfig:
    return TrialConfig.model_validate(
        {**base, "optim": {**base["optim"], "epochs": epochs}, "eval": {"every_steps": every_steps}}
    )


def run_product(config: TrialConfig) -> int:
    """The trainer as a trial runs it; returns the number of evaluations."""
    reports: list[int] = []
    with tempfile.TemporaryDirectory(prefix="gapsweep-tput-") as folder:
        hook = FolderCheckpoints(Path(folder))
        train_dual_encoder(config, lambda step, _m: reports.append(step), hook)
    return len(reports)


def run_bare(config: TrialConfig, tuned: bool) -> int:
    """A plain PyTorch loop over the same data and towers; no evaluation, no reporting."""
    data = load_data(config)
    image, text = build_towers(config.model, (data.a_input, data.b_input), config.init_seed)
    temperature = Temperature(config.loss.temperature, False, config.loss.min_temperature)
    images, tokens = data.train.a, data.train.b
    if tuned:
        image = image.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        images = images.contiguous(memory_format=torch.channels_last)
    params = [*image.parameters(), *text.parameters()]
    optimiser = torch.optim.Adam(params, lr=config.optim.lr, fused=tuned or None)
    n, size = len(data.train), config.optim.batch_size
    steps = config.total_steps
    step = 0
    while step < steps:
        order = torch.randperm(n)
        for start in range(0, n - size + 1, size):
            batch = order[start : start + size]
            loss = contrastive_loss(image(images[batch]), text(tokens[batch]), temperature.scale())
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            step += 1
            if step == steps:
                break
    return 0


def timed(action: Callable[[], int]) -> tuple[float, int]:
    """One run of `action`: (its wall seconds, the evaluations it returned)."""
    start = time.perf_counter()
    evals = action()
    return time.perf_counter() - start, evals


def measure(
    base: dict[str, Any], epochs: float, every: int, repeat: int
) -> tuple[list[dict[str, Any]], float]:
    """The four sides' records, and the seconds of one evaluation measured in the same rounds."""
    periodic, at_end = config_for(base, epochs, every), config_for(base, epochs, NEVER)
    sides: dict[str, Callable[[], int]] = {
        "bare": lambda: run_bare(at_end, tuned=False),
        "bare_tuned": lambda: run_bare(at_end, tuned=True),
        "product_end": lambda: run_product(at_end),
        "product": lambda: run_product(periodic),
    }
    run_bare(config_for(base, 0.25, NEVER), tuned=True)  # imports, oneDNN kernels, allocator
    best = best_of({**sides, **evaluation_sides(base)}, repeat)
    samples = periodic.total_steps * periodic.optim.batch_size
    records = [
        {
            "side": name,
            "steps": periodic.total_steps,
            "evaluations": evals,
            "wall_s": round(wall, 3),
            "samples_per_s": round(samples / wall, 1),
        }
        for name, (wall, evals) in best.items()
        if name in sides
    ]
    return records, evaluation_cost(best)


def best_of(sides: dict[str, Callable[[], int]], repeat: int) -> dict[str, tuple[float, int]]:
    """Each side's fastest (wall, evaluations) of `repeat` rounds, the sides taking turns."""
    best: dict[str, tuple[float, int]] = {}
    for _ in range(repeat):
        for name, action in sides.items():
            wall, evals = timed(action)
            if name not in best or wall < best[name][0]:
                best[name] = (wall, evals)
    return best


def evaluation_sides(base: dict[str, Any]) -> dict[str, Callable[[], int]]:
    """The two runs `evaluation_cost` compares: one epoch evaluating after every step, and the
    same epoch evaluating at its ends only."""
    return {
        "eval_every": lambda: run_product(config_for(base, 1.0, 1)),
        "eval_ends": lambda: run_product(config_for(base, 1.0, NEVER)),
    }


def evaluation_cost(best: dict[str, tuple[float, int]]) -> float:
    """Seconds of one evaluation (with its checkpoint and report), from the best runs of
    `evaluation_sides`. Thirty-odd evaluations of difference stand well clear of the noise that
    two whole runs differing by three would not."""
    (every_s, every_n), (ends_s, ends_n) = best["eval_every"], best["eval_ends"]
    return (every_s - ends_s) / max(every_n - ends_n, 1)


def summary(records: list[dict[str, Any]], every: int, per_eval: float) -> dict[str, Any]:
    by = {r["side"]: r for r in records}
    wall = {name: r["wall_s"] for name, r in by.items()}
    return {
        "eval_every_steps": every,
        "ratio_product_vs_bare": round(wall["bare"] / wall["product"], 3),
        "ratio_product_vs_bare_tuned": round(wall["bare_tuned"] / wall["product"], 3),
        "ratio_bare_tuned_vs_bare": round(wall["bare"] / wall["bare_tuned"], 3),
        "eval_s_each": round(per_eval, 4),
        "eval_share_of_product": round(
            per_eval * by["product"]["evaluations"] / wall["product"], 3
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=5.0)
    parser.add_argument("--every-steps", type=int, default=None, help="default: the trainer's")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="as a trial with resources.cpu 1")
    parser.add_argument("--tiny", action="store_true", help="a seconds-long run (CI)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    every = args.every_steps or (4 if args.tiny else TrialConfig().eval.every_steps)
    base, epochs = (TINY, 2.0) if args.tiny else (WORKLOAD, args.epochs)
    records, per_eval = measure(base, epochs, every, 1 if args.tiny else args.repeat)
    for record in records:
        print(json.dumps(record), flush=True)
    print(json.dumps({"summary": summary(records, every, per_eval)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
