"""What `orchestrator analyze` shows: tables at a terminal, one JSON object for a pipe, and a
Figure-1-style picture (both modalities in 2-D with the gap vector, beside the shift curve)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from orchestrator.analyze.inputs import PairedEmbeddings
from orchestrator.errors import InputError
from trainers.gap import METRIC_NAMES, SAMPLED_METRICS, GapReport
from trainers.gap.pairwise import principal_axes


@dataclass(frozen=True)
class Analysis:
    data: PairedEmbeddings
    report: GapReport


def json_text(report: GapReport) -> str:
    """One JSON object: the metric names, `shift`, `intervals` (and `landscape`); NaN is null."""
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
    if report.landscape:
        console.print(_landscape_table(analysis))


def _landscape_table(analysis: Analysis) -> Table:
    table = Table(title="Loss landscape: where the loss is lowest along the shift, per τ")
    for column in ("τ", "λ at the minimum", "gap_norm there", "loss there", "at the range's end"):
        table.add_column(column, justify="right")
    for curve in analysis.report.landscape:
        best = curve.lowest
        edge = "yes: the minimum may lie beyond" if curve.at_edge else "no"
        table.add_row(
            f"{curve.temperature:g}", f"{best.lam:+.2f}", f"{best.gap_norm:.4f}",
            f"{best.loss:.4f}", edge,
        )  # fmt: skip
    return table


def _shift_table(analysis: Analysis) -> Table:
    name_a, name_b = (escape(name) for name in analysis.data.names)
    table = Table(title=f"Gap shift: {name_a} by -λ/2·g, {name_b} by +λ/2·g, renormalised")
    columns = ["λ", "gap_norm", "loss", f"R@1 {name_a}→{name_b}", f"R@1 {name_b}→{name_a}"]
    first = analysis.report.shift[0]
    if first.centroid_acc is not None:
        columns.append("centroid acc")
    if first.zero_shot_acc is not None:
        columns.append("zero-shot acc")
    for column in columns:
        table.add_column(column, justify="right")
    for point in analysis.report.shift:
        cells = [
            point.lam,
            point.gap_norm,
            point.loss,
            point.recall_at_1_a2b,
            point.recall_at_1_b2a,
        ]
        cells += [v for v in (point.centroid_acc, point.zero_shot_acc) if v is not None]
        table.add_row(
            *(f"{value:+.2f}" if k == 0 else f"{value:.4f}" for k, value in enumerate(cells))
        )
    return table


def write_plot(analysis: Analysis, path: Path) -> None:
    """Figure-1-style picture: both modalities in 2-D (PCA) with the gap vector, and the curve."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    panels = 3 if analysis.report.landscape else 2
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 5))
    _draw_embeddings(axes[0], analysis)
    _draw_shift(axes[1], analysis)
    if analysis.report.landscape:
        _draw_landscape(axes[2], analysis)
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


def _draw_landscape(ax: Any, analysis: Analysis) -> None:
    """Loss against λ per τ, each rescaled to [0, 1] (the losses of low τ are many times those
    of high τ), with its minimum marked and the gap there, as the paper's Fig. 3b-d. Against λ
    rather than the gap: past the λ that closes it the gap grows again, and the curve would fold."""
    for curve in analysis.report.landscape:
        lams = np.array([p.lam for p in curve.points])
        losses = np.array([p.loss for p in curve.points])
        span = float(np.ptp(losses)) or 1.0
        best = curve.lowest
        label = f"τ = {curve.temperature:g}: minimum at gap {best.gap_norm:.2f}"
        (line,) = ax.plot(lams, (losses - losses.min()) / span, "-", label=label)
        ax.plot([best.lam], [(best.loss - losses.min()) / span], "o", color=line.get_color())
    ax.set_xlabel("λ (shift along the gap direction; 0 = the embeddings as they are)")
    ax.set_ylabel("contrastive loss, rescaled to [0, 1]")
    ax.set_title("Loss landscape; dots: the minimum per τ")
    ax.legend(loc="best")
