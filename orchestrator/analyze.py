"""`orchestrator analyze`: load embeddings from files, check them, measure the gap, report.

Every problem with the input (arguments, files, data) becomes an InputError carrying one line per
problem, collected where possible so the user fixes them all in one go. The metrics themselves
live in `trainers.gap`; this module only reads, checks and renders.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from orchestrator.errors import InputError
from trainers.errors import DataError
from trainers.gap import DEFAULT_MAX_PAIRS, METRIC_NAMES, SAMPLED_METRICS, GapReport, gap_report
from trainers.gap_pairwise import principal_axes
from trainers.gap_shift import DEFAULT_TEMPERATURE

DEFAULT_SHIFT = "-1:1:0.25"
_MAX_LAMBDAS = 1001
# np.load's ways of saying "this is not a readable .npy/.npz file".
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile)
T = TypeVar("T")


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


@dataclass(frozen=True)
class PairedEmbeddings:
    """Two modalities of N matched rows each (possibly memory-mapped), checked for shape."""

    a: np.ndarray
    b: np.ndarray
    names: tuple[str, str]
    labels: npt.NDArray[np.generic] | None


@dataclass(frozen=True)
class Analysis:
    data: PairedEmbeddings
    report: GapReport


def run(request: AnalyzeRequest) -> Analysis:
    """Check everything, then measure; the plot (if asked for) is written here too."""
    problems: list[str] = []
    names = _collect(problems, parse_names, request.names)
    lambdas = _collect(problems, parse_lambdas, request.shift)
    problems += _option_problems(request)
    arrays = _collect(problems, load_pairs, request.files, request.key)
    if problems or names is None or lambdas is None or arrays is None:
        raise InputError(problems)
    labels = None if request.labels is None else load_labels(request.labels, arrays[0].shape[0])
    data = PairedEmbeddings(arrays[0], arrays[1], names, labels)
    try:
        report = gap_report(
            data.a,
            data.b,
            labels=labels,
            lambdas=lambdas,
            temperature=request.temperature,
            max_pairs=request.sample_size,
            seed=request.seed,
            names=names,
        )
    except DataError as exc:
        raise InputError(str(exc).splitlines()) from exc
    analysis = Analysis(data, report)
    if request.plot is not None:
        write_plot(analysis, request.plot)
    return analysis


def _collect(problems: list[str], parse: Callable[..., T], *args: Any) -> T | None:
    """`parse(*args)`, or None with its problems added to `problems`."""
    try:
        return parse(*args)
    except InputError as exc:
        problems.extend(exc.problems)
        return None


def _option_problems(request: AnalyzeRequest) -> list[str]:
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


# ---------------------------------------------------------------- output


def json_text(report: GapReport) -> str:
    """One JSON object: exactly the metric names, then `shift`; NaN becomes null."""
    return json.dumps(_finite_or_none(report.to_json_dict()), indent=2)


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


def sampling_note(report: GapReport) -> str | None:
    if not report.sampled:
        return None
    return (
        f"{', '.join(SAMPLED_METRICS)} and the shift curve are computed on a seeded sample of "
        f"{report.sample_size:,} of {report.n_pairs:,} pairs (--sample-size, --seed); "
        "the other metrics on all pairs"
    )


_MEANING = {
    "gap_norm": "|centroid {a} - centroid {b}|",
    "centroid_cosine": "cosine of the two centroids",
    "paired_cosine": "mean cosine of matched pairs",
    "paired_distance": "mean |{a}_i - {b}_i|",
    "rmg": "relative modality gap (Schrodi et al.)",
    "cone_cosine_a": "mean pairwise cosine within {a}",
    "cone_cosine_b": "mean pairwise cosine within {b}",
    "cone_min_cosine_a": "minimum pairwise cosine within {a}",
    "cone_min_cosine_b": "minimum pairwise cosine within {b}",
    "linear_separability": "held-out accuracy telling {a} from {b}",
    "alignment": "mean |{a}_i - {b}_i|^2",
    "uniformity_a": "log mean exp(-2|u-v|^2) within {a}",
    "uniformity_b": "log mean exp(-2|u-v|^2) within {b}",
    "pc1_variance_ratio": "variance share of the first principal axis",
}


def print_tables(analysis: Analysis, console: Console) -> None:
    report = analysis.report
    name_a, name_b = (escape(name) for name in analysis.data.names)  # "[x]" is not Rich markup
    title = f"Modality gap: {name_a} vs {name_b} ({report.n_pairs:,} pairs, {report.dim}-d)"
    table = Table(title=title, caption=sampling_note(report))
    for column in ("metric", "value", "meaning"):
        table.add_column(column, justify="right" if column == "value" else "left")
    for name in METRIC_NAMES:
        marker = " *" if report.sampled and name in SAMPLED_METRICS else ""
        meaning = _MEANING[name].format(a=name_a, b=name_b)
        table.add_row(name, f"{report.metrics[name]:.4f}{marker}", meaning)
    console.print(table)
    console.print(_shift_table(analysis))


def _shift_table(analysis: Analysis) -> Table:
    name_a, name_b = (escape(name) for name in analysis.data.names)
    table = Table(title=f"Gap shift: {name_a} by -λ/2·g, {name_b} by +λ/2·g, renormalised")
    columns = ["λ", "gap_norm", "loss", f"R@1 {name_a}→{name_b}", f"R@1 {name_b}→{name_a}"]
    with_labels = analysis.data.labels is not None
    for column in [*columns, "zero-shot acc"] if with_labels else columns:
        table.add_column(column, justify="right")
    for point in analysis.report.shift:
        cells = [
            point.lam,
            point.gap_norm,
            point.loss,
            point.recall_at_1_a2b,
            point.recall_at_1_b2a,
        ]
        if point.zero_shot_acc is not None:
            cells.append(point.zero_shot_acc)
        table.add_row(
            *(f"{value:+.2f}" if k == 0 else f"{value:.4f}" for k, value in enumerate(cells))
        )
    return table


# ---------------------------------------------------------------- plot


def write_plot(analysis: Analysis, path: Path) -> None:
    """Figure-1-style picture: both modalities in 2-D (PCA) with the gap vector, and the curve."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    _draw_embeddings(left, analysis)
    _draw_shift(right, analysis)
    fig.tight_layout()
    try:
        fig.savefig(path, format="png", dpi=120)
    except OSError as exc:
        raise InputError(f"--plot {path}: cannot write it ({exc})") from exc
    finally:
        plt.close(fig)


def _plot_rows(analysis: Analysis) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    data = analysis.data
    n, limit = data.a.shape[0], 2000
    picked = (
        np.sort(np.random.default_rng(0).choice(n, limit, replace=False)) if n > limit else None
    )
    rows_a = data.a if picked is None else data.a[picked]
    rows_b = data.b if picked is None else data.b[picked]
    x, y = np.asarray(rows_a, dtype=np.float64), np.asarray(rows_b, dtype=np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    return x, y


def _draw_embeddings(ax: Any, analysis: Analysis) -> None:
    x, y = _plot_rows(analysis)
    z = np.concatenate([x, y])
    centre = z.mean(axis=0)
    axes = principal_axes(z, 2)
    if axes.shape[1] < 2:  # 1-d embeddings: draw them on a line
        axes = np.pad(axes, ((0, 0), (0, 1)))
    px, py = (x - centre) @ axes, (y - centre) @ axes
    name_a, name_b = analysis.data.names
    for k in range(min(len(px), 100)):  # a few pair lines show the matching, more only clutter
        ax.plot([px[k, 0], py[k, 0]], [px[k, 1], py[k, 1]], color="0.85", lw=0.5, zorder=0)
    ax.scatter(px[:, 0], px[:, 1], s=6, label=name_a, color="tab:red")
    ax.scatter(py[:, 0], py[:, 1], s=6, label=name_b, color="tab:blue")
    ca = (analysis.report.centroid_a - centre) @ axes
    cb = (analysis.report.centroid_b - centre) @ axes
    ax.annotate("", xy=tuple(ca), xytext=tuple(cb), arrowprops={"arrowstyle": "->", "lw": 2})
    gap = analysis.report.metrics["gap_norm"]
    ax.set_title(f"PCA of both modalities; gap vector |Δ| = {gap:.3f}")
    ax.set_xlabel("principal axis 1")
    ax.set_ylabel("principal axis 2")
    ax.legend(loc="best")


def _draw_shift(ax: Any, analysis: Analysis) -> None:
    points = analysis.report.shift
    lams = [p.lam for p in points]
    ax.plot(lams, [p.gap_norm for p in points], "o-", label="gap_norm", color="black")
    ax.set_xlabel("λ (shift along the gap direction)")
    ax.set_ylabel("gap_norm")
    other = ax.twinx()
    other.plot(lams, [p.loss for p in points], "s--", color="tab:green", label="loss")
    other.set_ylabel("contrastive loss")
    ax.set_title("Gap shift curve")
    lines = ax.get_lines() + other.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="upper center")
