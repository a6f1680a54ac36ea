"""What a report costs the driver in SQL: the statements the results store runs per trial
report, counted with a SQLAlchemy event hook in a real `orchestrator submit` (real Ray, real
MLflow in a SQLite file, the store in another), as the difference between two sweeps that
differ only in how many reports each trial sends."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import cli_env

# Before the store cached its row ids and the mirror logged what the recorder hands it, a
# report cost about 15 statements (the recorder's write, then the mirror reading it back). Now
# it is the recorder's three (stale values out, new ones in, last_step) and the mirror's
# watermark, each of the two transactions opened by the lease's fence check (store/lease.py).
MAX_STATEMENTS_PER_REPORT = 6
TRIALS = 2
COUNTING_DRIVER = """
import json, sys
from sqlalchemy import Engine, event
out, url, *args = sys.argv[1:]
count = [0]

def counted(conn, cursor, statement, parameters, context, executemany):
    if str(conn.engine.url) == url:
        count[0] += 1

event.listen(Engine, "before_cursor_execute", counted)
from orchestrator.cli import app
try:
    app(args, standalone_mode=False)
finally:
    open(out, "w").write(json.dumps(count[0]))
"""


def statements_of_a_sweep(
    folder: Path, write_spec: Callable[..., Path], shifts: int, record_every_s: str
) -> int:
    name = f"count{shifts}-{record_every_s.replace('.', '_')}"
    spec = write_spec(
        {
            "name": name,
            "trainer": "landscape",
            "base": {"shifts": shifts},
            "parameters": {"temperature": {"grid": [0.01, 0.1][:TRIALS]}},
            "metric": {"name": "min_loss_gap", "mode": "max"},
        },
        name=f"{name}.yaml",
    )
    out = folder / f"{name}.json"
    url = "sqlite:///results.db"
    command = [sys.executable, "-c", COUNTING_DRIVER, str(out), url, "submit", str(spec)]
    result = subprocess.run(
        command,
        cwd=folder,
        env=cli_env(GAPSWEEP_RECORD_EVERY_S=record_every_s),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    count: int = json.loads(out.read_text())
    return count


@pytest.mark.slow
def test_a_report_costs_the_driver_a_few_statements(
    tmp_path: Path, write_spec: Callable[..., Path]
) -> None:
    """Each report written as it comes (GAPSWEEP_RECORD_EVERY_S=0)."""
    few = statements_of_a_sweep(tmp_path, write_spec, 5, "0")
    many = statements_of_a_sweep(tmp_path, write_spec, 25, "0")
    per_report = (many - few) / (TRIALS * (25 - 5))
    assert 0 < few < many
    assert per_report <= MAX_STATEMENTS_PER_REPORT, per_report


@pytest.mark.slow
def test_batched_reports_cost_the_driver_well_under_a_statement_each(
    tmp_path: Path, write_spec: Callable[..., Path]
) -> None:
    """Reports gathered (the default 0.25 s): a trial's reports since the last write are three
    statements together, so four times the reports cost next to nothing more."""
    few = statements_of_a_sweep(tmp_path, write_spec, 5, "0.25")
    many = statements_of_a_sweep(tmp_path, write_spec, 25, "0.25")
    per_report = (many - few) / (TRIALS * (25 - 5))
    assert few > 0 and per_report <= 0.5, (few, many)
