"""What happens to freshly built towers before training: weights re-drawn by an init scheme,
weights loaded from a saved state (warm start), and the paper's closing of the gap at init by
an orthogonal Procrustes rotation."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from trainers.checkpoint import load_state
from trainers.config import InitConfig
from trainers.data.paired import PairedSplit
from trainers.errors import DataError
from trainers.gap import procrustes_rotation

PROCRUSTES_PAIRS = 1024  # training pairs the rotation is fitted on


def warm_start(image: nn.Module, text: nn.Module, init: InitConfig) -> None:
    """Load both towers' weights (not the temperature, not the optimiser) from `init.checkpoint`."""
    if init.checkpoint is None:
        if init.warm_start is not None:
            raise DataError(
                f"warm start from sweep {init.warm_start.sweep!r} was not resolved into "
                "model.init.checkpoint; run the sweep through the orchestrator"
            )
        return
    state = load_state(Path(init.checkpoint))
    for name, tower in (("image", image), ("text", text)):
        if name not in state.modules:
            raise DataError(f"{init.checkpoint}: the checkpoint has no weights for {name}")
        try:
            tower.load_state_dict(state.modules[name])
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise DataError(
                f"{init.checkpoint}: its {name} tower does not fit this trial's ({first})"
            ) from None


@torch.no_grad()
def close_gap_by_procrustes(image: nn.Module, text: nn.Module, train: PairedSplit) -> None:
    """Rotate tower b's output onto tower a's, pair by pair: b·R ≈ a on training pairs.

    The rotation is folded into b's final projection (W ← Rᵀ·W, bias ← Rᵀ·bias), so the model
    stays the same architecture and only its init changes.
    """
    proj = getattr(text, "proj", None)
    if not isinstance(proj, nn.Linear):
        raise DataError("close_gap: procrustes needs tower b to end in a projection layer")
    n = min(len(train), PROCRUSTES_PAIRS)
    was_training = image.training, text.training
    image.eval()
    text.eval()
    a, b = image(train.a[:n]).float(), text(train.b[:n]).float()
    image.train(was_training[0])
    text.train(was_training[1])
    rotation = torch.from_numpy(procrustes_rotation(b.numpy(), a.numpy())).to(proj.weight.dtype)
    proj.weight.copy_(rotation.T @ proj.weight)
    if proj.bias is not None:
        proj.bias.copy_(rotation.T @ proj.bias)


def fresh_parts(tower: nn.Module) -> list[nn.Module]:
    """The parts of a tower an init scheme re-draws: all of it, except pretrained weights."""
    parts = getattr(tower, "fresh_parts", None)
    return list(parts()) if callable(parts) else [tower]


def apply_init(module: nn.Module, init: InitConfig) -> None:
    """Re-draw the weights of every linear, conv and embedding layer by the chosen scheme."""
    if init.scheme == "default":
        return
    for layer in module.modules():
        if not isinstance(layer, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Embedding):
            continue
        _init_weight(layer.weight, init)
        bias = getattr(layer, "bias", None)
        if isinstance(bias, torch.Tensor):
            if init.scheme == "normal":
                nn.init.normal_(bias, 0.0, init.std)
            else:
                nn.init.zeros_(bias)


def _init_weight(weight: torch.Tensor, init: InitConfig) -> None:
    if init.scheme == "normal":
        nn.init.normal_(weight, 0.0, init.std)
    elif init.scheme == "xavier":
        nn.init.xavier_uniform_(weight)
    elif init.scheme == "kaiming":
        nn.init.kaiming_normal_(weight, nonlinearity="relu")
    elif init.scheme == "orthogonal":
        nn.init.orthogonal_(weight)
