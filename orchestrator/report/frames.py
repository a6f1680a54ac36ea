"""A stored sweep as pandas DataFrames (orchestrator.api) and as Parquet files (`results` and
`series --format parquet`). pandas and pyarrow are the `frames` extra: each is imported only
when a frame is asked for, and its absence is one line of bad input, never a traceback."""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.errors import InputError
from orchestrator.plan import flatten

if TYPE_CHECKING:
    import pandas as pd

    from orchestrator.report.read import SeriesPoint
    from orchestrator.store.views import TrialView

INSTALL = "pip install 'gapsweep[frames]'"
TRIAL_COLUMNS = ("key", "name", "status", "attempts")
SERIES_COLUMNS = ("key", "name", "step", "value")


def require(parquet: bool = False) -> None:
    """An InputError naming the missing package and how to install it: pandas for any frame,
    pyarrow as well for Parquet."""
    wanted = ("pandas", "pyarrow") if parquet else ("pandas",)
    missing = [name for name in wanted if not _importable(name)]
    if missing:
        what = "Parquet output" if parquet else "a DataFrame"
        raise InputError(f"{what} needs {' and '.join(missing)}, not installed here: {INSTALL}")


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def trials_frame(trials: Sequence[TrialView]) -> pd.DataFrame:
    """One row per trial: key, name, status, attempts, every setting by its dotted path, every
    final metric (a non-finite one as NaN or ±inf), then the error. `attrs` names the settings
    columns, those the sweep varies, and the metrics columns."""
    require()
    import pandas as pd

    settings = [flatten(t.config) for t in trials]
    paths = list(dict.fromkeys(p for flat in settings for p in flat))
    metrics = sorted({m for t in trials for m in (*t.metrics, *t.non_finite)})
    rows = [
        {
            **{c: getattr(t, c) for c in TRIAL_COLUMNS},
            **{p: flat.get(p) for p in paths},
            **{m: _final(t, m) for m in metrics},
            "error": t.error,
        }
        for t, flat in zip(trials, settings, strict=True)
    ]
    frame = pd.DataFrame(rows, columns=[*TRIAL_COLUMNS, *paths, *metrics, "error"])
    varied = list(dict.fromkeys(p for t in trials for p in t.varied))
    frame.attrs.update(settings=paths, varied=varied, metrics=metrics)
    return frame


def _final(trial: TrialView, metric: str) -> float | None:
    if metric in trial.metrics:
        return trial.metrics[metric]
    how = trial.non_finite.get(metric)
    return None if how is None else float(how)


def series_frame(points: Sequence[SeriesPoint], metric: str) -> pd.DataFrame:
    """Long format: one row per (trial, step), with the trial's key and name."""
    require()
    import pandas as pd

    rows = [(p.key, p.name, p.step, p.value) for p in points]
    frame = pd.DataFrame(rows, columns=list(SERIES_COLUMNS))
    frame.attrs.update(metric=metric)
    return frame


def series_records(points: Sequence[SeriesPoint]) -> list[dict[str, Any]]:
    return [{"key": p.key, "name": p.name, "step": p.step, "value": p.value} for p in points]


def records_frame(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    require()
    import pandas as pd

    return pd.DataFrame(list(records))


def write_parquet(frame: pd.DataFrame, out: Path) -> Path:
    """The frame as a Parquet file. A settings column whose values Parquet cannot hold in one
    type (numbers and text mixed, mappings) is written as text: JSON for a list or mapping."""
    require(parquet=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    typed = frame.copy()
    for column in typed.columns:
        if typed[column].dtype == object and _mixed(typed[column].tolist()):
            typed[column] = [None if v is None else _text(v) for v in typed[column]]
    typed.attrs = {}  # pandas writes attrs into the file's metadata: keep the file plain
    typed.to_parquet(out, index=False)
    return out


def _mixed(values: list[Any]) -> bool:
    kinds = {type(v) for v in values if v is not None and not _is_nan(v)}
    return len(kinds) > 1 or dict in kinds


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, dict | list) else str(value)
