"""The `dual_encoder` trainer: two towers (by default a CNN image tower and a transformer text
tower) trained with symmetric InfoNCE on a paired data set, reporting loss, gap geometry and
downstream quality through one callback."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from trainers.batches import units
from trainers.checkpoint import CheckpointHook, TrainState
from trainers.config import TrialConfig, steps_for
from trainers.data.paired import InputSpec, PairedData, PairedSplit
from trainers.data.registry import make_data
from trainers.device import (
    full_precision,
    gpu_share,
    peak_memory_gb,
    resolve_device,
    tower_autocast,
)
from trainers.embedding_cache import eval_embeddings, frozen_key, towers_frozen
from trainers.errors import DataError, NonFiniteLossError
from trainers.evaluate import ClassEmbeddings, Embeddings, class_embeddings, evaluate
from trainers.evaluate_folder import FolderInputs, folder_metrics, folder_prompt_arrays
from trainers.evaluate_shift import heldout_shift, shift_summary, shift_table
from trainers.inputs import TowerInputs, image_layout, train_batches
from trainers.loss import Temperature, contrastive_loss
from trainers.towers.init import close_gap_by_procrustes, warm_start
from trainers.towers.registry import build_towers

Report = Callable[[int, dict[str, float]], None]
"""Called as report(step, metrics) at step 0 and every `eval.every_steps` steps."""

MODULES = ("image", "text", "temperature")  # the parts of DualModel a checkpoint holds


@dataclass(frozen=True)
class TrainResult:
    steps: int
    metrics: dict[str, float]
    embeddings: Embeddings  # final eval-split embeddings, for plots and artifacts


@dataclass
class DualModel:
    """Both towers and the temperature: what a step trains and a checkpoint holds."""

    image: nn.Module
    text: nn.Module
    temperature: Temperature

    def parameters(self) -> list[nn.Parameter]:
        mods = (self.image, self.text, self.temperature)
        return [p for m in mods for p in m.parameters() if p.requires_grad]

    def train(self, mode: bool) -> None:
        self.image.train(mode)
        self.text.train(mode)


def train_dual_encoder(
    config: TrialConfig,
    report: Report,
    checkpoint: CheckpointHook | None = None,
    gpus: float | None = None,
) -> TrainResult:
    """Train (or, with `optim.epochs: 0`, only measure) one dual encoder.

    Reports at step 0 and every `eval.every_steps` steps; with a `checkpoint` hook, a state is
    saved just before each report (the final one with the eval embeddings beside it), and a
    state the hook restores is resumed from the step after. `gpus` is the share of a GPU the
    runner gave the trial (device.py); None outside a runner.
    """
    device = resolve_device(config.device, gpus)
    with gpu_share(device, gpus):
        return _train(config, report, checkpoint, device)


def _train(
    config: TrialConfig, report: Report, checkpoint: CheckpointHook | None, device: torch.device
) -> TrainResult:
    data = load_data(config)
    model = build_model(config, (data.a_input, data.b_input), device, data.train)
    optimiser = make_optimiser(model, config)
    resumed = checkpoint.restore() if checkpoint is not None else None
    first = 1
    if resumed is not None:
        load_train_state(model, optimiser, resumed)
        first = resumed.step + 1
    inputs = TowerInputs.on_device(data, model.image, device)
    folder = FolderInputs.of(config, data, device)
    steps = steps_for(config, units(len(data.train), data.train.items))
    # Towers that do not change embed the eval data once, for every trial that shares them.
    frozen = steps == 0 or towers_frozen(model.image, model.text)
    towers = config.model.image.model_dump_json() + config.model.text.model_dump_json()
    key = frozen_key(model.image, model.text, inputs, towers) if frozen else None
    evaluate_now = functools.partial(evaluate_trial, model, inputs, folder, data, config, key)
    last: Evaluation | None = None
    if resumed is None:
        last = evaluate_now(final=steps == 0)
        checkpoint_and_report(0, last, model, optimiser, report, checkpoint)
    losses = _LossWindow()
    model.train(True)
    for step, batch_a, batch_b in train_batches(config, data, inputs, first, steps):
        warm_up(optimiser, config, step)
        losses.add(step, train_step(model, optimiser, batch_a, batch_b))
        if step % config.eval.every_steps == 0 or step == steps:
            train_loss = losses.mean_of_finite()  # NonFiniteLossError names the first bad step
            last = evaluate_now(final=step == steps)
            last.metrics["train_loss"] = train_loss
            checkpoint_and_report(step, last, model, optimiser, report, checkpoint)
            model.train(True)
    if last is None:  # resumed at the final step: nothing left to train
        last = evaluate_now(final=True)
    return TrainResult(steps=steps, metrics=last.metrics, embeddings=last.embeddings)


def make_optimiser(model: DualModel, config: TrialConfig) -> torch.optim.Optimizer:
    """Adam over what trains of both towers and a learned temperature. Parts get groups of
    their own only when they have rates of their own (a tower's `lr`, `loss.temperature_lr`),
    so the checkpoints of trials without them keep loading."""
    # The fused kernel updates every parameter in one pass (benchmarks/README.md has its cost),
    # and its state_dict is the same as the default implementation's, so checkpoints of either
    # load into the other.
    groups: list[dict[str, Any]] = []
    for params, lr in zip(_parameter_groups(model, config), _group_rates(config), strict=True):
        if config.optim.decay == "weights":
            # CLIP's rule: matrices and kernels decay; the temperature, norms and biases (every
            # parameter of fewer than two dimensions) do not. Two groups per rate, always, so
            # that warm_up's rates line up with them even where one of the two is empty.
            groups += [
                {"params": [p for p in params if p.ndim >= 2], "lr": lr},
                {"params": [p for p in params if p.ndim < 2], "lr": lr, "weight_decay": 0.0},
            ]
        else:
            groups.append({"params": params, "lr": lr})
    return torch.optim.Adam(groups, weight_decay=config.optim.weight_decay, fused=True)


def _tower_rates(config: TrialConfig) -> tuple[float | None, float | None]:
    return getattr(config.model.image, "lr", None), getattr(config.model.text, "lr", None)


def _parameter_groups(model: DualModel, config: TrialConfig) -> list[list[nn.Parameter]]:
    trainable = model.parameters()
    temperature = model.temperature.log_scale
    if _tower_rates(config) != (None, None):
        kept = {id(p) for p in trainable}
        towers = [[p for p in t.parameters() if id(p) in kept] for t in (model.image, model.text)]
        return [*towers, [temperature]]
    if config.loss.temperature_lr is not None:
        return [[p for p in trainable if p is not temperature], [temperature]]
    return [trainable or [temperature]]  # all frozen: a trial that only measures


def _group_rates(config: TrialConfig) -> list[float]:
    """The base learning rate of each of make_optimiser's groups, in order."""
    lr, temperature_lr = config.optim.lr, config.loss.temperature_lr
    image_lr, text_lr = _tower_rates(config)
    if (image_lr, text_lr) != (None, None):
        return [image_lr or lr, text_lr or lr, temperature_lr or lr]
    return [lr] if temperature_lr is None else [lr, temperature_lr]


def warm_up(optimiser: torch.optim.Optimizer, config: TrialConfig, step: int) -> None:
    """Set each group's rate for `step` (1-based) of a linear warm-up from 0, as CLIP's.

    Computed from the step alone rather than held in a scheduler, so a resumed trial (whose
    checkpointed groups carry the rate of the step it saved) continues the same schedule.
    """
    warmup = config.optim.warmup_steps
    if step > warmup:  # the rate of step `warmup` is the full one, and it stays set
        return
    rates = _group_rates(config)
    if config.optim.decay == "weights":
        rates = [lr for lr in rates for _ in range(2)]  # make_optimiser's two groups per rate
    for group, lr in zip(optimiser.param_groups, rates, strict=True):
        group["lr"] = lr * (step / warmup)


def train_step(
    model: DualModel,
    optimiser: torch.optim.Optimizer,
    inputs_a: torch.Tensor,
    inputs_b: torch.Tensor,
) -> torch.Tensor:
    """One optimiser step on one batch; returns the loss, still on the device (no sync)."""
    with tower_autocast(inputs_a.device):
        a, b = model.image(inputs_a), model.text(inputs_b)
    loss = contrastive_loss(a, b, model.temperature.scale())  # float32 (loss.py)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    optimiser.step()
    model.temperature.after_step()
    return loss.detach()


class _LossWindow:
    """The training losses since the last report, kept on the device.

    Reading a loss back (`float(loss)`, `if torch.isfinite(loss)`) each step would make the
    CPU wait for the GPU at every step; here the window is read once per report, and the first
    non-finite step in it is still the one named.
    """

    def __init__(self) -> None:
        self.first_step = 0
        self.losses: list[torch.Tensor] = []

    def add(self, step: int, loss: torch.Tensor) -> None:
        if not self.losses:
            self.first_step = step
        self.losses.append(loss)

    def mean_of_finite(self) -> float:
        values = torch.stack(self.losses).double().cpu()
        self.losses = []
        bad = torch.nonzero(~torch.isfinite(values))
        if bad.numel():
            raise NonFiniteLossError(self.first_step + int(bad[0, 0]))
        return float(values.mean())


def load_data(config: TrialConfig) -> PairedData:
    """The trial's data, with captions re-tokenised for a pretrained text tower."""
    from trainers.towers.pretrained import retokenize, tokenizer_folder

    data = make_data(config.data, config.seed)
    folder = tokenizer_folder(config.model.text)
    return data if folder is None else retokenize(data, folder)


@dataclass
class Evaluation:
    metrics: dict[str, float]
    embeddings: Embeddings
    arrays: dict[str, np.ndarray] | None  # the final one only: what EMBEDDINGS_FILE holds


def checkpoint_and_report(
    step: int,
    evaluation: Evaluation,
    model: DualModel,
    optimiser: torch.optim.Optimizer,
    report: Report,
    checkpoint: CheckpointHook | None,
) -> None:
    if checkpoint is not None:
        modules = {name: getattr(model, name).state_dict() for name in MODULES}
        state = TrainState(step, modules, optimiser.state_dict(), evaluation.arrays)
        checkpoint.save(state)
    report(step, evaluation.metrics)


def load_train_state(model: DualModel, optimiser: torch.optim.Optimizer, state: TrainState) -> None:
    missing = [name for name in MODULES if name not in state.modules]
    if missing:
        raise DataError(f"checkpoint has no weights for {', '.join(missing)}")
    try:
        for name in MODULES:
            getattr(model, name).load_state_dict(state.modules[name])
        optimiser.load_state_dict(state.optimizer)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise DataError(f"checkpoint does not fit this trial's model: {exc}") from None


def build_model(
    config: TrialConfig,
    specs: tuple[InputSpec, InputSpec],
    device: torch.device,
    train: PairedSplit | None = None,
) -> DualModel:
    """Both towers and the temperature as a trial starts them: drawn from the init seed, warm-
    started, with `close_gap` aligned on `train`'s pairs, on the device in the image layout."""
    image, text = build_towers(config.model, specs, config.init_seed)
    warm_start(image, text, config.model.init)
    if config.model.init.close_gap == "procrustes":
        if train is None:
            raise ValueError("close_gap: procrustes needs the training pairs")
        close_gap_by_procrustes(image, text, train)
    temperature = Temperature(
        config.loss.temperature,
        config.loss.learn_temperature,
        config.loss.min_temperature,
        clamp_in_place=config.loss.temperature_clamp != "in_forward",
    )
    layout = image_layout(image, specs[0])
    # Module.to applies memory_format to the 4-d weights; torch's stubs leave the keyword out.
    image.to(device, memory_format=layout)  # type: ignore[call-overload]
    return DualModel(image, text.to(device), temperature.to(device))


def evaluate_trial(
    model: DualModel,
    inputs: TowerInputs,
    folder: FolderInputs | None,
    data: PairedData,
    config: TrialConfig,
    cache_key: str | None,
    final: bool,
) -> Evaluation:
    """Every eval metric, the folder's with `eval.folder`; `cache_key` names the embeddings
    of towers that do not change."""
    model.train(False)
    device = inputs.device
    class_b = None
    batch = config.optim.batch_size * 4  # larger eval batches are no faster on the CPU
    with full_precision(device), torch.inference_mode():
        a, b, prompts = eval_embeddings(model.image, model.text, inputs, batch, cache_key)
    emb = Embeddings(a, b)
    if prompts is not None:
        class_b = class_embeddings(prompts, data.prompt_class, data.prompt_variant)
    scale = model.temperature.scale()
    metrics = evaluate(emb, data.eval, class_b, scale, config.optim.batch_size)
    metrics["temperature"] = model.temperature.value()
    if folder is not None:
        metrics |= folder_metrics(model.image, model.text, folder, inputs, batch, cache_key)
    metrics |= peak_memory_gb(device)
    arrays = _arrays(emb, data, class_b) if final else None
    if arrays is not None and folder is not None:
        arrays |= folder_prompt_arrays(folder)
    if arrays is not None and config.eval.shift_lambdas:
        rows = shift_table(arrays, config.eval.shift_lambdas, model.temperature.value())
        metrics |= shift_summary(rows) | heldout_shift(arrays, config.eval.shift_lambdas)
    return Evaluation(metrics, emb, arrays)


def _arrays(
    emb: Embeddings, data: PairedData, class_b: ClassEmbeddings | None
) -> dict[str, np.ndarray]:
    arrays = {"a": emb.a.numpy(), "b": emb.b.numpy()}
    optional = {"labels": data.eval.labels, "groups": data.eval.groups}
    arrays |= {name: t.numpy() for name, t in optional.items() if t is not None}
    if class_b is not None:
        arrays["class_b"], arrays["class_b_class"] = (
            class_b.vectors.numpy(),
            class_b.classes.numpy(),
        )
    if class_b is not None and data.class_texts:  # which prompts made each class embedding
        owners = data.prompt_class
        arrays["class_names"] = np.array(data.class_names, dtype=str)
        arrays["class_prompts"] = np.array(data.class_texts, dtype=str)
        arrays["prompt_class"] = (
            np.arange(len(data.class_texts)) if owners is None else owners.numpy()
        )
    return arrays
