"""`orchestrator report SWEEP`: one self-contained HTML page (figures embedded, PNGs beside it)
built from the results store, with the PNGs also logged to the sweep's MLflow parent run.

The figures that fit the sweep are chosen from what its trials hold: a metric versus the swept
setting, series per trial, the gap shift curve and 2-D maps where final embeddings were saved
(checkpoint.EMBEDDINGS_FILE beside each trial's final checkpoint).
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from orchestrator.errors import InputError
from orchestrator.pareto import Objective, objectives_of
from orchestrator.plan import format_value
from orchestrator.report.figures import (
    Series,
    centroid_similarity,
    metric_versus_setting,
    series_per_trial,
    shift_figure,
)
from orchestrator.report.legacy_names import metric_held, todays_names
from orchestrator.report.pairs import bars_by_category, categorical_setting, maps_by_category
from orchestrator.report.pareto import pareto_figure
from orchestrator.report.read import version_trials
from orchestrator.store.repository import ResultsStore
from orchestrator.store.views import SweepView, TrialView
from orchestrator.tracking.artifacts import modality_map
from trainers.checkpoint import EMBEDDINGS_FILE, load_embeddings
from trainers.errors import DataError

TABLE_METRICS = (
    "gap_norm", "cone_cosine_a", "cone_cosine_b", "paired_cosine", "loss", "temperature",
    "zero_shot_acc", "centroid_acc", "recall_at_1_a2b", "class_recall_at_1_a2b",
    "worst_group_acc", "shift_best_lambda",
    "shift_zero_shot_gain", "shift_centroid_gain", "shift_heldout_gain", "min_loss_gap",
    "min_loss_shift",
)  # fmt: skip
SHIFT_LAMBDAS = (-1.0, -0.75, -0.5, -0.25, -0.1, 0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
MAP_TRIALS = 4  # 2-D maps drawn when no trials are chosen
# A whole tagged config swept as one value ({'name': 'digits', ...}) is named by its tag alone
# in legends, or one long label hides the figure it explains.
_TAGGED_VALUE = re.compile(r"\{'(?:name|kind)': '([^']*)'[^{}]*\}")


@dataclass(frozen=True)
class ReportFigure:
    name: str  # file stem
    title: str
    png: bytes


@dataclass(frozen=True)
class Report:
    page: Path
    pngs: list[Path]
    notes: tuple[str, ...] = ()  # old metric names read as new ones (legacy_names.py)


def build_report(
    store: ResultsStore,
    sweep: str,
    out: Path,
    map_trials: list[str] | None = None,
    version: int | None = None,
) -> Report:
    """Write `out/index.html` and `out/<figure>.png` for version `version` of the sweep (the
    latest when None); returns their paths."""
    stored, of_version, said = version_trials(store, sweep, version)
    read = todays_names(of_version)
    trials = read.trials
    metric, asked = metric_held(stored.metric_name, trials)
    view = replace(stored, metric_name=metric)
    notes = (*said, *read.notes, *([asked] if asked else []))
    chosen = store.versions.read(sweep, version)
    spec_text = store.stored_spec(sweep)[0] if chosen is None else chosen.spec_text
    objectives = objectives_of(spec_text, (view.metric_name, view.metric_mode))
    figures = collect_figures(store, view, trials, map_trials or [], objectives)
    out.mkdir(parents=True, exist_ok=True)
    pngs = []
    for fig in figures:
        path = out / f"{fig.name}.png"
        path.write_bytes(fig.png)
        pngs.append(path)
    page = out / "index.html"
    text = render_html(view, spec_text, trials, figures, notes)
    page.write_text(text, encoding="utf-8")
    return Report(page=page, pngs=pngs, notes=notes)


def collect_figures(
    store: ResultsStore,
    view: SweepView,
    trials: list[TrialView],
    map_trials: list[str],
    objectives: list[Objective] | None = None,
) -> list[ReportFigure]:
    def series(key: str, name: str) -> list[tuple[int, float]]:
        return store.metric_series(view.name, key, name)

    metric = view.metric_name
    candidates: list[tuple[str, str, Figure | None]] = [
        (f"{metric}_vs_setting", f"final {metric} versus the swept setting",
         metric_versus_setting(trials, metric)),
    ]  # fmt: skip
    if metric != "gap_norm":
        candidates.append(
            ("gap_vs_setting", "final gap_norm versus the swept setting",
             metric_versus_setting(trials, "gap_norm"))
        )  # fmt: skip
    if any("min_loss_gap" in t.metrics for t in trials):
        candidates.append(
            ("landscape", "loss versus gap (Figure 3), one panel per layout",
             landscape_figure(trials, series))
        )  # fmt: skip
    else:
        candidates.append(
            ("gap_during_training", "gap_norm during training",
             series_per_trial(trials, series, "gap_norm"))
        )  # fmt: skip
    if objectives and len(objectives) > 1:
        candidates.append(
            ("pareto", "the Pareto front of the first two objectives (dominated trials grey)",
             pareto_figure(trials, objectives))
        )  # fmt: skip
    embeddings = trial_embeddings(trials)
    candidates.append(
        ("shift", "zero-shot accuracy and loss versus gap shift (Table 1)",
         shift_figure(shift_curves(trials, embeddings)))
    )  # fmt: skip
    candidates += _category_and_map_figures(trials, embeddings, metric, map_trials)
    return [ReportFigure(name, title, _png(fig)) for name, title, fig in candidates if fig]


def _category_and_map_figures(
    trials: list[TrialView],
    embeddings: dict[str, dict[str, np.ndarray]],
    metric: str,
    map_trials: list[str],
) -> list[tuple[str, str, Figure | None]]:
    """Bars per category of a categorical setting, the 2-D maps, and the cone centroids."""
    candidates: list[tuple[str, str, Figure | None]] = []
    category = categorical_setting(trials)
    if category is not None:
        for name in dict.fromkeys((metric, "gap_norm")):
            candidates.append(
                (f"{name}_by_{category}", f"final {name} per {category}",
                 bars_by_category(trials, name))
            )  # fmt: skip
    by_category = maps_by_category(trials, embeddings) if not map_trials else None
    if by_category is not None:
        title = f"both modalities in 2-D, per {category}"
        candidates.append(("modality_map", title, by_category))
    else:
        chosen = _chosen(trials, embeddings, map_trials)
        candidates.append(("modality_map", "both modalities in 2-D", modality_map(chosen)))
    if not settings_differ(trials):
        candidates.append(
            ("cone_centroids", "tower-a cone centroids across trials (Figure 2c)",
             centroid_similarity(embeddings))
        )  # fmt: skip
    return candidates


def trial_embeddings(trials: list[TrialView]) -> dict[str, dict[str, np.ndarray]]:
    """Final embeddings by trial name, for the completed trials that saved them."""
    found = {}
    for t in trials:
        if t.status != "completed" or not t.checkpoint_path:
            continue
        if not (Path(t.checkpoint_path) / EMBEDDINGS_FILE).is_file():
            continue
        try:
            found[t.name] = load_embeddings(Path(t.checkpoint_path))
        except DataError:
            continue  # a damaged file only loses its figure, not the report
    return found


def shift_curves(
    trials: list[TrialView], embeddings: dict[str, dict[str, np.ndarray]]
) -> dict[str, list[dict[str, float]]]:
    from trainers.evaluate_shift import shift_table

    curves = {}
    for t in trials:
        arrays = embeddings.get(t.name)
        lambdas = tuple(t.config.get("eval", {}).get("shift_lambdas") or ())
        if arrays is None or not lambdas or "labels" not in arrays:
            continue
        temperature = t.metrics.get("temperature", 0.01)
        curves[legend_label(t.name)] = shift_table(arrays, lambdas, temperature)
    return curves


def landscape_figure(trials: list[TrialView], series: Series) -> Figure | None:
    """Figure 3: one panel per layout and pairing, one curve per temperature, loss against gap.

    Each curve is rescaled to [0, 1] (its own minimum and maximum): the losses at τ = 1/100 and
    τ = 1 differ twentyfold, and what the figure must show is where each minimum sits (dots).
    """
    panels: dict[str, list[TrialView]] = {}
    for t in trials:
        pairs = "swapped pairs" if t.config.get("mismatched") else "all matched"
        panels.setdefault(f"{t.config.get('layout')}, {pairs}", []).append(t)
    fig = Figure(figsize=(4 * len(panels), 3.6))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    drawn = 0
    for ax, (title, members) in zip(axes, sorted(panels.items()), strict=True):
        for t in sorted(members, key=lambda m: -float(m.config.get("temperature", 0))):
            losses, gaps = dict(series(t.key, "loss")), dict(series(t.key, "gap_norm"))
            steps = sorted(s for s in losses if s in gaps)
            if len(steps) < 2:
                continue
            x, y = np.array([gaps[s] for s in steps]), np.array([losses[s] for s in steps])
            y = (y - y.min()) / max(float(np.ptp(y)), 1e-12)
            line = ax.plot(x, y, lw=1.2, label=f"τ = {t.config.get('temperature')}")[0]
            ax.plot(x[y.argmin()], 0.0, "o", color=line.get_color())
            drawn += 1
        ax.set(title=title, xlabel="gap_norm", ylabel="loss, rescaled per curve")
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig if drawn else None


def legend_label(trial_name: str) -> str:
    """A trial's name for a legend: swept tagged configs shortened to their tag."""
    return _TAGGED_VALUE.sub(r"\1", trial_name)


def settings_differ(trials: list[TrialView]) -> bool:
    from orchestrator.report.figures import settings_of

    return bool(settings_of(trials))


def render_html(
    view: SweepView,
    spec: str,
    trials: list[TrialView],
    figures: list[ReportFigure],
    notes: tuple[str, ...] = (),
) -> str:
    done = sum(t.status == "completed" for t in trials)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>gapsweep report: {html.escape(view.name)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;"
        "padding:2px 6px;text-align:right}pre{background:#f6f6f6;padding:1em}</style>",
        f"</head><body><h1>sweep {html.escape(view.name)}</h1>",
        f"<p>{done} of {len(trials)} trials completed; metric {view.metric_name} "
        f"({view.metric_mode}).</p>",
        *(f"<p>note: {html.escape(note)}</p>" for note in notes),
        "<h2>figures</h2>",
    ]
    for fig in figures:
        data = base64.b64encode(fig.png).decode()
        parts.append(f"<h3>{html.escape(fig.title)}</h3><img src='data:image/png;base64,{data}'>")
    parts += ["<h2>results</h2>", results_table(trials), "<h2>spec</h2>"]
    parts += [f"<pre>{html.escape(spec)}</pre></body></html>"]
    return "\n".join(parts)


def results_table(trials: list[TrialView]) -> str:
    metrics = [m for m in TABLE_METRICS if any(m in t.metrics for t in trials)]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["trial", "key", "status", *metrics])
    rows = []
    for t in trials:
        cells = [t.name, t.key, t.status] + [
            format_value(t.metrics[m]) if m in t.metrics else "" for m in metrics
        ]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def log_to_mlflow(tracking_uri: str, view: SweepView, pngs: list[Path]) -> bool:
    """Log the PNGs as artifacts of the sweep's parent run; False when it has none."""
    from orchestrator.tracking.client import MlflowTracker

    if view.mlflow_run_id is None:
        return False
    MlflowTracker(tracking_uri).log_files(view.mlflow_run_id, pngs, folder="report")
    return True


def write_report(
    sweep: str,
    out: Path,
    results_db: str,
    mlflow_uri: str | None,
    trials: list[str] | None = None,
    note: Callable[[str], None] | None = None,
    version: int | None = None,
) -> tuple[Path, bool]:
    """Build the report of a stored sweep and log its PNGs to the sweep's MLflow parent run
    (unless `mlflow_uri` is None); returns the page and whether MLflow got the PNGs. `note`
    is told where old metric names were read as new ones."""
    with ResultsStore.open_existing(results_db) as store:
        built = build_report(store, sweep, out, trials, version)
        view = store.get_sweep(sweep)
    if note is not None:
        for line in built.notes:
            note(line)
    if view is None or mlflow_uri is None:
        return built.page, False
    return built.page, log_to_mlflow(mlflow_uri, view, built.pngs)


def _chosen(
    trials: list[TrialView], embeddings: dict[str, dict[str, np.ndarray]], keys: list[str]
) -> dict[str, dict[str, np.ndarray]]:
    if not keys:
        return {legend_label(n): e for n, e in list(embeddings.items())[:MAP_TRIALS]}
    names = {t.key: t.name for t in trials}
    unknown = [k for k in keys if k not in names]
    if unknown:
        raise InputError(f"--trial {', '.join(unknown)}: no such trial key in the sweep")
    return {legend_label(names[k]): embeddings[names[k]] for k in keys if names[k] in embeddings}


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()
