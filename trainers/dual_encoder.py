"""The `dual_encoder` trainer: a CNN image tower and a transformer text tower trained with
symmetric InfoNCE, reporting loss, gap geometry and downstream quality through one callback."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from trainers.config import TrialConfig
from trainers.data import ShapesData, make_shapes
from trainers.errors import NonFiniteLossError
from trainers.evaluate import Embeddings, embed_split, evaluate
from trainers.loss import Temperature, contrastive_loss
from trainers.towers import build_towers

Report = Callable[[int, dict[str, float]], None]
"""Called as report(step, metrics) at step 0 and every `eval.every_steps` steps."""


@dataclass(frozen=True)
class TrainResult:
    steps: int
    metrics: dict[str, float]
    embeddings: Embeddings  # final eval-split embeddings, for plots and artifacts


@dataclass
class _Model:
    image: nn.Module
    text: nn.Module
    temperature: Temperature

    def parameters(self) -> list[nn.Parameter]:
        mods = (self.image, self.text, self.temperature)
        return [p for m in mods for p in m.parameters() if p.requires_grad]

    def train(self, mode: bool) -> None:
        self.image.train(mode)
        self.text.train(mode)


def resolve_device(choice: str) -> torch.device:
    """`auto` is CUDA when this process can see a GPU (Ray hides GPUs from trials without one)."""
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def train_dual_encoder(config: TrialConfig, report: Report) -> TrainResult:
    device = resolve_device(config.device)
    data = make_shapes(config.data, config.seed)
    model = _build_model(config, data, device)
    optimiser = torch.optim.Adam(
        model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay
    )
    images, tokens = data.train.images.to(device), data.train.tokens.to(device)
    steps = config.total_steps
    last = _evaluate(model, data, config, device)
    report(0, last)
    running, count = 0.0, 0
    for step, batch in enumerate(_batches(config, steps), start=1):
        model.train(True)
        with _autocast(device):
            a, b = model.image(images[batch]), model.text(tokens[batch])
            loss = contrastive_loss(a.float(), b.float(), model.temperature.scale())
        if not torch.isfinite(loss):
            raise NonFiniteLossError(step)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        running, count = running + float(loss.detach()), count + 1
        if step % config.eval.every_steps == 0 or step == steps:
            last = _evaluate(model, data, config, device)
            last["train_loss"] = running / count
            running, count = 0.0, 0
            report(step, last)
    model.train(False)
    final = embed_split(model.image, model.text, data.eval, config.optim.batch_size * 4, device)
    return TrainResult(steps=steps, metrics=last, embeddings=final)


def _build_model(config: TrialConfig, data: ShapesData, device: torch.device) -> _Model:
    image, text = build_towers(
        config.model, len(data.tokenizer.vocab), data.tokenizer.max_length, config.init_seed
    )
    temperature = Temperature(
        config.loss.temperature, config.loss.learn_temperature, config.loss.min_temperature
    )
    return _Model(image.to(device), text.to(device), temperature.to(device))


def _batches(config: TrialConfig, steps: int) -> Iterator[torch.Tensor]:
    """Index batches over reshuffled epochs, seeded by the trial seed; whole batches only."""
    generator = torch.Generator().manual_seed(config.seed)
    n, size = config.data.n_train, min(config.optim.batch_size, config.data.n_train)
    produced = 0
    while produced < steps:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - size + 1, size):
            if produced == steps:
                return
            yield order[start : start + size]
            produced += 1


def _evaluate(
    model: _Model, data: ShapesData, config: TrialConfig, device: torch.device
) -> dict[str, float]:
    model.train(False)
    eval_batch = config.optim.batch_size * 4
    with _autocast(device):
        emb = embed_split(model.image, model.text, data.eval, eval_batch, device)
        with torch.inference_mode():
            prompts = model.text(data.class_prompts.to(device)).float().cpu()
    scale = model.temperature.scale()
    metrics = evaluate(emb, data.eval, prompts, scale, config.optim.batch_size)
    metrics["temperature"] = model.temperature.value()
    return metrics


def _autocast(device: torch.device) -> contextlib.AbstractContextManager[object]:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
