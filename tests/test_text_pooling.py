"""Text towers' `pooling`: which state a caption is embedded from. [CLS] is the same token in
every caption, so its state makes a near-degenerate text cone at init; the last real token or
the mean over real tokens do not. Checked against NumPy, and through the trainer."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from orchestrator.plan import trial_key
from trainers.config import TrialConfig
from trainers.dual_encoder import train_dual_encoder
from trainers.towers.attention import PAD_ID, pool_tokens


def numpy_pool(hidden: np.ndarray, tokens: np.ndarray, how: str) -> np.ndarray:
    rows = []
    for states, ids in zip(hidden, tokens, strict=True):
        real = [i for i, t in enumerate(ids) if t != PAD_ID]
        if how == "cls":
            rows.append(states[0])
        elif how == "eot":
            rows.append(states[real[-1]])
        else:
            rows.append(np.mean([states[i] for i in real], axis=0))
    return np.stack(rows)


@pytest.mark.parametrize("how", ["cls", "eot", "mean"])
def test_pooling_picks_the_state_numpy_picks(how: str) -> None:
    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(5, 7, 3)).astype(np.float32)
    lengths = [1, 3, 7, 4, 2]
    tokens = np.zeros((5, 7), dtype=np.int64)
    for row, n in enumerate(lengths):
        tokens[row, :n] = rng.integers(1, 50, size=n)
    pooled = pool_tokens(torch.from_numpy(hidden), torch.from_numpy(tokens), how)
    np.testing.assert_allclose(pooled.numpy(), numpy_pool(hidden, tokens, how), rtol=1e-6)


def text_cone(tiny_base: dict[str, Any], kind: str, pooling: str | None) -> float:
    tiny_base["model"] = {**tiny_base.get("model", {}), "text": {"kind": kind}}
    if pooling is not None:
        tiny_base["model"]["text"]["pooling"] = pooling
    tiny_base["optim"] = {**tiny_base.get("optim", {}), "epochs": 0}
    config = TrialConfig.model_validate(tiny_base)
    reports: list[dict[str, float]] = []
    train_dual_encoder(config, lambda step, metrics: reports.append(metrics))
    return reports[-1]["cone_cosine_b"]


def test_cls_pooling_makes_a_near_degenerate_text_cone_and_the_others_do_not(
    tiny_base: dict[str, Any],
) -> None:
    cones = {how: text_cone(dict(tiny_base), "text_transformer", how) for how in ("cls", "mean")}
    cones["eot"] = text_cone(dict(tiny_base), "text_transformer", "eot")
    # Measured on the tiny shapes set: cls 0.99998, mean 0.986, eot 0.844. The embedding cache
    # reuses frozen towers' embeddings across trials: pooling has no weights, and without it in
    # the cache key the three would read back the same cone.
    assert cones["cls"] > 0.999, cones
    assert cones["mean"] < cones["cls"] - 0.005 and cones["eot"] < 0.95, cones


def test_unset_pooling_keeps_every_key(tiny_base: dict[str, Any]) -> None:
    for kind, default in (("text_transformer", "cls"), ("clip_text", "eot")):
        base = {**tiny_base, "model": {"text": {"kind": kind}}}
        unset = TrialConfig.model_validate(base)
        assert "pooling" not in unset.model_dump()["model"]["text"]
        base["model"]["text"]["pooling"] = "mean"
        assert trial_key("dual_encoder", TrialConfig.model_validate(base)) != trial_key(
            "dual_encoder", unset
        )
        base["model"]["text"]["pooling"] = default  # said out loud: the same tower, a new key
        assert TrialConfig.model_validate(base).model.text.pooling == default
