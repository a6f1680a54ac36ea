"""Init schemes, the init seed, closing the gap at init by Procrustes, and warm starts."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from trainers.checkpoint import FolderCheckpoints
from trainers.config import InitConfig, TrialConfig
from trainers.dual_encoder import train_dual_encoder
from trainers.errors import DataError
from trainers.towers.init import apply_init


def at_init(base: dict[str, Any], **init: Any) -> dict[str, float]:
    config = copy.deepcopy(base)
    config["optim"]["epochs"] = 0
    config["model"]["init"] = init
    reports: list[dict[str, float]] = []
    train_dual_encoder(TrialConfig.model_validate(config), lambda s, m: reports.append(m))
    return reports[0]


@pytest.mark.parametrize("scheme", ["normal", "xavier", "kaiming", "orthogonal"])
def test_scheme_redraws_linear_weights(scheme: str) -> None:
    layer = torch.nn.Linear(16, 16).requires_grad_(False)  # plain tensors to read back
    before = layer.weight.clone()
    apply_init(layer, InitConfig(scheme=scheme, std=0.5))  # type: ignore[arg-type]
    assert not torch.equal(before, layer.weight)
    if scheme == "normal":
        assert 0.3 < float(layer.weight.std()) < 0.7 and float(layer.bias.abs().max()) > 0
    elif scheme == "orthogonal":
        assert torch.allclose(layer.weight @ layer.weight.T, torch.eye(16), atol=1e-5)
    else:
        assert float(layer.bias.abs().max()) == 0.0


def test_normal_std_sets_the_cone(tiny_base: dict[str, Any]) -> None:
    base = {
        "data": {"name": "gaussian", "dim": 64, "n_train": 8, "n_eval": 256},
        "model": {
            "embed_dim": 64,
            "image": {"kind": "mlp", "depth": 1, "width": 64, "projection": False},
            "text": {"kind": "mlp", "depth": 1, "width": 64, "projection": False},
        },
        "optim": {"batch_size": 64},
    }
    relu = at_init(base, scheme="normal", std=0.125)  # N(0, 1/64)
    assert relu["cone_cosine_a"] == pytest.approx(0.32, abs=0.06)


def test_procrustes_closes_the_gap_at_init(tiny_base: dict[str, Any]) -> None:
    drawn, closed = at_init(tiny_base), at_init(tiny_base, close_gap="procrustes")
    assert drawn["gap_norm"] > 0.3
    assert closed["gap_norm"] < 0.5 * drawn["gap_norm"]
    assert closed["paired_cosine"] > drawn["paired_cosine"]


def test_warm_start_loads_the_towers(tiny_base: dict[str, Any], tmp_path: Path) -> None:
    trained: list[dict[str, float]] = []
    train_dual_encoder(
        TrialConfig.model_validate(tiny_base),
        lambda s, m: trained.append(m),
        FolderCheckpoints(tmp_path / "ckpt"),
    )
    started = at_init(tiny_base, checkpoint=str(tmp_path / "ckpt"), seed=99)
    assert started["gap_norm"] == pytest.approx(trained[-1]["gap_norm"], abs=1e-5)


def test_warm_start_needs_a_checkpoint(tiny_base: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no checkpoint there"):
        at_init(tiny_base, checkpoint=str(tmp_path / "missing"))
    with pytest.raises(DataError, match="not resolved"):
        at_init(tiny_base, warm_start={"sweep": "pretrain"})
