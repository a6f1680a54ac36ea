"""Configuration of the paired data sets, one model per `data.name`.

Every data set has `n_train` and `n_eval` so that sizes can be swept across data sets alike.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from trainers.config.base import FrozenModel, added_field, tag_or_default
from trainers.config.mel import mel_edges_hz

DIGITS_TOTAL = 1797  # images in scikit-learn's digits


def loader_workers_field() -> Any:
    """Worker processes that decode a folder's images while the towers work; 0 decodes in the
    trial's own process."""
    return added_field(2, ge=0, le=32, description="processes decoding images (0: in the trial)")


def image_cache_field() -> Any:
    """A folder for the decoded images, shared by the trials of a sweep (image_files.py)."""
    return added_field(
        None,
        min_length=1,
        description="folder where each image is decoded once per size into a uint8 file that"
        " the sweep's trials share (default: decode on every read)",
    )


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
    `caption`) or a COCO captions JSON (`images` and `annotations`). An image may have several
    captions (a row each); the split is by image (trainers/data/image_text.py)."""

    name: Literal["image_text"] = "image_text"
    captions: str = Field(min_length=1, description="the CSV, JSONL or COCO JSON file")
    root: str | None = Field(None, description="folder the image paths are relative to")
    image_size: int = Field(32, ge=8, le=512, description="images are resized to this square")
    n_train: int | None = Field(
        None, ge=8, description="training images, with all their captions (default: the rest)"
    )
    n_eval: int = Field(64, ge=8, description="held-out images, with all their captions")
    loader_workers: int = loader_workers_field()
    cache: str | None = image_cache_field()


# person, city, company, river, university, band (ENTITY_TYPES of data/knowledge_graph.py)
ENTITY_TYPE_COUNT = 6
MAX_RELATION_FACTS = 3


class KnowledgeGraphDataConfig(FrozenModel):
    """A generated knowledge graph: typed entities with categorical attributes and typed
    relations, each entity paired with a short description of itself and some neighbours.
    Tower a reads the entity's neighbourhood, tower b the description; the class is the type."""

    name: Literal["knowledge_graph"] = "knowledge_graph"
    n_train: int = Field(2048, ge=8, le=200_000, description="training entities (pairs)")
    n_eval: int = Field(512, ge=8, le=100_000, description="held-out entities (pairs)")
    entity_types: int = Field(
        ENTITY_TYPE_COUNT,
        ge=2,
        le=ENTITY_TYPE_COUNT,
        description="how many of person, city, company, river, university, band to use, in order",
    )
    max_neighbours: int = Field(
        8, ge=1, le=64, description="neighbour rows per entity; more are sampled, fewer padded"
    )
    feature_noise: float = Field(
        0.3, ge=0.0, le=10.0, description="std of the Gaussian noise on entity feature vectors"
    )
    relation_facts: int = Field(
        1,
        ge=0,
        le=MAX_RELATION_FACTS,
        description="facts about neighbours each description states (fewer if it has fewer)",
    )
    region_groups: bool = Field(
        False, description="group the pairs by the entity's region, for per-group accuracy"
    )

    @model_validator(mode="after")
    def _facts_fit_the_neighbourhood(self) -> KnowledgeGraphDataConfig:
        # A described neighbour must be in the tower's input, or the text says what it cannot see.
        if self.relation_facts > self.max_neighbours:
            raise ValueError(
                f"relation_facts {self.relation_facts} exceeds max_neighbours "
                f"{self.max_neighbours}: every neighbour a description mentions must fit in the "
                "neighbourhood; raise max_neighbours or lower relation_facts"
            )
        return self


# Voices of espeak-ng 1.51: a language (or voice name), optionally "+variant" (`espeak-ng
# --voices`, `espeak-ng --voices=variant`). Only characters those names use are allowed, so a
# voice can never be read as a command-line option.
VoiceName = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*(\+[A-Za-z0-9][A-Za-z0-9_-]*)?$",
        max_length=64,
        description='an espeak-ng voice such as "en-us" or "en-gb+f3" (language+variant)',
    ),
]
# espeak-ng clamps speeds outside 80..450 words per minute, so they would not differ.
Speed = Annotated[int, Field(ge=80, le=450, description="words per minute")]

DEFAULT_VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-us+f3")
MIN_HOP = 32  # samples; a shorter hop gives so few FFT bins that the mel bands are empty


class SpokenCaptionsDataConfig(FrozenModel):
    """The captions of the shapes data set ("a small red circle") spoken by espeak-ng in several
    voices and speeds, paired with their text. Tower a reads log-mel spectrograms (n_mels,
    frames), tower b the caption's tokens; the label is the shape, the group the voice.

    Clips are synthesised once and cached in `cache_dir`; each is padded to `clip_seconds` and
    cut into `frames` frames, so the hop is clip_seconds * sample_rate / frames samples.
    """

    name: Literal["spoken_captions"] = "spoken_captions"
    n_train: int = Field(2048, ge=8, le=200_000, description="training pairs")
    n_eval: int = Field(256, ge=8, le=50_000, description="held-out pairs for evaluation")
    voices: tuple[VoiceName, ...] = Field(
        DEFAULT_VOICES,
        min_length=1,
        max_length=16,
        description="espeak-ng voices, one group each (per-group accuracy)",
    )
    speeds: tuple[Speed, ...] = Field(
        (140, 175, 210), min_length=1, max_length=8, description="speaking rates drawn from"
    )
    sample_rate: int = Field(16000, ge=8000, le=48000, description="Hz the audio is resampled to")
    clip_seconds: float = Field(
        3.0, gt=0.5, le=10.0, description="clips are padded to this length; longer ones are refused"
    )
    frames: int = Field(96, ge=8, le=2048, description="spectrogram frames over clip_seconds")
    n_mels: int = Field(40, ge=4, le=256, description="mel bands of the spectrogram")
    noise: float = Field(
        0.05, ge=0.0, le=1.0, description="std of white noise added to a clip, relative to its RMS"
    )
    cache_spectrograms: bool = Field(
        True,
        description="also cache each split's spectrograms (n * n_mels * frames * 4 bytes), so a"
        " repeated build skips the STFT",
    )
    cache_dir: str | None = Field(
        None,
        min_length=1,
        description="folder of synthesised clips, absolute or ~/... since trials run in folders"
        " of their own (default: $GAPSWEEP_CACHE_DIR/spoken_captions, else"
        " ~/.cache/gapsweep/spoken_captions)",
    )

    @property
    def clip_samples(self) -> int:
        return round(self.clip_seconds * self.sample_rate)

    @property
    def hop_length(self) -> int:
        return self.clip_samples // self.frames

    @property
    def win_length(self) -> int:
        # Windows twice the hop overlap by half, so no sample falls between two frames.
        return 2 * self.hop_length

    @property
    def n_fft(self) -> int:
        return 1 << math.ceil(math.log2(self.win_length))

    @model_validator(mode="after")
    def _usable_spectrogram(self) -> SpokenCaptionsDataConfig:
        if len(set(self.voices)) != len(self.voices):
            raise ValueError(f"voices {list(self.voices)} repeat a voice; each is one group")
        if len(set(self.speeds)) != len(self.speeds):
            raise ValueError(f"speeds {list(self.speeds)} repeat a speed")
        if self.hop_length < MIN_HOP:
            raise ValueError(
                f"frames {self.frames} over clip_seconds {self.clip_seconds} at sample_rate "
                f"{self.sample_rate} gives a hop of {self.hop_length} samples, under {MIN_HOP}: "
                "lower frames"
            )
        edges = mel_edges_hz(self)
        narrowest = min(right - left for left, right in zip(edges, edges[2:], strict=False))
        if narrowest <= self.sample_rate / self.n_fft:
            raise ValueError(
                f"n_mels {self.n_mels} is too many for a {self.n_fft}-point FFT (bins "
                f"{self.sample_rate / self.n_fft:.0f} Hz apart): the lowest mel bands would be "
                "empty; lower n_mels or frames"
            )
        return self


class ImageFolderDataConfig(FrozenModel):
    """The user's labelled images, one subfolder per class (torchvision's ImageFolder layout),
    each paired with a caption naming its class in one of `templates`; zero-shot prompts every
    class with all of them (CLIP's prompt ensemble)."""

    name: Literal["image_folder"] = "image_folder"
    root: str = Field(min_length=1, description="folder of class subfolders of images")
    image_size: int = Field(32, ge=8, le=512, description="images are resized to this square")
    templates: tuple[str, ...] = Field(
        ("a photo of a {}.", "a blurry photo of a {}.", "a photo of the {}.", "itap of a {}."),
        min_length=1,
        max_length=100,
        description="prompt templates; {} is the class name (the folder's, _ read as a space)",
    )
    n_train: int | None = Field(None, ge=8, description="training images (default: the rest)")
    n_eval: int = Field(64, ge=8, description="held-out images")
    loader_workers: int = loader_workers_field()
    cache: str | None = image_cache_field()

    @model_validator(mode="after")
    def _classes_and_templates(self) -> ImageFolderDataConfig:
        bad = [t for t in self.templates if t.count("{}") != 1]
        if bad:
            raise ValueError(f"templates {bad} must each hold one {{}} for the class name")
        folder = Path(self.root).expanduser()
        if not folder.is_dir():
            raise ValueError(f"root {folder}: no such folder")
        classes = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
        if len(classes) < 2:
            raise ValueError(f"root {folder}: needs a subfolder per class, found {len(classes)}")
        return self


DataConfig = Annotated[
    Annotated[ShapesDataConfig, Tag("shapes")]
    | Annotated[DigitsDataConfig, Tag("digits")]
    | Annotated[GaussianDataConfig, Tag("gaussian")]
    | Annotated[PairedFeaturesDataConfig, Tag("paired_features")]
    | Annotated[ImageTextDataConfig, Tag("image_text")]
    | Annotated[ImageFolderDataConfig, Tag("image_folder")]
    | Annotated[KnowledgeGraphDataConfig, Tag("knowledge_graph")]
    | Annotated[SpokenCaptionsDataConfig, Tag("spoken_captions")],
    Discriminator(
        tag_or_default("name", "shapes"),
        custom_error_type="unknown_dataset",
        custom_error_message=(
            "unknown data set; known: shapes, digits, gaussian, paired_features, image_text, "
            "image_folder, knowledge_graph, spoken_captions"
        ),
    ),
]
