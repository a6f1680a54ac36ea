"""GPU check of the dual_encoder trainer: it runs on CUDA with bf16 autocast when it can see a GPU,
how its throughput compares with the CPU on the same machine, and what share of the GPU's peak a
ViT-B/32-sized dual encoder step reaches.

    python -m benchmarks.gpu_trainer            # on a machine with an NVIDIA GPU
    python -m benchmarks.gpu_trainer --tiny     # the same code on the CPU at a tiny size (CI)

Prints one JSON line per run and exits non-zero if CUDA or bf16 autocast was not used. The
`default_trial` records time the training step alone (inputs on the device, no data building,
no evaluation); the `small` and `large` records time whole trials, data and evaluations included.
Needs only torch, transformers, numpy and pydantic (no Ray, MLflow or database).

The ViT-B/32 step (`vit_b32`): CLIP's ViT-B/32 shapes built by the product's own towers
(`clip_vision`: 224 px images, patch 32, width 768, 12 layers, 12 heads; `clip_text`: 77 tokens,
width 512, 12 layers, 8 heads; 512-d embeddings), trained by the product's own `train_step`
(bf16 autocast, fused Adam, symmetric InfoNCE) on random inputs already on the GPU. Its FLOPs
per step are counted by `torch.utils.flop_counter` (matrix products and convolutions, forward
and backward); the share of peak divides the achieved FLOP/s by the GPU's dense bf16 peak.
`clip_pretrained_vit_b32` times the same step on a transformers CLIP checkpoint folder of those
shapes (random weights written by benchmarks/clip_checkpoint.py) loaded by the `clip_pretrained`
towers: the fine-tuning step of a user's downloaded CLIP.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.clip_checkpoint import save_random_clip
from trainers.config import LossConfig, ModelConfig, ShapesDataConfig, TrialConfig
from trainers.data.paired import InputSpec
from trainers.device import resolve_device
from trainers.dual_encoder import (
    build_model,
    make_optimiser,
    train_dual_encoder,
    train_step,
)

ROOT = Path(__file__).resolve().parents[1]
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


# Dense bf16 tensor-core peaks from the vendors' data sheets, in TFLOP/s (without sparsity),
# matched in order against torch's device name: the SXM H100 calls itself "H100 80GB HBM3".
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100 PCIe": 756.0, "H100": 989.4, "A100": 312.0}
CLIP_VOCAB = 49408
VIT_B32: dict[str, Any] = {
    "embed_dim": 512,
    "image": {"kind": "clip_vision", "patch_size": 32, "hidden_size": 768, "num_layers": 12,
              "num_heads": 12},
    "text": {"kind": "clip_text", "hidden_size": 512, "num_layers": 12, "num_heads": 8},
}  # fmt: skip
VIT_TINY: dict[str, Any] = {
    "embed_dim": 16,
    "image": {"kind": "clip_vision", "patch_size": 8, "hidden_size": 32, "num_layers": 1,
              "num_heads": 2},
    "text": {"kind": "clip_text", "hidden_size": 32, "num_layers": 1, "num_heads": 2},
}  # fmt: skip


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


def vit_b32_step(device: torch.device, batch: int, steps: int, tiny: bool) -> dict[str, Any]:
    """Samples per second and share of peak of the product's step on ViT-B/32-sized towers."""
    config = TrialConfig(
        model=ModelConfig.model_validate(VIT_TINY if tiny else VIT_B32),
        loss=LossConfig(learn_temperature=True),  # CLIP's: 0.07, learned
        device=device.type,
    )
    size, tokens = (32, 16) if tiny else (224, 77)
    specs = (InputSpec("image", (3, size, size)), InputSpec("tokens", (tokens,), CLIP_VOCAB))
    label = "vit_b32_tiny" if tiny else "vit_b32"
    return step_rate(label, config, specs, device, batch, steps)


def clip_pretrained_step(
    device: torch.device, batch: int, steps: int, tiny: bool, folder: Path
) -> dict[str, Any]:
    """The same step on a ViT-B/32 CLIP checkpoint folder (random weights, benchmarks/
    clip_checkpoint.py) loaded by the `clip_pretrained` towers, its logit_scale as the start
    temperature, as a user's fine-tune of a downloaded CLIP runs."""
    path, side, context, vocab = save_random_clip(folder, tiny=tiny)
    config = TrialConfig(
        model=ModelConfig.model_validate(
            {"embed_dim": 16 if tiny else 512,
             "image": {"kind": "clip_pretrained", "path": str(path)},
             "text": {"kind": "clip_pretrained", "path": str(path)}}
        ),
        loss=LossConfig(learn_temperature=True),
        device=device.type,
    )  # fmt: skip
    specs = (InputSpec("image", (3, side, side)), InputSpec("tokens", (context,), vocab))
    label = "clip_pretrained_vit_b32" + ("_tiny" if tiny else "")
    # Captions a quarter of the context long, then end-of-text padding (CLIP's tokenizer pads so).
    return step_rate(label, config, specs, device, batch, steps, eos=(context // 4, vocab - 1))


def default_step(device: torch.device, steps: int) -> dict[str, Any]:
    """The training step alone of the default trial (sweeps/temperature.yaml's towers, batch,
    images and captions), on inputs already on the device: no data building, no evaluation."""
    from trainers.data.paired import token_spec
    from trainers.data.shapes import caption_vocabulary
    from trainers.data.tokenizer import WordTokenizer

    base = yaml.safe_load((ROOT / "sweeps" / "temperature.yaml").read_text())["base"]
    config = TrialConfig.model_validate({**base, "device": device.type})
    size = config.data.image_size if isinstance(config.data, ShapesDataConfig) else 24
    specs = (
        InputSpec("image", (3, size, size)),
        token_spec(WordTokenizer.from_texts(caption_vocabulary())),
    )
    return step_rate("default_trial", config, specs, device, config.optim.batch_size, steps)


def step_rate(
    label: str,
    config: TrialConfig,
    specs: tuple[InputSpec, InputSpec],
    device: torch.device,
    batch: int,
    steps: int,
    eos: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Samples per second of the product's `train_step` alone, its FLOPs and share of peak;
    `eos` (position, id) ends every caption there, padded with that id."""
    model = build_model(config, specs, device)
    optimiser = make_optimiser(model, config)
    images = torch.randn(batch, *specs[0].shape, device=device).contiguous(
        memory_format=torch.channels_last  # as the trainer puts its image inputs
    )
    ids = torch.randint(1, specs[1].vocab_size, (batch, specs[1].shape[0]), device=device)
    if eos is not None:
        ids = ids.clamp(max=eos[1] - 1)
        ids[:, eos[0] :] = eos[1]
    with FlopCounterMode(display=False) as counter:
        train_step(model, optimiser, images, ids)  # also the warm-up: kernels, allocator
    for _ in range(2):
        train_step(model, optimiser, images, ids)
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        train_step(model, optimiser, images, ids)
    _sync(device)
    per_step = (time.perf_counter() - start) / steps
    flops = counter.get_total_flops()
    peak = peak_tflops(device)
    achieved = flops / per_step / 1e12
    return {
        "size": label,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "batch_size": batch,
        "step_ms": round(per_step * 1000, 2),
        "samples_per_s": round(batch / per_step, 1),
        "gflop_per_step": round(flops / 1e9, 3),
        "achieved_tflops": round(achieved, 2),
        "peak_bf16_tflops": peak,
        "share_of_peak": None if peak is None else round(achieved / peak, 3),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def tiny_records() -> int:
    """Every record's code on the CPU at a tiny size, as CI runs it."""
    host = torch.device("cpu")
    print(json.dumps(default_step(host, 2)))
    print(json.dumps(vit_b32_step(host, 4, 2, tiny=True)))
    with tempfile.TemporaryDirectory() as folder:
        print(json.dumps(clip_pretrained_step(host, 4, 2, tiny=True, folder=Path(folder))))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--vit-batch", type=int, default=256, help="batch of the ViT-B/32 step")
    parser.add_argument("--tiny", action="store_true", help="the ViT step on the CPU, tiny")
    args = parser.parse_args()
    if args.tiny:
        return tiny_records()
    if not torch.cuda.is_available():
        print("no CUDA device visible; this check needs an NVIDIA GPU", file=sys.stderr)
        return 2
    print(json.dumps({"torch": torch.__version__, "auto_device": str(resolve_device("auto"))}))
    # The ViT-B/32 steps first: the figures the issue asks for, before the longer runs.
    cuda = torch.device("cuda")
    print(json.dumps(vit_b32_step(cuda, args.vit_batch, 20, tiny=False)), flush=True)
    with tempfile.TemporaryDirectory() as folder:
        step = clip_pretrained_step(cuda, args.vit_batch, 20, tiny=False, folder=Path(folder))
    print(json.dumps(step), flush=True)
    ok = resolve_device("auto").type == "cuda"
    run("small", "cuda", 0.1)  # warm-up: CUDA context, kernels and allocator caches
    for device in ("cuda", "cpu"):  # the step alone, then whole trials with data and evaluation
        print(json.dumps(default_step(torch.device(device), 50)), flush=True)
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
