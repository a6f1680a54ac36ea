"""The `dual_encoder` trainer: a CNN image tower and a transformer text tower trained with
symmetric InfoNCE, reporting loss, gap geometry and downstream quality through one callback."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from trainers.checkpoint import CheckpointHook, TrainState
from trainers.config import TrialConfig
from trainers.data import ShapesData, make_shapes
from trainers.errors import DataError, NonFiniteLossError
from trainers.evaluate import Embeddings, embed_split, evaluate
from trainers.loss import Temperature, contrastive_loss
from trainers.towers import build_towers

Report = Callable[[int, dict[str, float]], None]
"""Called as report(step, metrics) at step 0 and every `eval.every_steps` steps."""

MODULES = ("image", "text", "temperature")  # the parts of _Model a checkpoint holds


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


def train_dual_encoder(
    config: TrialConfig, report: Report, checkpoint: CheckpointHook | None = None
) -> TrainResult:
    """Train (or, with `optim.epochs: 0`, only measure) one dual encoder.

    Reports at step 0 and every `eval.every_steps` steps; with a `checkpoint` hook, a state is
    saved just before each report, and a state the hook restores is resumed from the step after.
    """
    device = resolve_device(config.device)
    data = make_shapes(config.data, config.seed)
    model = _build_model(config, data, device)
    optimiser = torch.optim.Adam(
        model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay
    )
    resumed = checkpoint.restore() if checkpoint is not None else None
    first = 1
    if resumed is not None:
        _load(model, optimiser, resumed)
        first = resumed.step + 1
    images, tokens = data.train.images.to(device), data.train.tokens.to(device)
    steps = config.total_steps
    last: dict[str, float] | None = None
    if resumed is None:
        last = _evaluate(model, data, config, device)
        _checkpoint_and_report(0, last, model, optimiser, report, checkpoint)
    running, count = 0.0, 0
    for step, batch in _batches(config, first, steps):
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
            _checkpoint_and_report(step, last, model, optimiser, report, checkpoint)
    if last is None:  # resumed at the final step: nothing left to train
        last = _evaluate(model, data, config, device)
    model.train(False)
    final = embed_split(model.image, model.text, data.eval, config.optim.batch_size * 4, device)
    return TrainResult(steps=steps, metrics=last, embeddings=final)


def _checkpoint_and_report(
    step: int,
    metrics: dict[str, float],
    model: _Model,
    optimiser: torch.optim.Optimizer,
    report: Report,
    checkpoint: CheckpointHook | None,
) -> None:
    if checkpoint is not None:
        checkpoint.save(_state(step, model, optimiser))
    report(step, metrics)


def _state(step: int, model: _Model, optimiser: torch.optim.Optimizer) -> TrainState:
    modules = {name: getattr(model, name).state_dict() for name in MODULES}
    return TrainState(step=step, modules=modules, optimizer=optimiser.state_dict())


def _load(model: _Model, optimiser: torch.optim.Optimizer, state: TrainState) -> None:
    missing = [name for name in MODULES if name not in state.modules]
    if missing:
        raise DataError(f"checkpoint has no weights for {', '.join(missing)}")
    try:
        for name in MODULES:
            getattr(model, name).load_state_dict(state.modules[name])
        optimiser.load_state_dict(state.optimizer)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise DataError(f"checkpoint does not fit this trial's model: {exc}") from None


def _build_model(config: TrialConfig, data: ShapesData, device: torch.device) -> _Model:
    image, text = build_towers(
        config.model, len(data.tokenizer.vocab), data.tokenizer.max_length, config.init_seed
    )
    temperature = Temperature(
        config.loss.temperature, config.loss.learn_temperature, config.loss.min_temperature
    )
    return _Model(image.to(device), text.to(device), temperature.to(device))


def _batches(config: TrialConfig, first: int, steps: int) -> Iterator[tuple[int, torch.Tensor]]:
    """(step, indices) for steps first..steps; whole batches only.

    Each epoch's order is drawn from (seed, epoch) alone, so a run resumed at any step sees
    exactly the batches the uninterrupted run would have.
    """
    n, size = config.data.n_train, min(config.optim.batch_size, config.data.n_train)
    per_epoch = n // size
    epoch, order = -1, torch.empty(0, dtype=torch.int64)
    for step in range(first, steps + 1):
        index = step - 1
        if index // per_epoch != epoch:
            epoch = index // per_epoch
            generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
            order = torch.randperm(n, generator=generator)
        start = (index % per_epoch) * size
        yield step, order[start : start + size]


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
