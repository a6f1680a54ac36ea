"""The function Ray Tune runs in a worker: a trial's key in, the trainer run, results reported.

Only the trial key travels in Tune's param space; the validated configs travel once through
`tune.with_parameters`, so Tune's own config handling never touches (or mangles) them.
"""

from __future__ import annotations

import socket
from typing import Any

import ray
from ray import tune

from orchestrator.trainer_registry import TRAINERS


def run_trial(param_space: dict[str, Any], *, trainer: str, configs: dict[str, str]) -> None:
    entry = TRAINERS[trainer]
    config = entry.config_model.model_validate_json(configs[param_space["trial_key"]])
    _match_threads_to_cpus()
    placement = {"node_id": ray.get_runtime_context().get_node_id(), "host": socket.gethostname()}

    def report(step: int, metrics: dict[str, float]) -> None:
        tune.report({**metrics, "step": step, **placement})

    entry.run(config, report)


def _match_threads_to_cpus() -> None:
    # A trial given 1 CPU should not spawn a thread per core and fight its neighbours.
    import torch

    assigned = ray.get_runtime_context().get_assigned_resources()  # type: ignore[no-untyped-call]
    cpus = assigned.get("CPU", 1.0)
    torch.set_num_threads(max(1, int(cpus)))
