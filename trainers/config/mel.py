"""The mel scale of the spoken_captions spectrograms, as plain Python: the data config checks its
frame geometry with it when a spec is validated, and the audio features build their filters
from the same band edges."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainers.config.data import SpokenCaptionsDataConfig


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
