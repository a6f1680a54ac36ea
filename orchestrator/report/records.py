"""A stored trial as one flat record: what `orchestrator results` writes as JSON or CSV."""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Any

from orchestrator.plan import flatten, format_value

if TYPE_CHECKING:  # the store's models import SQLAlchemy, which `results --help` does not need
    from orchestrator.store.views import TrialView


def trial_record(t: TrialView) -> dict[str, Any]:
    return {
        "key": t.key,
        "name": t.name,
        "status": t.status,
        "attempts": t.attempts,
        "resumed_from_step": t.resumed_from_step,
        "params": flatten(t.config),
        "metrics": t.metrics,
        "error": t.error,
        "host": t.host,
        "node": t.node_id,
        "mlflow_run_id": t.mlflow_run_id,
    }


def records_csv(records: list[dict[str, Any]]) -> str:
    params = sorted({p for r in records for p in r["params"]})
    metrics = sorted({m for r in records for m in r["metrics"]})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["key", "name", "status", *params, *metrics])
    for r in records:
        writer.writerow(
            [
                r["key"],
                r["name"],
                r["status"],
                *(format_value(r["params"].get(p, "")) for p in params),
                *(r["metrics"].get(m, "") for m in metrics),
            ]
        )
    return out.getvalue()
