"""A sweep's trials as Ray Tune runs them: each trial alone, or packs of trials trained as one
vectorised model (trainers/pack/) when the spec says `pack`.

A pack is one Tune trial under a key of its own (`pack-` and a hash of its members' keys); its
members keep their trial keys, rows, MLflow runs and checkpoints. Packing is not part of a
trial's key: a trial packed and the same trial alone are one trial.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from orchestrator.plan import Trial
from orchestrator.spec import SweepSpec
from trainers.config import TrialConfig
from trainers.config.sizes import generated_bytes, input_shape, tower_parameters
from trainers.pack.grouping import pack_signature, packs, why_not_packable

PACK_PREFIX = "pack-"
AUTO_MAX = 64  # members of an `auto` pack at most
# What an `auto` pack may hold in weights, gradients, Adam's moments and data: per CPU of the
# trial's resources, and per GPU (settings, for machines that hold more).
PACK_BYTES_PER_CPU = int(float(os.environ.get("GAPSWEEP_PACK_BYTES_PER_CPU", str(2**30))))
PACK_BYTES_PER_GPU = int(float(os.environ.get("GAPSWEEP_PACK_BYTES_PER_GPU", str(16 * 2**30))))


@dataclass(frozen=True)
class Unit:
    """One Tune trial: a trial alone (its own key) or a pack of several."""

    key: str
    members: tuple[str, ...]

    @property
    def packed(self) -> bool:
        return len(self.members) > 1


@dataclass(frozen=True)
class Packing:
    units: list[Unit]
    alone: dict[str, str]  # trial key -> why it runs alone, when the spec asked for packs

    def summary(self) -> list[str]:
        """What `plan` says of the packs: how many, how large, and why others run alone."""
        sizes = sorted(len(u.members) for u in self.units if u.packed)
        if not sizes:
            lines = ["no packs: every trial runs alone"]
        else:
            counts = ", ".join(
                f"{n} pack{'s' * (n > 1)} of {k}" for k, n in sorted(Counter(sizes).items())
            )
            lines = [
                f"{sum(sizes)} trials train in packs, each pack one vectorised model: {counts}"
            ]
        for reason, n in Counter(self.alone.values()).most_common():
            lines.append(f"{n} trials run alone: {reason}")
        return lines


def pack_units(spec: SweepSpec, trials: list[Trial]) -> Packing:
    """The spec's trials as Tune trials: packs where `spec.pack` allows them."""
    if spec.pack == 1 or not trials:
        return Packing([Unit(t.key, (t.key,)) for t in trials], {})
    configs = [t.config for t in trials]
    if not all(isinstance(c, TrialConfig) for c in configs):
        why = f"the {spec.trainer} trainer has no model to vectorise"  # e.g. landscape
        return Packing([Unit(t.key, (t.key,)) for t in trials], {t.key: why for t in trials})
    typed = [c for c in configs if isinstance(c, TrialConfig)]
    # auto: sized for each group's own model, as the groups' widths may differ
    size: int | Callable[[TrialConfig], int] = (
        functools.partial(auto_size, spec) if spec.pack == "auto" else spec.pack
    )
    reasons = {t.key: why_not_packable(c) for t, c in zip(trials, typed, strict=True)}
    alone = {key: why for key, why in reasons.items() if why is not None}
    look_alikes = Counter(pack_signature(c) for c in typed)
    units = []
    for indices in packs(typed, size):
        keys = tuple(trials[i].key for i in indices)
        if len(keys) == 1 and keys[0] not in alone:
            alone[keys[0]] = (
                "no other trial differs from it only in what a pack varies"
                if look_alikes[pack_signature(typed[indices[0]])] == 1
                else "the pack size (pack: K, or auto's memory bound) left it alone"
            )
        units.append(Unit(pack_key(keys) if len(keys) > 1 else keys[0], keys))
    return Packing(units, alone)


def pack_key(members: tuple[str, ...]) -> str:
    return PACK_PREFIX + hashlib.sha256(",".join(members).encode()).hexdigest()[:12]


def auto_size(spec: SweepSpec, config: TrialConfig) -> int:
    """As many members as the pack's memory allows (their weights, gradients and Adam's two
    moments, 16 bytes a parameter, and each member's data), at most AUTO_MAX."""
    parameters = sum(
        tower_parameters(
            getattr(config.model, side), input_shape(config.data, side), config.model.embed_dim
        )
        for side in ("image", "text")
    )
    member = 16 * parameters + generated_bytes(config.data)
    memory = spec.resources.cpu * PACK_BYTES_PER_CPU + spec.resources.gpu * PACK_BYTES_PER_GPU
    return max(1, min(AUTO_MAX, math.floor(memory / max(member, 1))))
