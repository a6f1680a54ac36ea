"""GPU check of the dual_encoder trainer: it runs on CUDA with bf16 autocast when it can see a GPU,
and how its throughput compares with the CPU on the same machine.

    python -m benchmarks.gpu_trainer            # on a machine with an NVIDIA GPU

Prints one JSON line per run and exits non-zero if CUDA or bf16 autocast was not used.
Needs only torch, transformers, numpy and pydantic (no Ray, MLflow or database).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import torch
from torch import nn

from trainers.config import TrialConfig
from trainers.dual_encoder import resolve_device, train_dual_encoder

SIZES: dict[str, dict[str, Any]] = {
    # The towers of sweeps/temperature.yaml.
    "small": {"data": {"n_train": 2048, "n_eval": 512}, "optim": {"batch_size": 64}},
    # Wider towers and a large batch, where a GPU earns its keep.
    "large": {
        "data": {"n_train": 16384, "n_eval": 1024, "image_size": 32},
        "model": {
            "embed_dim": 256,
            "image": {"channels": [64, 128, 256]},
            "text": {"hidden_size": 256, "num_layers": 4, "num_heads": 4},
        },
        "optim": {"batch_size": 1024},
    },
}


def run(size: str, device: str, epochs: float) -> dict[str, Any]:
    overrides = dict(SIZES[size])
    overrides["optim"] = {**overrides["optim"], "epochs": epochs}
    config = TrialConfig.model_validate(
        {**overrides, "device": device, "eval": {"every_steps": 10_000}}
    )
    linear_dtypes: set[str] = set()

    def record_dtype(module: nn.Module, _inputs: Any, output: Any) -> None:
        if isinstance(module, nn.Linear) and isinstance(output, torch.Tensor):
            linear_dtypes.add(str(output.dtype).removeprefix("torch."))

    handle = nn.modules.module.register_module_forward_hook(record_dtype)
    steps: list[int] = []
    start = time.perf_counter()
    try:
        result = train_dual_encoder(config, lambda step, _m: steps.append(step))
    finally:
        handle.remove()
    if device == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    samples = result.steps * config.optim.batch_size
    return {
        "size": size,
        "device": str(resolve_device(device)),
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
        "steps": result.steps,
        "batch_size": config.optim.batch_size,
        "wall_s": round(wall, 2),
        "samples_per_s": round(samples / wall, 1),
        "linear_output_dtypes": sorted(linear_dtypes),
        "final_gap_norm": round(result.metrics["gap_norm"], 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=2.0)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device visible; this check needs an NVIDIA GPU", file=sys.stderr)
        return 2
    print(json.dumps({"torch": torch.__version__, "auto_device": str(resolve_device("auto"))}))
    ok = resolve_device("auto").type == "cuda"
    run("small", "cuda", 0.1)  # warm-up: CUDA context, kernels and allocator caches
    for size in SIZES:
        gpu = run(size, "cuda", args.epochs)
        cpu = run(size, "cpu", min(args.epochs, 0.5 if size == "large" else args.epochs))
        gpu["speedup_vs_cpu"] = round(gpu["samples_per_s"] / cpu["samples_per_s"], 1)
        for record in (cpu, gpu):
            print(json.dumps(record), flush=True)
        ok = ok and "bfloat16" in gpu["linear_output_dtypes"]
    print(json.dumps({"cuda_used": ok, "bf16_autocast_used": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
