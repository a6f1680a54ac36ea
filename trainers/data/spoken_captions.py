"""The `spoken_captions` data set: the shapes captions spoken by espeak-ng, paired with their text.

Each pair draws a caption as the shapes data set does (shape, colour, size, template), a voice
and a speed. The clips come from speech_synthesis.py (espeak-ng, cached on disk) and their
log-mel spectrograms from audio_features.py. Each split's spectrograms are cached beside the
clips too (unless data.cache_spectrograms is off), keyed by everything that shapes their
values, so a trial with a warm cache reads no audio at all.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from trainers.config.data import SpokenCaptionsDataConfig
from trainers.data.audio_features import load_clips, noisy_log_mels
from trainers.data.paired import InputSpec, PairedData, PromptEnsemble, text_split, token_spec
from trainers.data.shapes import (
    COLOURS,
    SHAPES,
    SIZES,
    TEMPLATES,
    caption_vocabulary,
    shape_prompts,
)
from trainers.data.speech_synthesis import (
    CLIP_FORMAT,
    Clip,
    cache_folder,
    ensure_clips,
    save_atomically,
)
from trainers.data.tokenizer import WordTokenizer

SPECTRA_FORMAT = 1  # bump when the spectrograms change (their code, not their config)


@dataclass(frozen=True)
class _Draw:
    """What one split's pairs say and how they are spoken."""

    captions: list[str]
    shape_ids: np.ndarray
    voice_ids: np.ndarray
    speed_ids: np.ndarray
    noise_seed: int

    def clips(self, config: SpokenCaptionsDataConfig) -> list[Clip]:
        return [
            Clip(text, config.voices[v], config.speeds[s])
            for text, v, s in zip(self.captions, self.voice_ids, self.speed_ids, strict=True)
        ]


def make_spoken_captions(config: SpokenCaptionsDataConfig, seed: int) -> PairedData:
    tokenizer = WordTokenizer.from_texts(caption_vocabulary())
    # Separate streams so the eval split does not change when n_train does.
    draws = {
        name: _draw(config, n, np.random.default_rng([seed, stream]))
        for stream, (name, n) in enumerate((("train", config.n_train), ("eval", config.n_eval)))
    }
    spectra = _spectra(config, draws, seed)
    splits = {
        # Matched by exact caption: the audio says "a photo of", so templates are told apart.
        name: text_split(spectra[name], d.captions, tokenizer, d.shape_ids, d.voice_ids)
        for name, d in draws.items()
    }
    prompts = PromptEnsemble.of(tokenizer, shape_prompts())
    return PairedData(
        train=splits["train"],
        eval=splits["eval"],
        a_input=InputSpec("audio", (config.n_mels, config.frames)),
        b_input=token_spec(tokenizer),
        class_names=SHAPES,
        tokenizer=tokenizer,
        group_names=config.voices,
    ).with_prompts(prompts)


def _spectra(
    config: SpokenCaptionsDataConfig, draws: dict[str, _Draw], seed: int
) -> dict[str, torch.Tensor]:
    """Each split's log-mel spectrograms: from the cache, else from the (cached) clips."""
    folder = cache_folder(config)
    files = {name: spectra_path(folder, config, seed, name, d) for name, d in draws.items()}
    found = {
        name: _load_spectra(path, (len(draws[name].captions), config.n_mels, config.frames))
        for name, path in files.items()
    }
    todo = [name for name, spectra in found.items() if spectra is None]
    if not todo:
        return {name: spectra for name, spectra in found.items() if spectra is not None}
    wanted = sorted({clip for name in todo for clip in draws[name].clips(config)})
    ensure_clips(folder, wanted)
    waves, loudness = load_clips(config, folder, wanted)
    row = {clip: i for i, clip in enumerate(wanted)}
    out = {name: spectra for name, spectra in found.items() if spectra is not None}
    for name in todo:
        rows = np.array([row[clip] for clip in draws[name].clips(config)], dtype=np.int64)
        out[name] = noisy_log_mels(config, waves, loudness, rows, draws[name].noise_seed)
        if config.cache_spectrograms:
            save_atomically(folder, files[name], partial(torch.save, out[name]))
    return out


def _draw(config: SpokenCaptionsDataConfig, n: int, rng: np.random.Generator) -> _Draw:
    # The caption draws come first and in the shapes order, so a seed gives the captions of the
    # shapes data set with that seed.
    shape_ids = rng.integers(len(SHAPES), size=n)
    colour_ids = rng.integers(len(COLOURS), size=n)
    size_ids = rng.integers(len(SIZES), size=n)
    template_ids = rng.integers(len(TEMPLATES), size=n)
    captions = [
        TEMPLATES[t].format(size=list(SIZES)[s], colour=list(COLOURS)[c], shape=SHAPES[sh])
        for t, s, c, sh in zip(template_ids, size_ids, colour_ids, shape_ids, strict=True)
    ]
    return _Draw(
        captions=captions,
        shape_ids=shape_ids,
        voice_ids=rng.integers(len(config.voices), size=n),
        speed_ids=rng.integers(len(config.speeds), size=n),
        noise_seed=int(rng.integers(2**62)),
    )


# --- the spectrogram cache ---------------------------------------------------------------------


def spectra_path(
    folder: Path, config: SpokenCaptionsDataConfig, seed: int, split: str, draw: _Draw
) -> Path:
    """The spectrogram file of one split: keyed by everything that shapes its values (not by
    where the cache is, and not by the other split's size, so a new n_train reuses the eval)."""
    fields = config.model_dump(exclude={"cache_dir", "cache_spectrograms", "n_train", "n_eval"})
    fields |= {"format": [CLIP_FORMAT, SPECTRA_FORMAT], "seed": seed, "split": split}
    fields |= {"n": len(draw.captions)}
    fields |= {"torch": torch.__version__.split("+")[0]}  # other STFT numerics, other values
    key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]
    return folder / f"spectra-{key}.pt"


def _load_spectra(path: Path, shape: tuple[int, int, int]) -> torch.Tensor | None:
    """The cached spectrograms, or None to compute them (again): a missing, unreadable or
    foreign file is never an error, since the clips can always give them."""
    if not path.is_file():
        return None
    try:
        spectra = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    ok = isinstance(spectra, torch.Tensor) and spectra.shape == shape
    return spectra if ok and spectra.dtype == torch.float32 else None
