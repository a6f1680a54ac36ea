"""Each tower kind on tiny inputs: output shape, unit norm, and clear errors for wrong inputs."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from trainers.config import ModelConfig, TrialConfig
from trainers.data.paired import InputSpec
from trainers.errors import DataError
from trainers.towers.registry import build_tower, build_towers

IMAGE = InputSpec("image", (3, 8, 8))
TOKENS = InputSpec("tokens", (6,), vocab_size=20)
VECTOR = InputSpec("vector", (10,))

CASES: list[tuple[dict[str, Any], InputSpec, torch.Tensor]] = [
    ({"kind": "cnn", "channels": [4, 8]}, IMAGE, torch.rand(5, 3, 8, 8)),
    ({"kind": "vit", "patch_size": 4, "hidden_size": 16, "num_layers": 1}, IMAGE,
     torch.rand(5, 3, 8, 8)),
    ({"kind": "text_transformer", "hidden_size": 16, "num_layers": 1}, TOKENS,
     torch.randint(1, 20, (5, 6))),
    ({"kind": "clip_vision", "patch_size": 4, "hidden_size": 16, "num_layers": 1}, IMAGE,
     torch.rand(5, 3, 8, 8)),
    ({"kind": "clip_text", "hidden_size": 16, "num_layers": 1}, TOKENS,
     torch.randint(1, 20, (5, 6))),
    ({"kind": "mlp", "depth": 3, "width": 12, "activation": "tanh"}, VECTOR, torch.randn(5, 10)),
    ({"kind": "mlp", "depth": 1, "width": 12, "bias": False}, IMAGE, torch.rand(5, 3, 8, 8)),
]  # fmt: skip


def tower_config(side: dict[str, Any]) -> Any:
    return ModelConfig.model_validate({"embed_dim": 6, "image": side}).image


@pytest.mark.parametrize(("side", "spec", "inputs"), CASES)
def test_tower_embeds_to_unit_vectors(side: dict[str, Any], spec: InputSpec, inputs: Any) -> None:
    tower = build_tower(tower_config(side), spec, 6, "image")
    out = tower(inputs)
    assert out.shape == (5, 6)
    assert torch.allclose(out.norm(dim=1), torch.ones(5), atol=1e-5)


@pytest.mark.parametrize(("side", "spec", "inputs"), CASES)
def test_tower_is_drawn_from_the_init_seed_alone(
    side: dict[str, Any], spec: InputSpec, inputs: Any
) -> None:
    def embed(seed: int) -> torch.Tensor:
        torch.manual_seed(1234 + seed)  # the global stream must not matter
        config = ModelConfig.model_validate({"embed_dim": 6, "image": side, "text": side})
        image, _ = build_towers(config, (spec, spec), init_seed=seed)
        with torch.no_grad():
            return image(inputs)  # type: ignore[no-any-return]

    assert torch.equal(embed(3), embed(3))
    assert not torch.allclose(embed(3), embed(4))


def test_unprojected_mlp_outputs_its_last_layer() -> None:
    config = ModelConfig.model_validate(
        {"embed_dim": 12, "image": {"kind": "mlp", "depth": 2, "width": 12, "projection": False}}
    )
    tower = build_tower(config.image, VECTOR, 12, "image")
    assert [type(m).__name__ for m in tower.layers] == ["Linear", "ReLU", "Linear", "ReLU"]


def test_unprojected_mlp_must_match_embed_dim() -> None:
    with pytest.raises(ValueError, match="width 8"):
        ModelConfig.model_validate(
            {"embed_dim": 12, "image": {"kind": "mlp", "width": 8, "projection": False}}
        )


@pytest.mark.parametrize(
    ("side", "spec"),
    [({"kind": "cnn"}, VECTOR), ({"kind": "text_transformer"}, IMAGE), ({"kind": "mlp"}, TOKENS)],
)
def test_tower_refuses_other_inputs(side: dict[str, Any], spec: InputSpec) -> None:
    with pytest.raises(DataError, match=r"reads .* inputs"):
        build_tower(tower_config(side), spec, 6, "image")


def test_vit_patch_must_divide_the_image() -> None:
    with pytest.raises(DataError, match="patch_size 3"):
        build_tower(tower_config({"kind": "vit", "patch_size": 3}), IMAGE, 6, "image")


def test_clip_text_tower_reads_each_caption_up_to_its_last_word() -> None:
    """Padding after a caption must not change its embedding; the causal model's state at the
    last real token is what CLIP projects."""
    tower = build_tower(tower_config({"kind": "clip_text", "hidden_size": 16}), TOKENS, 6, "image")
    short = torch.tensor([[1, 5, 7, 0, 0, 0]])
    with torch.no_grad():
        alone = tower(short)
        beside_longer = tower(torch.cat([short, torch.tensor([[1, 5, 7, 9, 3, 4]])]))[:1]
        changed_word = tower(torch.tensor([[1, 5, 8, 0, 0, 0]]))
    assert torch.allclose(alone, beside_longer, atol=1e-5)
    assert not torch.allclose(alone, changed_word, atol=1e-3)


def test_clip_vision_patch_must_divide_the_image() -> None:
    with pytest.raises(DataError, match="patch_size 3"):
        build_tower(tower_config({"kind": "clip_vision", "patch_size": 3}), IMAGE, 6, "image")


def test_unknown_kind_is_a_validation_error() -> None:
    with pytest.raises(ValueError, match="unknown tower kind"):
        ModelConfig.model_validate({"image": {"kind": "resnet"}})


def test_pretrained_text_tower_is_frozen_and_trains_its_projection() -> None:
    from trainers.towers.pretrained import PretrainedTextTower

    config = ModelConfig.model_validate({"text": {"kind": "pretrained_text"}}).text
    tower = PretrainedTextTower(config, 6)  # type: ignore[arg-type]
    trainable = {n for n, p in tower.named_parameters() if p.requires_grad}
    assert trainable == {"proj.weight", "proj.bias"}
    out = tower(torch.tensor([[101, 2023, 2003, 1037, 3231, 102, 0]]))
    assert out.shape == (1, 6)


def test_pretrained_text_tower_trains_on_shapes(tiny_base: dict[str, Any]) -> None:
    from trainers.dual_encoder import train_dual_encoder

    tiny_base["model"]["text"] = {"kind": "pretrained_text"}
    tiny_base["data"]["n_train"] = 32
    reports: list[dict[str, float]] = []
    train_dual_encoder(TrialConfig.model_validate(tiny_base), lambda s, m: reports.append(m))
    assert len(reports) == 2 and reports[-1]["loss"] < 10


def test_pretrained_text_tower_needs_a_model_folder(tmp_path: Any) -> None:
    from trainers.towers.pretrained import PretrainedTextTower

    config = ModelConfig.model_validate(
        {"text": {"kind": "pretrained_text", "path": str(tmp_path)}}
    ).text
    with pytest.raises(DataError, match="holds no transformers model"):
        PretrainedTextTower(config, 6)  # type: ignore[arg-type]
