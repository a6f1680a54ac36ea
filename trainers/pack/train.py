"""The `dual_encoder` trainer for K members at once: the members' towers stacked into one
vectorised model (stacked.py) and trained by one Adam with per-member settings (adam.py), each
member evaluated, checkpointed and reported exactly as the unpacked trainer does it.

A member is a trial of its own: it has its own config (which may differ from its pack-mates'
only in the settings grouping.py lists), its own report callback and checkpoint hook, and its
own outcome. A member whose data or evaluation raises, or whose loss turns non-finite, fails
alone and leaves the pack; the others go on with unchanged numbers, since no member's
arithmetic depends on another's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from trainers.batches import units
from trainers.checkpoint import CheckpointHook
from trainers.config import TrialConfig, steps_for
from trainers.device import gpu_share, resolve_device, tower_autocast
from trainers.dual_encoder import (
    DualModel,
    Evaluation,
    Report,
    TrainResult,
    build_model,
    checkpoint_and_report,
    evaluate_trial,
    load_data,
    load_train_state,
    make_optimiser,
)
from trainers.embedding_cache import frozen_key, towers_frozen
from trainers.errors import DataError, NonFiniteLossError
from trainers.inputs import TowerInputs, train_batches
from trainers.pack.adam import StackedAdam
from trainers.pack.grouping import differing_settings, why_not_packable
from trainers.pack.optimiser import (
    read_member_states,
    stacked_adam,
    stacked_parameters,
    write_member_state,
)
from trainers.pack.stacked import StackedDual

Outcome = TrainResult | Exception
"""A member's end: its result, or the error it failed with alone."""
# What fails a member alone once it trains; anything else fails the pack, which Ray retries.
MEMBER_ERRORS = (NonFiniteLossError, DataError)
AfterReport = Callable[[int, dict[int, Exception]], None]
"""Called once every member has reported a step: (step, the members that failed since the last
call, by index, with their errors), so that a runner can ship a step's reports together."""


@dataclass(frozen=True)
class Member:
    config: TrialConfig
    report: Report
    checkpoint: CheckpointHook | None = None


@dataclass
class _Live:
    """A member still in the pack: its own model (evaluated and checkpointed as unpacked), its
    own Adam (holding only the state a checkpoint needs) and its own batch order."""

    index: int
    member: Member
    model: DualModel
    own_optimiser: torch.optim.Optimizer
    batches: Iterator[tuple[int, torch.Tensor, torch.Tensor]]
    share_key: str  # members with equal keys see the same batches
    steps: int
    first: int
    resumed: bool
    shapes: tuple[object, ...]  # of its inputs and parameters: a pack's members share them
    evaluate: Callable[[bool], Evaluation]
    last: Evaluation | None = None


def train_pack(
    members: Sequence[Member], gpus: float | None = None, after_report: AfterReport | None = None
) -> list[Outcome]:
    """Train the members together; one outcome per member, in order. `gpus` is the pack's
    share of a GPU, as for train_dual_encoder. Members that could not share a pack (other
    settings than grouping.VECTORISED differ, or a tower vmap does not run) are a ValueError.
    Members resumed at different steps train as one pack per step, one after the other."""
    configs = [m.config for m in members]
    reasons = {why_not_packable(c) for c in configs} - {None}
    differing = differing_settings(configs)
    if reasons or differing:
        raise ValueError(f"not one pack: {'; '.join(sorted(map(str, reasons)) + differing)}")
    device = resolve_device(members[0].config.device, gpus)
    with gpu_share(device, gpus):
        return _Pack(members, device, after_report).run()


def _prepare(index: int, member: Member, device: torch.device) -> _Live:
    """What train_dual_encoder sets up before its loop, for one member."""
    config = member.config
    data = load_data(config)
    model = build_model(config, (data.a_input, data.b_input), device, data.train)
    own = make_optimiser(model, config)
    resumed = member.checkpoint.restore() if member.checkpoint is not None else None
    if resumed is not None:
        load_train_state(model, own, resumed)
    inputs = TowerInputs.on_device(data, model.image, device)
    steps = steps_for(config, units(len(data.train), data.train.items))
    first = 1 if resumed is None else resumed.step + 1
    frozen = steps == 0 or towers_frozen(model.image, model.text)
    towers = config.model.image.model_dump_json() + config.model.text.model_dump_json()
    key = frozen_key(model.image, model.text, inputs, towers) if frozen else None
    evaluate = functools.partial(evaluate_trial, model, inputs, None, data, config, key)
    share_key = config.data.model_dump_json() + str(config.seed)
    batches = train_batches(config, data, inputs, first, steps)
    inputs_shapes = tuple(getattr(x, "shape", ())[1:] for x in (inputs.train_a, inputs.train_b))
    parts = (model.image, model.text, model.temperature)  # frozen parameters too
    shapes = (*inputs_shapes, *(tuple(p.shape) for m in parts for p in m.parameters()))
    was_resumed = resumed is not None
    return _Live(
        index, member, model, own, batches, share_key, steps, first, was_resumed, shapes, evaluate
    )


class _Pack:
    def __init__(
        self, members: Sequence[Member], device: torch.device, after_report: AfterReport | None
    ) -> None:
        self.device = device
        self.after_report = after_report
        self.outcomes: list[Outcome | None] = [None] * len(members)
        self.failed: dict[int, Exception] = {}  # since the last after_report
        self.live: list[_Live] = []
        for index, member in enumerate(members):
            try:
                self.live.append(_prepare(index, member, device))
            except Exception as exc:  # its own data or model: retrying the pack would not help
                self._fail(index, exc)
        for live in self.live[1:]:  # data whose shapes depend on the seed, say
            if live.shapes != self.live[0].shapes:
                other = DataError("its inputs or towers have other shapes than its pack-mates'")
                self._fail(live.index, other)
        self.live = [m for m in self.live if m.index not in self.failed]

    def run(self) -> list[Outcome]:
        finished = []
        by_step: dict[tuple[int, int], list[_Live]] = {}
        for live in self.live:
            by_step.setdefault((live.first, live.steps), []).append(live)
        for (first, steps), group in sorted(by_step.items()):
            self.live = group
            self._train(first, steps)
            finished += self.live
        for live in finished:
            try:
                last = live.last or live.evaluate(True)  # resumed at the final step
            except MEMBER_ERRORS as exc:
                self._fail(live.index, exc)
                continue
            self.outcomes[live.index] = TrainResult(live.steps, last.metrics, last.embeddings)
        return [o if o is not None else RuntimeError("member never ran") for o in self.outcomes]

    def _fail(self, index: int, exc: Exception) -> None:
        self.outcomes[index] = self.failed[index] = exc

    def _train(self, first: int, steps: int) -> None:
        if first == 1 and not all(m.resumed for m in self.live):
            self._report(0, steps == 0, None, None, None)
        if self.live and first <= steps:
            pack = StackedDual([m.model for m in self.live])
            adam = stacked_adam(pack, [m.member.config for m in self.live])
            if first > 1:
                owns = [m.own_optimiser for m in self.live]
                read_member_states(adam, pack, [m.model for m in self.live], owns)
                adam.steps = first - 1
            self._loop(pack, adam, first, steps)

    def _loop(self, pack: StackedDual, adam: StackedAdam, first: int, steps: int) -> None:
        config = self.live[0].member.config
        window: list[torch.Tensor] = []
        for step in range(first, steps + 1):
            batch_a, batch_b, shared = self._next_batches(step)
            adam.set_scale(_warm_up_scale(config, step))
            with tower_autocast(self.device):
                losses = pack.losses(batch_a, batch_b, shared)
            adam.zero_grad()
            losses.sum().backward()  # type: ignore[no-untyped-call]
            adam.step()
            pack.temperature.after_step()
            window.append(losses.detach())
            if step % config.eval.every_steps == 0 or step == steps:
                self._report(step, step == steps, pack, adam, torch.stack(window))
                window = []
                if not self.live:
                    return

    def _next_batches(self, step: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """The step's batches of every member, stacked; one batch when all see the same."""
        drawn = [next(m.batches) for m in self.live]
        if any(s != step for s, _, _ in drawn):
            raise RuntimeError(f"a member's batches are not at step {step}")
        if len({m.share_key for m in self.live}) == 1:
            return drawn[0][1], drawn[0][2], True
        return torch.stack([a for _, a, _ in drawn]), torch.stack([b for _, _, b in drawn]), False

    def _report(
        self,
        step: int,
        final: bool,
        pack: StackedDual | None,
        adam: StackedAdam | None,
        window: torch.Tensor | None,
    ) -> None:
        """Each member evaluated, checkpointed and reported as unpacked; those whose loss
        turned non-finite since the last report, or whose data failed, leave the pack. Any
        other error (out of memory, say) is the pack's: Ray retries it from its checkpoint."""
        values = None if window is None else window.double().cpu()
        kept = []
        for row, live in enumerate(self.live):
            if step == 0 and live.resumed:  # resumed at step 0: reported it already
                kept.append(row)
                continue
            if pack is not None and adam is not None:
                pack.write_member(row, live.model)
                if live.member.checkpoint is not None:  # the moments matter to a checkpoint only
                    write_member_state(adam, pack, row, live.model, live.own_optimiser)
            try:
                loss = None if values is None else _mean_of_finite(values[:, row], step)
                live.last = live.evaluate(final)
            except MEMBER_ERRORS as exc:  # its own numbers or data: it fails alone
                self._fail(live.index, exc)
                continue
            if loss is not None:
                live.last.metrics["train_loss"] = loss
            hook = live.member.checkpoint
            checkpoint_and_report(
                step, live.last, live.model, live.own_optimiser, live.member.report, hook
            )
            kept.append(row)
        if len(kept) < len(self.live):
            self._keep(kept, pack, adam)
        if self.after_report is not None:
            self.after_report(step, self.failed)
        self.failed = {}

    def _keep(self, rows: list[int], pack: StackedDual | None, adam: StackedAdam | None) -> None:
        self.live = [self.live[r] for r in rows]
        if pack is None or adam is None or not rows:
            return
        pack.keep(torch.tensor(rows, device=self.device))
        adam.keep(rows, [p for _, p in stacked_parameters(pack)])


def _mean_of_finite(losses: torch.Tensor, step: int) -> float:
    """The mean training loss since the last report; NonFiniteLossError names the first
    non-finite step, as the unpacked trainer's window does."""
    bad = torch.nonzero(~torch.isfinite(losses))
    if bad.numel():
        raise NonFiniteLossError(step - losses.numel() + 1 + int(bad[0, 0]))
    return float(losses.mean())


def _warm_up_scale(config: TrialConfig, step: int) -> float:
    """dual_encoder.warm_up's factor on every rate at `step`."""
    warmup = config.optim.warmup_steps
    return 1.0 if step > warmup else step / warmup
