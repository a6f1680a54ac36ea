"""Configuration of the offline paired data sets, one model per `data.name`.

Every data set has `n_train` and `n_eval` so that sizes can be swept across data sets alike.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from trainers.config_base import FrozenModel, tag_or_default
from trainers.config_graph import KnowledgeGraphDataConfig
from trainers.config_speech import SpokenCaptionsDataConfig

DIGITS_TOTAL = 1797  # images in scikit-learn's digits


class ShapesDataConfig(FrozenModel):
    """Generated images of coloured shapes paired with captions such as "a small red circle"."""

    name: Literal["shapes"] = "shapes"
    n_train: int = Field(2048, ge=8, le=1_000_000, description="training pairs")
    n_eval: int = Field(512, ge=8, le=100_000, description="held-out pairs for evaluation")
    image_size: int = Field(24, ge=12, le=128, description="side of the square images in pixels")
    noise: float = Field(0.05, ge=0.0, le=1.0, description="std of per-pixel Gaussian noise")
    backgrounds: int = Field(
        1, ge=1, le=3, description="background groups (black, grey, blue); the group attribute"
    )


class DigitsDataConfig(FrozenModel):
    """scikit-learn's 8x8 handwritten digits with captions from several templates."""

    name: Literal["digits"] = "digits"
    n_train: int = Field(1400, ge=8, description="training pairs")
    n_eval: int = Field(397, ge=8, description="held-out pairs")
    noise: float = Field(0.0, ge=0.0, le=1.0, description="std of per-pixel Gaussian noise")

    @model_validator(mode="after")
    def _fits_the_digits(self) -> DigitsDataConfig:
        if self.n_train + self.n_eval > DIGITS_TOTAL:
            raise ValueError(
                f"n_train + n_eval = {self.n_train + self.n_eval} exceeds the {DIGITS_TOTAL} "
                "digit images; lower one of them"
            )
        return self


class GaussianDataConfig(FrozenModel):
    """Paired random vectors: a ~ N(0, I), b = rho * a + sqrt(1 - rho^2) * noise."""

    name: Literal["gaussian"] = "gaussian"
    n_train: int = Field(1024, ge=8, le=1_000_000)
    n_eval: int = Field(1024, ge=8, le=100_000, description="the paper measures batches of 1024")
    dim: int = Field(512, ge=1, le=65536, description="dimension of the vectors")
    correlation: float = Field(1.0, ge=-1.0, le=1.0, description="rho between a and b")
    classes: int = Field(0, ge=0, le=1000, description="Gaussian clusters (0: no classes)")


class PairedFeaturesDataConfig(FrozenModel):
    """The user's paired vectors: one .npy of shape (2, N, d), or an .npz with arrays `a`, `b`
    (shape (N, d_a), (N, d_b)) and optionally `labels` (N,). The last `n_eval` pairs of a seeded
    permutation are held out."""

    name: Literal["paired_features"] = "paired_features"
    path: str = Field(min_length=1, description=".npy or .npz file")
    n_train: int | None = Field(None, ge=8, description="training pairs (default: the rest)")
    n_eval: int = Field(100, ge=8, description="held-out pairs")


class ImageTextDataConfig(FrozenModel):
    """A folder of images with captions: a CSV (columns `path`, `caption`), a JSONL (keys `path`,
    `caption`) or a COCO captions JSON (`images` and `annotations`)."""

    name: Literal["image_text"] = "image_text"
    captions: str = Field(min_length=1, description="the CSV, JSONL or COCO JSON file")
    root: str | None = Field(None, description="folder the image paths are relative to")
    image_size: int = Field(32, ge=8, le=512, description="images are resized to this square")
    n_train: int | None = Field(None, ge=8, description="training pairs (default: the rest)")
    n_eval: int = Field(64, ge=8, description="held-out pairs")


DataConfig = Annotated[
    Annotated[ShapesDataConfig, Tag("shapes")]
    | Annotated[DigitsDataConfig, Tag("digits")]
    | Annotated[GaussianDataConfig, Tag("gaussian")]
    | Annotated[PairedFeaturesDataConfig, Tag("paired_features")]
    | Annotated[ImageTextDataConfig, Tag("image_text")]
    | Annotated[KnowledgeGraphDataConfig, Tag("knowledge_graph")]
    | Annotated[SpokenCaptionsDataConfig, Tag("spoken_captions")],
    Discriminator(
        tag_or_default("name", "shapes"),
        custom_error_type="unknown_dataset",
        custom_error_message=(
            "unknown data set; known: shapes, digits, gaussian, paired_features, image_text, "
            "knowledge_graph, spoken_captions"
        ),
    ),
]
