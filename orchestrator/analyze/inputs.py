"""The inputs of `orchestrator analyze`: its options checked, the embeddings read (memory-mapped,
so larger than RAM is fine) and checked for shape, the labels read. Every problem becomes an
InputError line, collected where possible so the user fixes them all in one go."""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from orchestrator.errors import InputError
from trainers.gap import DEFAULT_MAX_PAIRS, DEFAULT_TEMPERATURE

DEFAULT_SHIFT = "-1:1:0.25"
DEFAULT_LANDSCAPE_TEMPERATURES = "0.01,0.1,1"  # the paper's Fig. 3b-d: 1/tau = 100, 10, 1
_MAX_LAMBDAS = 1001
# np.load's ways of saying "this is not a readable .npy/.npz file".
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile)


@dataclass(frozen=True)
class AnalyzeRequest:
    """The command line's arguments, unchecked."""

    files: tuple[Path, ...]
    key: str | None = None
    names: str = "a,b"
    labels: Path | None = None
    shift: str = DEFAULT_SHIFT
    temperature: float = DEFAULT_TEMPERATURE
    plot: Path | None = None
    sample_size: int = DEFAULT_MAX_PAIRS
    seed: int = 0
    landscape: bool = False
    temperatures: str = DEFAULT_LANDSCAPE_TEMPERATURES
    class_prompts: Path | None = None  # (K, d): row k the b-side embedding of class k's prompt
    direction_from: Path | None = None  # a (2, N, d) file whose gap direction the shift follows


@dataclass(frozen=True)
class PairedEmbeddings:
    """Two modalities of N matched rows each (possibly memory-mapped), checked for shape."""

    a: np.ndarray
    b: np.ndarray
    names: tuple[str, str]
    labels: npt.NDArray[np.generic] | None


def option_problems(request: AnalyzeRequest) -> list[str]:
    problems = []
    if not (math.isfinite(request.temperature) and request.temperature > 0):
        problems.append(f"--temperature must be a positive number, got {request.temperature}")
    if request.sample_size < 2:
        problems.append(f"--sample-size must be at least 2, got {request.sample_size}")
    if request.plot is not None:
        if request.plot.suffix.lower() != ".png":
            problems.append(f"--plot {request.plot}: the picture is a PNG; name it *.png")
        elif not request.plot.parent.is_dir():
            problems.append(f"--plot {request.plot}: folder {request.plot.parent} does not exist")
    return problems


def parse_names(text: str) -> tuple[str, str]:
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise InputError(f"--names {text!r}: give two different names, e.g. --names image,text")
    return parts[0], parts[1]


def parse_lambdas(text: str) -> tuple[float, ...]:
    """'start:stop:step' (stop included) or a comma list of λ values."""
    hint = f"--shift {text!r}: expected start:stop:step such as {DEFAULT_SHIFT}, or 0,0.5,1"
    try:
        if ":" not in text:
            values = tuple(float(part) for part in text.split(","))
        else:
            start, stop, step = (float(part) for part in text.split(":"))
            values = _grid(start, stop, step, hint)
    except ValueError:
        raise InputError(hint) from None
    if not values or not all(math.isfinite(v) for v in values):
        raise InputError(hint)
    return values


def _grid(start: float, stop: float, step: float, hint: str) -> tuple[float, ...]:
    if not (step > 0 and stop >= start):
        raise InputError(f"{hint} (step must be positive and stop >= start)")
    # Counted in steps, not by repeated addition, so 0.25-steps land exactly on the stop.
    count = math.floor((stop - start) / step + 1e-9) + 1
    if count > _MAX_LAMBDAS:
        raise InputError(f"{hint} ({count} values; at most {_MAX_LAMBDAS})")
    return tuple(round(start + k * step, 12) for k in range(count))


def load_pairs(files: tuple[Path, ...], key: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) from one (2, N, d) file or two (N, d) files; InputError lists every problem."""
    if len(files) not in (1, 2):
        raise InputError(f"expected FILE or A B, got {len(files)} files")
    arrays, problems = [], []
    for path in files:
        try:
            arrays.append(read_array(path, key))
        except InputError as exc:
            problems += exc.problems
    if problems:
        raise InputError(problems)
    if len(files) == 1:
        pair = _split_stacked(files[0], arrays[0])
    else:
        pair = _check_two(files, arrays[0], arrays[1])
    _check_size(pair[0])
    return pair


def read_array(path: Path, key: str | None, kinds: str = "iuf") -> np.ndarray:
    """One array from a .npy (memory-mapped, so larger than RAM is fine) or a .npz.

    `kinds`: the accepted dtype kinds (NumPy's letters: i, u integers, f floats).
    """
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty")
    try:
        loaded = np.load(path, mmap_mode="r", allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                array = _pick_key(path, loaded, key)
        else:
            array = loaded
    except _READ_ERRORS as exc:
        raise InputError(f"{path}: cannot read it as a .npy or .npz array ({exc})") from exc
    if array.dtype.kind not in kinds:
        raise InputError(f"{path}: holds {array.dtype} values; expected real numbers")
    return np.asarray(array)


def _pick_key(path: Path, archive: np.lib.npyio.NpzFile, key: str | None) -> np.ndarray:
    keys = list(archive.files)
    if key is None and len(keys) == 1:
        key = keys[0]
    if key is None:
        raise InputError(f"{path}: holds arrays {', '.join(keys)}; choose one with --key")
    if key not in keys:
        raise InputError(f"{path}: no array named {key!r} (it holds: {', '.join(keys) or 'none'})")
    array: np.ndarray = archive[key]
    return array


def _split_stacked(path: Path, array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if array.ndim != 3 or array.shape[0] != 2:
        raise InputError(
            f"{path}: expected shape (2, N, d), two modalities of N matched rows, got "
            f"{array.shape}; or give two files of shape (N, d)"
        )
    return array[0], array[1]


def _check_two(
    files: tuple[Path, ...], a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    problems = [
        f"{path}: expected shape (N, d), got {array.shape}"
        for path, array in zip(files, (a, b), strict=True)
        if array.ndim != 2
    ]
    if not problems and a.shape[0] != b.shape[0]:
        problems.append(
            f"{files[0]} has {a.shape[0]} rows and {files[1]} has {b.shape[0]}; "
            "row i of both must be one matched pair"
        )
    if not problems and a.shape[1] != b.shape[1]:
        problems.append(
            f"{files[0]} has {a.shape[1]} dimensions and {files[1]} has {b.shape[1]}; "
            "both modalities must live in the same space"
        )
    if problems:
        raise InputError(problems)
    return a, b


def _check_size(a: np.ndarray) -> None:
    n, dim = a.shape
    if n < 2:
        raise InputError(f"the input holds {n} pair(s); the metrics need at least 2")
    if dim < 1:
        raise InputError("the embeddings have 0 dimensions")


def load_labels(path: Path, n: int) -> npt.NDArray[np.generic]:
    """One class id per pair from a .npy/.npz or a text file with one label per line."""
    try:
        if path.suffix.lower() in (".npy", ".npz"):
            labels = read_array(path, None, kinds="iufU")
        else:
            labels = _read_label_lines(path)
    except InputError as exc:
        raise InputError([f"--labels {problem}" for problem in exc.problems]) from exc
    if labels.ndim != 1 or labels.shape[0] != n:
        count = labels.shape[0] if labels.ndim == 1 else f"an array of shape {labels.shape} of"
        raise InputError(f"--labels {path}: {count} labels for {n} pairs; give one per pair")
    if np.issubdtype(labels.dtype, np.floating):
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise InputError(f"--labels {path}: class ids must be whole numbers or names")
        labels = labels.astype(np.int64)
    return labels


def _read_label_lines(path: Path) -> npt.NDArray[np.generic]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read it ({exc})") from exc
    while lines and not lines[-1].strip():
        lines.pop()
    blank = [k + 1 for k, line in enumerate(lines) if not line.strip()]
    if blank:
        raise InputError(f"{path}: line {blank[0]} is empty; one label per line")
    labels = [line.strip() for line in lines]
    if all(label.lstrip("-").isdigit() for label in labels):
        return np.array([int(label) for label in labels], dtype=np.int64)
    return np.array(labels)


def parse_temperatures(text: str) -> tuple[float, ...]:
    """A comma list of positive temperatures, e.g. 0.01,0.1,1."""
    hint = f"--temperatures {text!r}: expected positive numbers such as 0.01,0.1,1"
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise InputError(hint) from None
    if not values or not all(math.isfinite(v) and v > 0 for v in values) or len(values) > 20:
        raise InputError(hint + " (at most 20)")
    return values


def load_class_prompts(
    path: Path, dim: int, labels: npt.NDArray[np.generic] | None
) -> npt.NDArray[np.float64]:
    """(K, d) prompt embeddings, one per class; the labels must be class numbers below K."""
    prompts = read_array(path, None)
    where = f"--class-prompts {path}"
    if prompts.ndim != 2 or prompts.shape[1] != dim:
        raise InputError(f"{where}: shape {prompts.shape}; expected (classes, {dim})")
    if labels is None:
        raise InputError(f"{where}: needs --labels, the class number of each pair")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise InputError(f"{where}: --labels must be class numbers 0..{prompts.shape[0] - 1}")
    if int(labels.max()) >= prompts.shape[0]:
        raise InputError(
            f"{where}: {prompts.shape[0]} prompts, but --labels has class {int(labels.max())}"
        )
    return np.asarray(prompts, dtype=np.float64)


def direction_of(path: Path, dim: int) -> npt.NDArray[np.float64]:
    """The unit gap direction (centroid a minus centroid b, rows normalised) of a (2, N, d)
    file: another data set's gap to shift these embeddings along, as the paper shifts SVHN
    and FairFace along MSCOCO's."""
    a, b = load_pairs((path,), None)
    if a.shape[1] != dim:
        raise InputError(f"--direction-from {path}: {a.shape[1]}-d embeddings, not {dim}-d")
    ua = a / np.linalg.norm(a, axis=1, keepdims=True)
    ub = b / np.linalg.norm(b, axis=1, keepdims=True)
    gap = ua.mean(axis=0) - ub.mean(axis=0)
    norm = float(np.linalg.norm(gap))
    if not norm > 0:
        raise InputError(f"--direction-from {path}: its two modalities have no gap to follow")
    return np.asarray(gap / norm, dtype=np.float64)
