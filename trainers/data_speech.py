"""The `spoken_captions` data set: the shapes captions spoken by espeak-ng, paired with their text.

Each pair draws a caption as the shapes data set does (shape, colour, size, template), a voice
and a speed. Every distinct (caption, voice, speed) clip is synthesised once by the Debian
`espeak-ng` program and kept as a WAV file in a cache folder shared by all trials; a trial with
a warm cache never runs the synthesiser. The clips are resampled, padded to a fixed length, given
a little seeded white noise (so that repeated clips are not identical inputs) and turned into
log-mel spectrograms with torch.stft and a mel filter bank built here.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from trainers.config_speech import SpokenCaptionsDataConfig, mel_edges_hz
from trainers.data import COLOURS, SHAPES, SIZES, TEMPLATES, ZERO_SHOT_TEMPLATE, caption_vocabulary
from trainers.data_types import InputSpec, PairedData, text_split, token_spec
from trainers.errors import DataError
from trainers.tokenizer import WordTokenizer

PROGRAM = "espeak-ng"
# -z: no pause after the sentence, so a clip ends with its last word. Part of the cache key:
# other options give other audio.
SYNTH_OPTIONS = ("-z",)
CLIP_FORMAT = 1  # bump when the synthesis changes, so clips cached before are not reused
SPECTRA_FORMAT = 1  # bump when the spectrograms change (their code, not their config)
SYNTH_WORKERS = 4  # espeak-ng runs take ~15 ms each; a few at once hide the process start-up
SYNTH_TIMEOUT_S = 60
CHUNK = 128  # pairs per STFT batch: bounds the memory of the noisy waveforms and spectra
# Fixed (not fitted to the training split, so the eval inputs do not depend on n_train): they
# bring the log10 mel power of the default settings to about zero mean and unit spread.
LOG_FLOOR = 1e-6
LOG_OFFSET = -3.9
LOG_SCALE = 1.0


class Clip(NamedTuple):
    """One distinct utterance: a caption in one voice at one speed."""

    text: str
    voice: str
    speed: int

    def key(self) -> str:
        fields = {"format": CLIP_FORMAT, "options": SYNTH_OPTIONS, **self._asdict()}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


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
    prompts = [ZERO_SHOT_TEMPLATE.format(shape=sh) for sh in SHAPES]
    return PairedData(
        train=splits["train"],
        eval=splits["eval"],
        a_input=InputSpec("audio", (config.n_mels, config.frames)),
        b_input=token_spec(tokenizer),
        class_names=SHAPES,
        class_inputs=tokenizer.encode_batch(prompts),
        class_texts=tuple(prompts),
        tokenizer=tokenizer,
        group_names=config.voices,
    )


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
            _save_atomically(folder, files[name], partial(torch.save, out[name]))
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


# --- the clip cache -----------------------------------------------------------------------------


def cache_folder(config: SpokenCaptionsDataConfig) -> Path:
    """config.cache_dir, else $GAPSWEEP_CACHE_DIR/spoken_captions, else the user's cache."""
    if config.cache_dir is not None:
        return Path(config.cache_dir).expanduser()
    root = os.environ.get("GAPSWEEP_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "gapsweep"
    return base / "spoken_captions"


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


def _save_atomically(folder: Path, path: Path, write: Callable[[str], object]) -> None:
    """Write through a temporary file and os.replace: trials running at the same time may write
    the same file, and a reader must only ever see a whole one."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, part = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".part")
    except OSError as error:
        raise DataError(f"data.cache_dir: cannot write in {folder}: {error}") from error
    os.close(handle)
    try:
        write(part)
        os.replace(part, path)
    finally:
        if os.path.exists(part):
            os.unlink(part)


def clip_path(folder: Path, clip: Clip) -> Path:
    return folder / f"{clip.key()}.wav"


def ensure_clips(folder: Path, clips: Sequence[Clip]) -> None:
    """Synthesise the clips not yet in `folder`; the synthesiser is needed only for those."""
    missing = [clip for clip in clips if not clip_path(folder, clip).is_file()]
    if not missing:
        return
    program = find_synthesiser()
    check_voices(program, sorted({clip.voice for clip in missing}))
    with ThreadPoolExecutor(max_workers=SYNTH_WORKERS) as pool:
        # list() waits for every clip and re-raises the first failure here.
        list(pool.map(partial(synthesise, program, folder), missing))


def find_synthesiser() -> str:
    program = shutil.which(PROGRAM)
    if program is None:
        raise DataError(
            f"data.name spoken_captions needs the {PROGRAM} speech synthesiser, which is not on "
            f"PATH: install the Debian package {PROGRAM} (apt-get install {PROGRAM})"
        )
    return program


def check_voices(program: str, voices: Sequence[str]) -> None:
    """Refuse voices espeak-ng does not have. Needed for variants above all: espeak-ng speaks
    "en-us+nonsense" in the plain en-us voice without a word of warning."""
    languages = set().union(*(_voice_names(row) for row in _voice_table(program, "--voices")))
    variants = {row[4].rsplit("/", 1)[-1] for row in _voice_table(program, "--voices=variant")}
    for voice in voices:
        language, _, variant = voice.partition("+")
        if language not in languages:
            raise DataError(
                f"data.voices: {PROGRAM} has no voice {language!r}; English ones include en-us, "
                f"en-gb, en-gb-scotland, en-029 (all: {PROGRAM} --voices)"
            )
        if variant and variant not in variants:
            raise DataError(
                f"data.voices: {PROGRAM} has no variant {variant!r} (in {voice!r}); variants "
                f"include f1-f5, m1-m7, klatt, whisper (all: {PROGRAM} --voices=variant)"
            )


def _voice_table(program: str, option: str) -> list[list[str]]:
    """Rows of `espeak-ng --voices`: Pty, Language, Age/Gender, VoiceName, File, Other..."""
    listing = _run(program, [option], "")
    return [line.split() for line in listing.splitlines()[1:] if len(line.split()) >= 5]


def _voice_names(row: list[str]) -> set[str]:
    # espeak-ng -v takes a language (en-us), a voice name or a voice file (gmw/en-US, en-US).
    return {row[1], row[3], row[4], row[4].rsplit("/", 1)[-1]}


def synthesise(program: str, folder: Path, clip: Clip) -> None:
    """Synthesise one clip into the cache (atomically: other trials may be writing it too)."""

    def speak(part: str) -> None:
        options = [*SYNTH_OPTIONS, "-v", clip.voice, "-s", str(clip.speed), "-w", part]
        # The text goes on stdin, never on the command line, where it could read as an option.
        _run(program, [*options, "--stdin"], clip.text, clip)
        if os.path.getsize(part) == 0:
            raise DataError(f"{PROGRAM} wrote no audio for {clip.text!r} ({clip.voice})")

    _save_atomically(folder, clip_path(folder, clip), speak)


def _run(program: str, args: list[str], text: str, clip: Clip | None = None) -> str:
    what = f"speak {clip.text!r} in voice {clip.voice!r}" if clip else f"run {' '.join(args)}"
    try:
        done = subprocess.run(
            [program, *args],
            input=text,
            capture_output=True,
            text=True,
            timeout=SYNTH_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise DataError(f"{PROGRAM} could not {what}: {error}") from error
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise DataError(f"{PROGRAM} could not {what}: {reason[0]}")
    return done.stdout


# --- audio --------------------------------------------------------------------------------------


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
