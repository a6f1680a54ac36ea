"""Configuration of the speech-text modality pair: the `spoken_captions` data set (the shapes
captions spoken by the espeak-ng synthesiser) and the `audio_cnn` tower that reads its log-mel
spectrograms.

The frame geometry (hop, window, FFT size, mel band edges) lives here as plain Python so that a
config which would give a useless spectrogram is refused when the spec is validated, before any
audio is synthesised.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, model_validator

from trainers.config_base import FrozenModel

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
Channels = Annotated[int, Field(ge=1, le=4096, description="conv output channels")]

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


def hz_to_mel(hz: float) -> float:
    """The HTK mel scale: about linear below 1 kHz, logarithmic above."""
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def mel_to_hz(mel: float) -> float:
    return 700.0 * (math.pow(10.0, mel / 2595.0) - 1.0)


def mel_edges_hz(config: SpokenCaptionsDataConfig) -> list[float]:
    """The n_mels + 2 band edges from 0 Hz to Nyquist, evenly spaced in mel; band m rises from
    edge m to a peak at edge m + 1 and falls to edge m + 2."""
    top = hz_to_mel(config.sample_rate / 2.0)
    return [mel_to_hz(top * i / (config.n_mels + 1)) for i in range(config.n_mels + 2)]


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
