"""The `dual_encoder` trainer: two towers (by default a CNN image tower and a transformer text
tower) trained with symmetric InfoNCE on a paired data set, reporting loss, gap geometry and
downstream quality through one callback."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from trainers.checkpoint import CheckpointHook, TrainState
from trainers.config import PretrainedTextTowerConfig, TrialConfig, steps_for
from trainers.data_types import PairedData
from trainers.datasets import make_data
from trainers.errors import DataError, NonFiniteLossError
from trainers.evaluate import Embeddings, embed_split, evaluate
from trainers.evaluate_shift import shift_summary, shift_table
from trainers.init import close_gap_by_procrustes, warm_start
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
    saved just before each report (the final one with the eval embeddings beside it), and a
    state the hook restores is resumed from the step after.
    """
    device = resolve_device(config.device)
    data = load_data(config)
    model = _build_model(config, data, device)
    optimiser = torch.optim.Adam(
        model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay
    )
    resumed = checkpoint.restore() if checkpoint is not None else None
    first = 1
    if resumed is not None:
        _load(model, optimiser, resumed)
        first = resumed.step + 1
    inputs_a, inputs_b = data.train.a.to(device), data.train.b.to(device)
    steps = steps_for(config, len(data.train))
    last: _Evaluation | None = None
    if resumed is None:
        last = _evaluate(model, data, config, device, final=steps == 0)
        _checkpoint_and_report(0, last, model, optimiser, report, checkpoint)
    running, count = 0.0, 0
    for step, batch in _batches(config, len(data.train), first, steps):
        model.train(True)
        with _autocast(device):
            a, b = model.image(inputs_a[batch]), model.text(inputs_b[batch])
            loss = contrastive_loss(a.float(), b.float(), model.temperature.scale())
        if not torch.isfinite(loss):
            raise NonFiniteLossError(step)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        running, count = running + float(loss.detach()), count + 1
        if step % config.eval.every_steps == 0 or step == steps:
            last = _evaluate(model, data, config, device, final=step == steps)
            last.metrics["train_loss"] = running / count
            running, count = 0.0, 0
            _checkpoint_and_report(step, last, model, optimiser, report, checkpoint)
    if last is None:  # resumed at the final step: nothing left to train
        last = _evaluate(model, data, config, device, final=True)
    return TrainResult(steps=steps, metrics=last.metrics, embeddings=last.embeddings)


def load_data(config: TrialConfig) -> PairedData:
    """The trial's data, with captions re-tokenised for a pretrained text tower."""
    data = make_data(config.data, config.seed)
    if isinstance(config.model.text, PretrainedTextTowerConfig):
        from trainers.towers_pretrained import retokenize

        data = retokenize(data, config.model.text)
    return data


@dataclass
class _Evaluation:
    metrics: dict[str, float]
    embeddings: Embeddings
    arrays: dict[str, np.ndarray] | None  # the final one only: what EMBEDDINGS_FILE holds


def _checkpoint_and_report(
    step: int,
    evaluation: _Evaluation,
    model: _Model,
    optimiser: torch.optim.Optimizer,
    report: Report,
    checkpoint: CheckpointHook | None,
) -> None:
    if checkpoint is not None:
        modules = {name: getattr(model, name).state_dict() for name in MODULES}
        state = TrainState(step, modules, optimiser.state_dict(), evaluation.arrays)
        checkpoint.save(state)
    report(step, evaluation.metrics)


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


def _build_model(config: TrialConfig, data: PairedData, device: torch.device) -> _Model:
    image, text = build_towers(config.model, (data.a_input, data.b_input), config.init_seed)
    warm_start(image, text, config.model.init)
    if config.model.init.close_gap == "procrustes":
        close_gap_by_procrustes(image, text, data.train)
    temperature = Temperature(
        config.loss.temperature, config.loss.learn_temperature, config.loss.min_temperature
    )
    return _Model(image.to(device), text.to(device), temperature.to(device))


def _batches(
    config: TrialConfig, n: int, first: int, steps: int
) -> Iterator[tuple[int, torch.Tensor]]:
    """(step, indices into the n training pairs) for steps first..steps; whole batches only.

    Each epoch's order is drawn from (seed, epoch) alone, so a run resumed at any step sees
    exactly the batches the uninterrupted run would have.
    """
    size = min(config.optim.batch_size, n)
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
    model: _Model, data: PairedData, config: TrialConfig, device: torch.device, final: bool
) -> _Evaluation:
    model.train(False)
    eval_batch = config.optim.batch_size * 4
    class_b = None
    with _autocast(device):
        emb = embed_split(model.image, model.text, data.eval, eval_batch, device)
        if data.class_inputs is not None:
            with torch.inference_mode():
                class_b = model.text(data.class_inputs.to(device)).float().cpu()
    scale = model.temperature.scale()
    metrics = evaluate(emb, data.eval, class_b, scale, config.optim.batch_size)
    metrics["temperature"] = model.temperature.value()
    arrays = _arrays(emb, data, class_b) if final else None
    if arrays is not None and config.eval.shift_lambdas:
        rows = shift_table(arrays, config.eval.shift_lambdas, model.temperature.value())
        metrics |= shift_summary(rows)
    return _Evaluation(metrics, emb, arrays)


def _arrays(
    emb: Embeddings, data: PairedData, class_b: torch.Tensor | None
) -> dict[str, np.ndarray]:
    arrays = {"a": emb.a.numpy(), "b": emb.b.numpy()}
    optional = {"labels": data.eval.labels, "groups": data.eval.groups, "class_b": class_b}
    arrays |= {name: t.numpy() for name, t in optional.items() if t is not None}
    return arrays


def _autocast(device: torch.device) -> contextlib.AbstractContextManager[object]:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
