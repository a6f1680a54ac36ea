"""The speech-text pair: spoken_captions synthesised by the real espeak-ng (cached on disk), its
log-mel spectrograms, clear errors for a missing synthesiser and bad configuration, and the
audio_cnn tower."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn
from torch.nn import functional as F

from tests.helpers import NEEDS_ESPEAK, missing_program
from trainers.config import ShapesDataConfig
from trainers.config.data import SpokenCaptionsDataConfig
from trainers.config.towers import AudioTowerConfig
from trainers.data.audio_features import log_mel, mel_filter_bank, resample
from trainers.data.paired import InputSpec, PairedData
from trainers.data.shapes import SHAPES, make_shapes
from trainers.data.speech_synthesis import cache_folder
from trainers.data.spoken_captions import make_spoken_captions
from trainers.errors import DataError
from trainers.loss import contrastive_loss
from trainers.towers.audio import AudioTower

VOICES = ("en-us", "en-gb+f3")
TINY: dict[str, Any] = {
    "n_train": 12,
    "n_eval": 8,
    "voices": VOICES,
    "speeds": [175],
    "frames": 32,
    "n_mels": 16,
}


def config(cache: Path, **changes: Any) -> SpokenCaptionsDataConfig:
    return SpokenCaptionsDataConfig.model_validate({**TINY, "cache_dir": str(cache), **changes})


def clip_files(cache: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in cache.glob("*.wav")}


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PairedData]:
    """A cache folder holding the clips of TINY with seed 0, and that data set."""
    if why := missing_program("espeak-ng"):
        pytest.skip(why)
    cache = tmp_path_factory.mktemp("speech-cache")
    return cache, make_spoken_captions(config(cache), 0)


def hide_synthesiser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Leave espeak-ng off PATH (for the rest of the test)."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_pairs_are_spectrograms_and_caption_tokens(warm: tuple[Path, PairedData]) -> None:
    data = warm[1]
    assert data.a_input == InputSpec("audio", (16, 32))
    assert data.train.a.shape == (12, 16, 32) and data.eval.a.shape == (8, 16, 32)
    assert data.train.a.dtype == torch.float32 and bool(data.train.a.isfinite().all())
    assert data.train.b.dtype == torch.int64 and data.train.b.shape == (12, data.b_input.shape[0])
    assert data.class_names == SHAPES and data.class_inputs is not None
    assert data.class_inputs.shape == (24 * len(SHAPES), data.b_input.shape[0])  # ensembles
    assert data.group_names == VOICES
    assert data.train.labels is not None and data.train.groups is not None
    assert data.train.b_texts is not None and data.tokenizer is not None
    for text, label, tokens in zip(
        data.train.b_texts, data.train.labels, data.train.b, strict=True
    ):
        words = [data.tokenizer.vocab[t] for t in tokens.tolist() if t > 2]
        assert words == text.split() and words[-1] == SHAPES[int(label)]
    assert set(data.train.groups.tolist()) <= {0, 1}


def test_same_seed_same_tensors_other_seed_other_draw(warm: tuple[Path, PairedData]) -> None:
    cache, first = warm
    # Not from the spectrogram cache: computed again from the clips.
    again = make_spoken_captions(config(cache, cache_spectrograms=False), 0)
    for name in ("train", "eval"):
        assert torch.equal(getattr(first, name).a, getattr(again, name).a)
        assert torch.equal(getattr(first, name).b, getattr(again, name).b)
    other = make_spoken_captions(config(cache, cache_spectrograms=False), 1)
    assert not torch.equal(first.train.b, other.train.b)
    assert not torch.equal(first.train.a, other.train.a)


def test_captions_are_those_of_shapes_with_the_same_seed(warm: tuple[Path, PairedData]) -> None:
    shapes = make_shapes(ShapesDataConfig(n_train=12, n_eval=8), 0)
    assert torch.equal(warm[1].train.b, shapes.train.b)
    assert torch.equal(warm[1].eval.b, shapes.eval.b)


def test_torn_spectrogram_files_are_computed_again(warm: tuple[Path, PairedData]) -> None:
    cache, first = warm
    files = sorted(cache.glob("spectra-*.pt"))
    assert len(files) == 2  # one per split
    for file in files:
        file.write_bytes(b"torn")
    assert torch.equal(make_spoken_captions(config(cache), 0).eval.a, first.eval.a)
    assert all(file.stat().st_size > 1000 for file in files)  # written whole again


def test_noise_is_seeded_and_optional(warm: tuple[Path, PairedData]) -> None:
    cache, noisy = warm
    clean = make_spoken_captions(config(cache, noise=0.0), 0)
    assert torch.equal(clean.train.b, noisy.train.b)  # same pairs, other noise
    assert not torch.equal(clean.train.a, noisy.train.a)
    # Without noise, pairs of the same clip have the very same spectrogram.
    texts, groups = clean.train.b_texts, clean.train.groups
    assert texts is not None and groups is not None
    seen: dict[tuple[str, int], torch.Tensor] = {}
    for i, key in enumerate(zip(texts, groups.tolist(), strict=True)):
        if key in seen:
            assert torch.equal(seen[key], clean.train.a[i])
        seen[key] = clean.train.a[i]


def test_a_warm_cache_needs_no_synthesiser(
    warm: tuple[Path, PairedData], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, first = warm
    hide_synthesiser(tmp_path, monkeypatch)
    before = clip_files(cache)
    # Other noise: new spectrograms, from the cached clips; espeak-ng is not even on PATH.
    rebuilt = make_spoken_captions(config(cache, noise=0.1), 0)
    assert rebuilt.train.a.shape == first.train.a.shape
    assert torch.equal(make_spoken_captions(config(cache), 0).train.a, first.train.a)
    assert clip_files(cache) == before
    assert not list(cache.glob(".*"))  # no temporary files left behind


def test_missing_synthesiser_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hide_synthesiser(tmp_path, monkeypatch)
    with pytest.raises(DataError, match=r"espeak-ng.*apt-get install espeak-ng"):
        make_spoken_captions(config(tmp_path / "cold"), 0)


@NEEDS_ESPEAK
@pytest.mark.parametrize(
    ("voice", "message"),
    [("xx-klingon", "has no voice 'xx-klingon'"), ("en-us+nonsense", "no variant 'nonsense'")],
)
def test_unknown_voice_is_refused(tmp_path: Path, voice: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        make_spoken_captions(config(tmp_path, voices=["en-us", voice]), 0)


@NEEDS_ESPEAK
def test_clip_longer_than_clip_seconds_is_refused(tmp_path: Path) -> None:
    slow = {"speeds": [80], "clip_seconds": 1.0, "frames": 8, "n_mels": 8}
    with pytest.raises(DataError, match=r"longer than data.clip_seconds 1.0"):
        make_spoken_captions(config(tmp_path, **slow), 0)


def test_corrupt_clip_names_the_file(tmp_path: Path, warm: tuple[Path, PairedData]) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    for wav in warm[0].glob("*.wav"):
        (copy / wav.name).write_bytes(b"RIFF nonsense")
    with pytest.raises(DataError, match=r"unreadable WAV.*delete it"):
        make_spoken_captions(config(copy), 0)


@NEEDS_ESPEAK
def test_trials_sharing_a_cold_cache_at_once(tmp_path: Path) -> None:
    results: list[torch.Tensor] = []

    def build() -> None:
        results.append(make_spoken_captions(config(tmp_path, n_train=8), 3).train.a)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2 and torch.equal(results[0], results[1])
    assert not list(tmp_path.glob(".*"))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"speeds": [40]}, "greater than or equal to 80"),
        ({"speeds": [175, 175]}, "repeat a speed"),
        ({"voices": ["-w/etc/passwd"]}, "should match pattern"),
        ({"voices": ["en-us", "en-us"]}, "repeat a voice"),
        ({"voices": []}, "at least 1 item"),
        ({"frames": 2000}, "hop of 24 samples"),
        ({"n_mels": 200, "frames": 512}, "n_mels 200 is too many"),
        ({"clip_seconds": 0.1}, "greater than 0.5"),
        ({"noise": -1}, "greater than or equal to 0"),
        ({"n_train": 2}, "greater than or equal to 8"),
        ({"sample_rate": 100}, "greater than or equal to 8000"),
        ({"voice": "en-us"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_configuration_is_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SpokenCaptionsDataConfig.model_validate({**TINY, **changes})


def test_cache_folder_default_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GAPSWEEP_CACHE_DIR", raising=False)
    default = SpokenCaptionsDataConfig()
    assert cache_folder(default) == Path.home() / ".cache/gapsweep/spoken_captions"
    monkeypatch.setenv("GAPSWEEP_CACHE_DIR", "/srv/cache")
    assert cache_folder(default) == Path("/srv/cache/spoken_captions")
    assert cache_folder(default.model_copy(update={"cache_dir": "/x"})) == Path("/x")


def test_resampling_keeps_the_pitch() -> None:
    settings = SpokenCaptionsDataConfig(clip_seconds=1.0, frames=16)
    t = np.arange(22050) / 22050
    tone = np.sin(2 * np.pi * 440.0 * t).astype(np.float32)
    out = resample([tone], 22050, settings)[0]
    assert out.shape == (16000,)
    assert int(np.argmax(np.abs(np.fft.rfft(out)))) == 440  # 1 Hz bins over one second


def test_a_tone_lights_the_mel_band_at_its_frequency() -> None:
    settings = SpokenCaptionsDataConfig(clip_seconds=1.0, frames=16, n_mels=20)
    bank = mel_filter_bank(settings)
    assert bank.shape == (20, settings.n_fft // 2 + 1) and bool((bank.sum(dim=1) > 0).all())
    t = torch.arange(16000) / 16000
    tone = torch.sin(2 * math.pi * 1000.0 * t)[None, :]
    spectrum = log_mel(settings, tone, bank)
    assert spectrum.shape == (1, 20, 16)
    bin_hz = torch.arange(bank.shape[1]) * 16000 / settings.n_fft
    peaks = bin_hz[bank.argmax(dim=1)]
    assert int(spectrum[0].mean(dim=1).argmax()) == int((peaks - 1000).abs().argmin())


SPEC = InputSpec("audio", (16, 32))


def test_audio_tower_embeds_to_unit_vectors() -> None:
    tower = AudioTower(AudioTowerConfig(channels=(8, 8, 8, 8, 8, 8)), SPEC, 6)
    out = tower(torch.randn(5, 16, 32))
    assert out.shape == (5, 6)
    assert torch.allclose(out.norm(dim=1), torch.ones(5), atol=1e-5)


def test_audio_tower_refuses_images() -> None:
    with pytest.raises(DataError, match="audio_cnn tower reads"):
        AudioTower(AudioTowerConfig(), InputSpec("image", (3, 8, 8)), 6)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kernel_size": 4}, "must be odd"),
        ({"channels": []}, "at least 1 item"),
        ({"channels": [0]}, "greater than or equal to 1"),
    ],
)
def test_bad_audio_tower_is_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AudioTowerConfig.model_validate(changes)


class BagOfWords(nn.Module):
    """A minimal tower b for the training check: mean word embedding, projected."""

    def __init__(self, vocab_size: int, embed_dim: int) -> None:
        super().__init__()
        self.words = nn.EmbeddingBag(vocab_size, 16, padding_idx=0)
        self.proj = nn.Linear(16, embed_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(self.words(tokens)), dim=-1)


def test_contrastive_training_lowers_the_loss(warm: tuple[Path, PairedData]) -> None:
    data = warm[1]
    torch.manual_seed(0)
    audio = AudioTower(AudioTowerConfig(channels=(16,)), data.a_input, 8)
    text = BagOfWords(data.b_input.vocab_size, 8)
    optimiser = torch.optim.Adam([*audio.parameters(), *text.parameters()], lr=1e-2)
    scale = torch.tensor(10.0)
    losses = []
    for _ in range(20):
        loss = contrastive_loss(audio(data.train.a), text(data.train.b), scale)
        optimiser.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        assert audio.proj.weight.grad is not None and audio.proj.weight.grad.abs().sum() > 0
        optimiser.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]
