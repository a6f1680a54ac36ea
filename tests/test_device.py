"""Precision and placement on GPU workers, tested on the CPU where a CPU can show it.

CPU autocast to bf16 stands in for a GPU's: inside it, the contrastive loss at tau = 1/100 and
every evaluation metric must equal the float32 computation, because autocast is meant to cover
the towers' forward passes only. The tests that need CUDA are skipped, with that reason, where
there is none.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.helpers import orchestrator
from trainers.config import TrialConfig
from trainers.device import resolve_device
from trainers.dual_encoder import build_model, make_optimiser, train_dual_encoder, train_step
from trainers.loss import contrastive_loss
from trainers.reports import CUDA_METRICS

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA)")


def paired_unit_rows(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, d))
    b = a + 2.0 * rng.normal(size=(n, d))  # loosely matched: the loss at tau = 0.01 is far from 0
    return tuple(x / np.linalg.norm(x, axis=1, keepdims=True) for x in (a, b))  # type: ignore[return-value]


def infonce_float64(a: np.ndarray, b: np.ndarray, scale: float) -> float:
    """Symmetric InfoNCE computed independently, in float64 NumPy."""
    logits = scale * a @ b.T

    def cross_entropy(z: np.ndarray) -> float:
        top = z.max(axis=1, keepdims=True)
        lse = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
        return float(np.mean(lse - np.diag(z)))

    return (cross_entropy(logits) + cross_entropy(logits.T)) / 2


def test_the_loss_at_tau_one_hundredth_is_float32_inside_bf16_autocast() -> None:
    a64, b64 = paired_unit_rows(256, 32, seed=0)
    a, b = torch.from_numpy(a64).float(), torch.from_numpy(b64).float()
    log_scale = torch.tensor(np.log(100.0), requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = contrastive_loss(a, b, log_scale.exp())
    loss.backward()  # type: ignore[no-untyped-call]
    assert loss.dtype == torch.float32
    assert float(loss.detach()) == pytest.approx(infonce_float64(a64, b64, 100.0), abs=1e-5)
    plain_scale = torch.tensor(np.log(100.0), requires_grad=True)
    contrastive_loss(a, b, plain_scale.exp()).backward()  # type: ignore[no-untyped-call]
    assert log_scale.grad is not None and plain_scale.grad is not None
    assert float(log_scale.grad) == pytest.approx(float(plain_scale.grad), abs=1e-5)


def test_every_evaluation_metric_inside_bf16_autocast_equals_float32(
    tiny_base: dict[str, Any],
) -> None:
    tiny_base["optim"]["epochs"] = 0  # measure at init: the evaluation alone
    tiny_base["eval"]["shift_lambdas"] = [-0.5, 0.0, 0.5]
    tiny_base["device"] = "cpu"  # CPU autocast, also where `auto` would take a GPU
    config = TrialConfig.model_validate(tiny_base)
    plain = train_dual_encoder(config, lambda s, m: None).metrics
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = train_dual_encoder(config, lambda s, m: None).metrics
    assert set(inside) == set(plain)
    for name, value in plain.items():
        assert inside[name] == pytest.approx(value, abs=1e-5), name


def test_autocast_still_covers_the_towers_forward_passes(tiny_base: dict[str, Any]) -> None:
    """The fix must not turn bf16 off where it pays: the towers' layers inside a step."""
    config = TrialConfig.model_validate(tiny_base)
    model = build_model(config, _specs(tiny_base), torch.device("cpu"))
    seen: set[torch.dtype] = set()
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda module, _i, out: seen.add(out.dtype) if isinstance(module, torch.nn.Linear) else None
    )
    images, tokens = torch.rand(16, 3, 12, 12), torch.randint(1, 5, (16, 6))
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = train_step(model, make_optimiser(model, config), images, tokens)
    finally:
        hook.remove()
    assert torch.bfloat16 in seen and loss.dtype == torch.float32


def _specs(base: dict[str, Any]) -> Any:
    from trainers.data.paired import InputSpec

    size = base["data"]["image_size"]
    return InputSpec("image", (3, size, size)), InputSpec("tokens", (6,), vocab_size=8)


@pytest.mark.parametrize(
    ("choice", "gpus", "expected"),
    [("auto", 0.0, "cpu"), ("auto", 0.25, "cuda"), ("auto", 1.0, "cuda"), ("cpu", 0.0, "cpu")],
)
def test_auto_follows_the_gpu_share_ray_gave_the_trial(
    choice: str, gpus: float, expected: str
) -> None:
    assert resolve_device(choice, gpus).type == expected


@pytest.mark.parametrize(
    ("device", "gpu", "fragment"),
    [
        ("cuda", 0, "device: cuda needs a GPU, but resources.gpu is 0"),
        ("cpu", 0.5, "device: cpu with resources.gpu 0.5 would hold a GPU it never uses"),
    ],
)
def test_a_device_that_disagrees_with_the_resources_is_one_line_and_exit_2(
    write_spec: Callable[..., Path], device: str, gpu: float, fragment: str
) -> None:
    spec = write_spec(
        {
            "name": "dev",
            "base": {"device": device},
            "parameters": {"seed": {"grid": [0, 1, 2]}},
            "resources": {"cpu": 1, "gpu": gpu},
        }
    )
    result = orchestrator("validate", str(spec), cwd=spec.parent)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(lines) == 1 and fragment in lines[0], lines


def test_plan_says_how_many_trials_share_a_gpu(write_spec: Callable[..., Path]) -> None:
    spec = write_spec(
        {
            "name": "shared",
            "parameters": {"seed": {"grid": [0, 1, 2, 3]}},
            "resources": {"cpu": 1, "gpu": 0.25},
        }
    )
    result = orchestrator("plan", str(spec), cwd=spec.parent)
    assert result.returncode == 0, result.stderr
    assert "4 trials share each GPU (resources.gpu: 0.25)" in result.stdout


@CUDA
def test_a_trial_sharing_a_gpu_keeps_to_its_share_and_gives_it_back(
    tiny_base: dict[str, Any],
) -> None:
    config = TrialConfig.model_validate(tiny_base)
    total = torch.cuda.get_device_properties(0).total_memory
    refused: list[bool] = []

    def report(step: int, metrics: dict[str, float]) -> None:
        if step == 0:  # inside the trial: half the card is more than its quarter
            try:
                torch.empty(total // 2, dtype=torch.uint8, device="cuda")
                refused.append(False)
            except torch.OutOfMemoryError:
                refused.append(True)

    torch.cuda.empty_cache()
    before = torch.cuda.memory_reserved()  # what earlier tests in this process still hold
    try:
        result = train_dual_encoder(config, report, gpus=0.25)
        assert refused == [True]
        assert set(CUDA_METRICS) <= set(result.metrics)
        assert 0 < result.metrics["gpu_peak_memory_gb"] < 0.25 * total / 1e9
        assert torch.cuda.memory_reserved() <= before + 4 * 2**20  # the trial's cache went back
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)


@CUDA
@pytest.mark.parametrize("image", ["cnn", "vit", "clip_vision"])
def test_a_training_step_does_not_wait_for_the_gpu(tiny_base: dict[str, Any], image: str) -> None:
    config = TrialConfig.model_validate(
        {**tiny_base, "model": {**tiny_base["model"], "image": {"kind": image, "patch_size": 4}}}
        if image != "cnn"
        else tiny_base
    )
    device = torch.device("cuda")
    model = build_model(config, _specs(tiny_base), device)
    optimiser = make_optimiser(model, config)
    images = torch.rand(16, 3, 12, 12, device=device)
    tokens = torch.randint(1, 5, (16, 6), device=device)
    train_step(model, optimiser, images, tokens)  # first step: allocations, lazy init
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            train_step(model, optimiser, images, tokens)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def _reference_embeddings(tower: torch.nn.Module, tokens: torch.Tensor, kind: str) -> torch.Tensor:
    """The tower's embeddings computed with transformers' own 2-D padding mask."""
    mask = (tokens != 0).long()
    hidden = tower.encoder(input_ids=tokens, attention_mask=mask).last_hidden_state
    if kind == "text_transformer":
        pooled = hidden[:, 0]
    elif kind == "clip_text":
        pooled = hidden[torch.arange(len(tokens)), mask.sum(dim=1) - 1]
    else:  # pretrained_text: the mean over real tokens
        weights = mask.unsqueeze(-1).float()
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1)
    return torch.nn.functional.normalize(tower.proj(pooled), dim=-1)


@pytest.mark.parametrize("kind", ["text_transformer", "clip_text", "pretrained_text"])
def test_the_towers_own_attention_mask_equals_transformers_padding_mask(kind: str) -> None:
    """The text towers build their 4-D mask on the device (no host check of a 2-D mask per
    forward); it must give exactly what transformers' padding (and causal) mask gives."""
    from trainers.config import ModelConfig
    from trainers.data.paired import InputSpec
    from trainers.towers.registry import build_tower

    config = ModelConfig.model_validate(
        {"embed_dim": 8, "text": {"kind": kind, "num_layers": 2, "hidden_size": 16, "num_heads": 2}}
        if kind != "pretrained_text"
        else {"embed_dim": 8, "text": {"kind": kind}}
    )
    vocab = 1000 if kind == "pretrained_text" else 20
    tower = build_tower(config.text, InputSpec("tokens", (7,), vocab_size=vocab), 8, "text").eval()
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(2, vocab, (6, 7), generator=generator)
    tokens[:, 0] = 1
    for row, length in enumerate([7, 5, 3, 1, 4, 6]):
        tokens[row, length:] = 0  # right padding, as every tokenizer here pads
    with torch.no_grad():
        got, expected = tower(tokens), _reference_embeddings(tower, tokens, kind)
    assert torch.allclose(got, expected, atol=1e-5)
