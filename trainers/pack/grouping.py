"""Which trials can share a pack, and why a trial cannot: torch-free, for the planner too.

Members of a pack run one vectorised model, so they must agree on everything but the settings
a stacked model holds per member (VECTORISED). Their data may differ only by its seed, which
gives each member its own draw and batch order of the same shapes.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from typing import Any

from trainers.config import TrialConfig

# Dotted paths of the settings members of one pack may differ in.
VECTORISED = (
    "seed",
    "model.init.seed",
    "loss.temperature",
    "loss.learn_temperature",
    "optim.lr",
    "optim.weight_decay",
)
# Settings recorded only where a VECTORISED one makes them matter (None elsewhere), read as
# what they mean there: a member without weight decay or a learned temperature is unaffected.
FOLLOWERS = {"optim.decay": "weights", "loss.temperature_clamp": "in_place"}
# Towers vmap runs as they are, each checked against itself alone (tests/test_pack_trainer.py).
PACKABLE_TOWERS = frozenset({"mlp", "cnn", "text_transformer"})
# Data read from disk batch by batch: the pack would read K streams in lockstep.
STREAMED_DATA = frozenset({"image_text", "image_folder"})


def why_not_packable(config: TrialConfig) -> str | None:
    """None when the trial can be a pack's member; else the reason, for `plan` to say."""
    kinds = {config.model.image.kind, config.model.text.kind}
    unpackable = sorted(kinds - PACKABLE_TOWERS)
    if unpackable:
        return f"{' and '.join(unpackable)} towers are not vectorised"
    if config.data.name in STREAMED_DATA:
        return f"{config.data.name} data is streamed from disk"
    if config.eval.folder is not None:
        return "eval.folder is evaluated from disk"
    return None


def pack_signature(config: TrialConfig) -> str:
    """What members of one pack share: the config with the VECTORISED settings left out."""
    flat = _shared(config)
    return json.dumps({p: v for p, v in flat.items() if p not in VECTORISED}, sort_keys=True)


def differing_settings(configs: Sequence[TrialConfig]) -> list[str]:
    """The settings outside VECTORISED in which the configs differ (none: they can pack)."""
    dumps = [_shared(c) for c in configs]
    paths = sorted(set().union(*dumps))
    return [
        p
        for p in paths
        if p not in VECTORISED and len({json.dumps(d.get(p), sort_keys=True) for d in dumps}) > 1
    ]


def packs(
    configs: Sequence[TrialConfig], size: int | Callable[[TrialConfig], int]
) -> list[list[int]]:
    """Indices of `configs` grouped into packs: packable trials by their signature, in order
    of first appearance, each group split evenly into as few packs as `size` allows (a number,
    or one from the group's first config); every other trial alone."""
    groups: dict[str, list[int]] = {}
    alone: list[list[int]] = []
    for index, config in enumerate(configs):
        if size == 1 or why_not_packable(config) is not None:
            alone.append([index])
        else:
            groups.setdefault(pack_signature(config), []).append(index)
    chunked = []
    for group in groups.values():
        most = size(configs[group[0]]) if callable(size) else size
        chunked += _even(group, max(1, most))
    return sorted(chunked + alone, key=lambda pack: pack[0])


def _even(group: list[int], most: int) -> list[list[int]]:
    """`group` in ceil(n / most) packs whose sizes differ by at most one: 65 trials at 64 a
    pack are packs of 33 and 32, not 64 and a trial alone."""
    count = -(-len(group) // most)
    base, extra = divmod(len(group), count)
    bounds = [0]
    for i in range(count):
        bounds.append(bounds[-1] + base + (i < extra))
    return [group[a:b] for a, b in itertools.pairwise(bounds)]


def _shared(config: TrialConfig) -> dict[str, Any]:
    flat = _flat(config.model_dump(mode="json"))
    return flat | {p: v for p, v in FOLLOWERS.items() if flat.get(p) is None}


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out |= _flat(value, f"{path}.")
        else:
            out[path] = value
    return out
