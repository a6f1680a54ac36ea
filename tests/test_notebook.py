"""docs/notebook.ipynb executed cell by cell in a real Jupyter kernel (nbclient), in a fresh
working directory as a user's: the quickstart sweep runs through orchestrator.api on a local
Ray, and the notebook's DataFrame holds its four trials."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from tests.helpers import SERVICE_ENV

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "notebook.ipynb"
WIDGET = "application/vnd.jupyter.widget-view+json"


def run_notebook(workdir: Path) -> tuple[Any, list[dict[str, Any]]]:
    """The notebook after running each cell, and the records of its `df` read from the kernel."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": workdir}}
    )
    probe = nbformat.v4.new_code_cell("print(df.to_json(orient='records'))")
    with client.setup_kernel():
        for index, cell in enumerate(notebook.cells):
            client.execute_cell(cell, index)  # raises CellExecutionError on an error
        notebook.cells.append(probe)
        client.execute_cell(probe, len(notebook.cells) - 1)
    return notebook, json.loads(_text(probe))


def _text(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def _kinds(cell: Any) -> set[str]:
    return {kind for o in cell.outputs for kind in o.get("data", {})}


def test_the_notebook_runs_the_quickstart_and_plots_gap_against_temperature(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sweeps").mkdir()
    shutil.copy(ROOT / "sweeps" / "quickstart.yaml", tmp_path / "sweeps")
    for name in SERVICE_ENV:
        monkeypatch.delenv(name, raising=False)
    notebook, records = run_notebook(tmp_path)

    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    submit = next(c for c in code if "api.submit(" in c.source)
    assert "quickstart: ran 4, skipped 0" in _text(submit)
    assert WIDGET in _kinds(submit), "progress=True drew no live table"
    assert "ipywidgets" not in json.dumps(submit.outputs)  # rich's "install ipywidgets" warning
    plots = [c for c in code if "plt.show()" in c.source]
    assert len(plots) == 2 and all("image/png" in _kinds(c) for c in plots)

    assert len(records) == 4
    assert {r["status"] for r in records} == {"completed"}
    assert sorted((r["loss.temperature"], r["seed"]) for r in records) == [
        (0.01, 0),
        (0.01, 1),
        (1.0, 0),
        (1.0, 1),
    ]
    assert all(math.isfinite(r["gap_norm"]) for r in records)
    assert {r["data.n_train"] for r in records} == {256}  # the notebook's small override
    for made in ("results.db", "mlflow.db", "runs"):
        assert (tmp_path / made).exists(), made
