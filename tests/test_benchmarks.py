"""Every benchmark runs once at a tiny size through the one entry point, so that none of them can
rot unnoticed. Nothing here checks a time: figures belong in benchmarks/README.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmarks import scaling, sweep_overhead
from benchmarks.readme import BEGIN, END, render_figures, replace_figures
from orchestrator.plan import expand
from orchestrator.spec import load_spec_text
from tests.helpers import NEEDS_POSTGRES

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@NEEDS_POSTGRES  # the results-store benchmark runs on both backends
def test_every_benchmark_runs_at_a_tiny_size() -> None:
    readme = (ROOT / "benchmarks" / "README.md").read_text()
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--tiny"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    records = [json.loads(ln) for ln in result.stdout.splitlines() if ln.startswith("{")]
    sides = {r.get("side") for r in records}
    assert {"bare", "product", "ray_tune", "gapsweep", "each_report", "batched"} <= sides
    assert "stream" in result.stdout and "read_sum" in result.stdout  # gap_metrics' table
    summaries = [r["summary"] for r in records if "summary" in r]
    assert any("ratio_product_vs_bare" in s for s in summaries)
    assert any("gapsweep_vs_ray_tune" in s for s in summaries)
    assert {r.get("table") for r in records} >= {"data"}
    stores = [r for r in records if "backend" in r]
    assert [r["backend"] for r in stores] == ["sqlite", "postgresql"]
    assert all(r["metric_rows"] == 100 * 5 * 5 for r in stores)
    assert any(r.get("size") == "vit_b32_tiny" for r in records)
    assert (ROOT / "benchmarks" / "README.md").read_text() == readme  # --tiny leaves it alone


def test_the_figures_replace_only_their_own_section() -> None:
    before = f"# Benchmarks\n\nprose\n\n{BEGIN}\nold figures\n{END}\n\nmore prose\n"
    machine = dict.fromkeys(("date", "cpu", "python", "torch", "ray", "mlflow"), "x")
    machine |= {"sqlalchemy": "x", "numpy": "x"}
    figures = render_figures(machine, [], 60.0)
    after = replace_figures(before, figures)
    assert after.startswith("# Benchmarks\n\nprose\n\n") and after.endswith("\n\nmore prose\n")
    assert "old figures" not in after and "1.0 minutes" in after
    assert replace_figures(after, figures) == after


@pytest.mark.parametrize(
    ("spec", "trials"),
    [
        (scaling.sweep_spec(1, 4.0, tiny=False), 18),  # 6 temperatures x 3 seeds, no stage
        (scaling.sweep_spec(2, None, tiny=True), 2),  # 2 temperatures
        (yaml.safe_load(sweep_overhead.write_spec_text(sweep_overhead.WORKLOAD, 8)), 8),
    ],
)
def test_the_sweeps_the_benchmarks_submit_are_valid(
    spec: dict[str, object], trials: int, tmp_path: Path
) -> None:
    # The tiny run leaves the concurrency sweeps out for time; their specs are checked here.
    plan = expand(load_spec_text(yaml.safe_dump(spec), tmp_path / "spec.yaml"))
    assert len(plan.trials) == trials
