"""Speech synthesis for `spoken_captions`: espeak-ng and the cache of the clips it speaks.

Every distinct (caption, voice, speed) clip is synthesised once by the Debian `espeak-ng` program
and kept as a WAV file in a cache folder shared by all trials; a trial with a warm cache never
runs the synthesiser. Missing clips are synthesised a few at a time, each written atomically,
since trials running at the same time may write the same clip.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import NamedTuple

from trainers.config.data import SpokenCaptionsDataConfig
from trainers.errors import DataError

PROGRAM = "espeak-ng"
# -z: no pause after the sentence, so a clip ends with its last word. Part of the cache key:
# other options give other audio.
SYNTH_OPTIONS = ("-z",)
CLIP_FORMAT = 1  # bump when the synthesis changes, so clips cached before are not reused
SYNTH_WORKERS = 4  # espeak-ng runs are short; a few at once hide each one's process start-up
SYNTH_TIMEOUT_S = 60


class Clip(NamedTuple):
    """One distinct utterance: a caption in one voice at one speed."""

    text: str
    voice: str
    speed: int

    def key(self) -> str:
        fields = {"format": CLIP_FORMAT, "options": SYNTH_OPTIONS, **self._asdict()}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


def cache_folder(config: SpokenCaptionsDataConfig) -> Path:
    """config.cache_dir, else $GAPSWEEP_CACHE_DIR/spoken_captions, else the user's cache."""
    if config.cache_dir is not None:
        return Path(config.cache_dir).expanduser()
    root = os.environ.get("GAPSWEEP_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "gapsweep"
    return base / "spoken_captions"


def save_atomically(folder: Path, path: Path, write: Callable[[str], object]) -> None:
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

    save_atomically(folder, clip_path(folder, clip), speak)


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
