"""Audio features for `spoken_captions`: the cached clips read from their WAV files, resampled
and padded to a fixed length, given a little seeded white noise (so that repeated clips are not
identical inputs) and turned into log-mel spectrograms with torch.stft and a mel filter bank
built here.
"""

from __future__ import annotations

import math
import wave
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from trainers.config.data import SpokenCaptionsDataConfig
from trainers.config.mel import mel_edges_hz
from trainers.data.speech_synthesis import Clip, clip_path
from trainers.errors import DataError

CHUNK = 128  # pairs per STFT batch: bounds the memory of the noisy waveforms and spectra
# Fixed (not fitted to the training split, so the eval inputs do not depend on n_train): they
# bring the log10 mel power of the default settings to about zero mean and unit spread.
LOG_FLOOR = 1e-6
LOG_OFFSET = -3.9
LOG_SCALE = 1.0


def load_clips(
    config: SpokenCaptionsDataConfig, folder: Path, clips: Sequence[Clip]
) -> tuple[np.ndarray, np.ndarray]:
    """(clips, clip_samples) int16 waveforms at config.sample_rate, zero-padded at the end, and
    each clip's RMS loudness. int16 halves the memory of float32 and is what espeak-ng writes."""
    waves = np.zeros((len(clips), config.clip_samples), dtype=np.int16)
    loudness = np.zeros(len(clips), dtype=np.float32)
    for start in range(0, len(clips), CHUNK):
        # Read and resample a chunk at a time: one batched FFT is much faster than many small
        # ones, and only a chunk of float32 audio is ever held.
        chunk = [read_wav(clip_path(folder, clip)) for clip in clips[start : start + CHUNK]]
        for clip, (audio, rate) in zip(clips[start : start + CHUNK], chunk, strict=True):
            _check_duration(config, clip, len(audio) / rate)
        for i, (audio, _) in enumerate(chunk, start):
            loudness[i] = np.sqrt(np.mean(np.square(audio)))
        for rate in {rate for _, rate in chunk}:
            at_rate = [i for i, (_, r) in enumerate(chunk) if r == rate]
            audio = resample([chunk[i][0] for i in at_rate], rate, config)
            rows = np.array(at_rate) + start
            waves[rows] = np.clip(np.round(audio * 32767.0), -32768, 32767)
    return waves, loudness


def _check_duration(config: SpokenCaptionsDataConfig, clip: Clip, seconds: float) -> None:
    # Cropping would cut off the end of the caption, which is where the shape (the label) is.
    if seconds > config.clip_seconds:
        raise DataError(
            f"{clip.text!r} in voice {clip.voice} at {clip.speed} words per minute lasts "
            f"{seconds:.2f} s, longer than data.clip_seconds {config.clip_seconds}: raise "
            "clip_seconds or the slowest speed"
        )


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono 16-bit PCM in [-1, 1) and its sample rate, read with the standard library."""
    try:
        with wave.open(str(path), "rb") as reader:
            if reader.getnchannels() != 1 or reader.getsampwidth() != 2:
                raise DataError(f"{path}: expected mono 16-bit audio; delete it to synthesise it")
            rate = reader.getframerate()
            frames = reader.readframes(reader.getnframes())
    except (wave.Error, EOFError, OSError) as error:
        raise DataError(f"{path}: unreadable WAV ({error}); delete it to synthesise it") from error
    return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0, rate


def resample(
    clips: Sequence[np.ndarray], rate: int, config: SpokenCaptionsDataConfig
) -> np.ndarray:
    """(len(clips), clip_samples) float32: the clips zero-padded to clip_seconds and resampled
    from `rate` to config.sample_rate, band-limited by cutting (or zero-extending) their spectra,
    which removes what lies above the new Nyquist frequency where interpolation would alias it."""
    target = config.sample_rate
    # Pad to a multiple of rate / gcd so that the output length is exact: for usual rates both
    # lengths then factor into small primes, which keeps the FFTs fast.
    step = rate // math.gcd(rate, target)
    n_in = math.ceil(config.clip_seconds * rate / step) * step
    # Filled in NumPy: row-wise copies into a torch tensor are an order of magnitude slower.
    rows = np.zeros((len(clips), n_in), dtype=np.float32)
    for row, audio in enumerate(clips):
        rows[row, : len(audio)] = audio
    padded = torch.from_numpy(rows)
    n_out = n_in * target // rate
    if rate != target:
        # irfft zero-extends a short spectrum and reads n_out // 2 + 1 bins of a long one.
        spectrum = torch.fft.rfft(padded)[:, : n_out // 2 + 1]
        padded = torch.fft.irfft(spectrum, n=n_out) * (n_out / n_in)
    # n_out >= clip_samples, by at most a step's worth of samples.
    return padded[:, : config.clip_samples].numpy()


def noisy_log_mels(
    config: SpokenCaptionsDataConfig,
    waves: np.ndarray,
    loudness: np.ndarray,
    rows: np.ndarray,
    noise_seed: int,
) -> torch.Tensor:
    """(len(rows), n_mels, frames) float32 log-mel spectrograms of waves[rows] plus white noise
    of std config.noise times each clip's RMS, drawn from `noise_seed`, in fixed-size chunks."""
    generator = torch.Generator().manual_seed(noise_seed)
    bank = mel_filter_bank(config)
    out = torch.empty((len(rows), config.n_mels, config.frames), dtype=torch.float32)
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        clean = torch.from_numpy(waves[chunk].astype(np.float32) / 32768.0)
        scale = torch.from_numpy(loudness[chunk] * config.noise)[:, None]
        noise = torch.randn(clean.shape, generator=generator) * scale
        out[start : start + len(chunk)] = log_mel(config, clean + noise, bank)
    return out


def log_mel(
    config: SpokenCaptionsDataConfig, audio: torch.Tensor, bank: torch.Tensor
) -> torch.Tensor:
    """(B, clip_samples) waveforms -> (B, n_mels, frames) standardised log10 mel power."""
    window = torch.hann_window(config.win_length)
    spectrum = torch.stft(
        audio,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        win_length=config.win_length,
        window=window,
        center=True,
        return_complex=True,
    )
    # |z|^2 (without the square root of abs()) per unit of window energy: with the bank's
    # unit-sum bands the level is then the same whatever the window length and n_mels, so one
    # fixed offset centres the log spectrogram for every setting.
    power = (spectrum.real.square() + spectrum.imag.square()) / window.square().sum()
    mel = bank @ power  # (n_mels, bins) @ (B, bins, T)
    # centre=True gives clip_samples // hop + 1 >= frames + 1 frames: keep the first `frames`.
    mel = mel[..., : config.frames]
    return (torch.log10(mel + LOG_FLOOR) - LOG_OFFSET) / LOG_SCALE


def mel_filter_bank(config: SpokenCaptionsDataConfig) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters on the FFT bins, with peaks evenly spaced on
    the mel scale from 0 Hz to Nyquist (HTK-style), each summing to one."""
    edges = np.array(mel_edges_hz(config))
    bins = np.arange(config.n_fft // 2 + 1) * config.sample_rate / config.n_fft
    left, peak, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - left) / (peak - left)
    falling = (right - bins[None, :]) / (right - peak)
    weights = np.clip(np.minimum(rising, falling), 0.0, None)
    # Unit-sum bands: a band's value is the mean power of its bins, not more for wider bands.
    weights /= weights.sum(axis=1, keepdims=True)
    return torch.from_numpy(weights.astype(np.float32))
