"""Training state that can be saved and restored, so that a trial interrupted anywhere resumes
where its last checkpoint left it, and so that one trial can warm-start another.

The trainers only produce and consume `TrainState`; where and how it is stored is up to the
caller's `CheckpointHook` (the orchestrator hands it to Ray Tune). Files are written with
`torch.save` and read with `weights_only=True`, so loading a checkpoint never runs code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from trainers.errors import DataError

STATE_FILE = "state.pt"
FORMAT_VERSION = 1
# Beside the final state: the final eval-split embeddings, for reports and 2-D maps. Arrays `a`,
# `b` (N, d) float32 L2-normalised; where the data has them, `labels`, `groups` (N,) int64 and
# `class_b` (variants, d), tower b's zero-shot targets, and `class_b_class` (variants,) the class
# of each (trainers/evaluate.py), with the prompts behind them (`class_names`, `class_prompts`,
# `prompt_class`); with `eval.folder`, the folder's prompts likewise (`folder_class_names`,
# `folder_class_prompts`, `folder_prompt_class`).
EMBEDDINGS_FILE = "embeddings.npz"


@dataclass(frozen=True)
class TrainState:
    """Everything a run needs to go on from `step`: the towers, the temperature, the optimiser.

    The batch order needs no state of its own: it is a function of (seed, epoch), and the model
    has no dropout, so a resumed run repeats the uninterrupted one exactly on the CPU.
    """

    step: int
    modules: dict[str, dict[str, torch.Tensor]]  # "image", "text", "temperature"
    optimizer: dict[str, Any]
    embeddings: dict[str, np.ndarray] | None = None  # only in the final state, see save_state


class CheckpointHook(Protocol):
    """Where a trainer's checkpoints go and come from. `save` is called just before the
    `report` of the same step, so a caller can ship both together.

    The state handed to `save` shares its tensors with the live model (copying every
    checkpoint would cost the training loop): persist or copy it before returning.
    """

    def restore(self) -> TrainState | None: ...

    def save(self, state: TrainState) -> None: ...


class FolderCheckpoints:
    """A hook that keeps the newest state in one folder, for running a trainer without the
    orchestrator; `model.init.checkpoint` can then name that folder to warm-start from it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def restore(self) -> TrainState | None:
        return None

    def save(self, state: TrainState) -> None:
        save_state(state, self.folder)


def save_state(state: TrainState, directory: Path) -> Path:
    """Write the state into `directory` atomically: a reader never sees half a file."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / STATE_FILE
    partial = directory / f".{STATE_FILE}.partial"
    payload = {
        "format": FORMAT_VERSION,
        "step": state.step,
        "modules": state.modules,
        "optimizer": state.optimizer,
    }
    try:
        torch.save(payload, partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    if state.embeddings is not None:
        save_embeddings(state.embeddings, directory / EMBEDDINGS_FILE)
    return target


def save_embeddings(arrays: dict[str, np.ndarray], file: Path) -> None:
    partial = file.with_name(f".{file.name}.partial")
    try:
        with partial.open("wb") as out:
            np.savez(out, **arrays)  # type: ignore[arg-type]  # numpy stubs: allow_pickle kw
        os.replace(partial, file)
    finally:
        partial.unlink(missing_ok=True)


def load_embeddings(path: Path) -> dict[str, np.ndarray]:
    """The arrays of EMBEDDINGS_FILE, from a checkpoint folder or the file itself."""
    file = path / EMBEDDINGS_FILE if path.is_dir() else path
    if not file.is_file():
        raise DataError(f"{file}: no embeddings there")
    try:
        with np.load(file, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{file}: not a readable embeddings file ({exc})") from None


def load_state(path: Path) -> TrainState:
    """Read a state written by `save_state`, from its folder or the file itself."""
    file = path / STATE_FILE if path.is_dir() else path
    if not file.is_file():
        raise DataError(f"{file}: no checkpoint there")
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise DataError(f"{file}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise DataError(f"{file}: not a gapsweep checkpoint of format {FORMAT_VERSION}")
    return TrainState(
        step=int(payload["step"]), modules=payload["modules"], optimizer=payload["optimizer"]
    )
