"""The MLflow UI, as a person sees it: a real `mlflow server`, a two-trial sweep submitted to it
through the CLI, and the experiment's runs page opened in headless Chromium (Debian's, which
tests/run installs; Playwright only drives it and downloads no browser).

MLflow 3's UI opens an experiment in its GenAI view, folds nested runs under their parent and
shows no param column until one is chosen, so the test does what a person does: it opens the
model-training view of the experiment, expands the sweep's parent run, and adds the
`loss.temperature` column with the column selector. A screenshot of the page is left in the
test's folder when a check fails.
"""

from __future__ import annotations

import contextlib
import ctypes.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.helpers import kill_session, mlflow_runs, mlflow_server, start_orchestrator, write_spec

CHROMIUM = Path("/usr/bin/chromium")
SWEEP, PARAM, TEMPERATURES = "ui-temperature", "loss.temperature", ("0.1", "0.5")
UI_TIMEOUT_MS = 60_000  # the UI's bundle is large and the machine may be busy

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"needs {CHROMIUM}: apt-get install -y chromium (tests/run does, as root)",
    ),
    pytest.mark.skipif(
        ctypes.util.find_library("atomic") is None,
        reason="needs libatomic1 for Playwright's driver: apt-get install -y libatomic1"
        " (tests/run does, as root)",
    ),
]


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    """A page of headless Chromium, wide enough for the runs table's added column."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(viewport={"width": 2200, "height": 1000})
            page.set_default_timeout(UI_TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def submit_sweep(workdir: Path, tracking_uri: str, base: dict[str, Any]) -> None:
    spec = {
        "name": SWEEP,
        "base": base,
        "parameters": {PARAM: {"grid": [float(t) for t in TEMPERATURES]}},
        "metric": {"name": "gap_norm", "mode": "min"},
    }
    args = [
        "submit", str(write_spec(workdir / "spec.yaml", spec)), "--mlflow-uri", tracking_uri,
        "--results-db", f"sqlite:///{workdir / 'results.db'}", "--storage", str(workdir / "runs"),
    ]  # fmt: skip
    submit = start_orchestrator(*args, cwd=workdir)
    try:
        out, err = submit.communicate(timeout=300)
    finally:
        kill_session(submit.pid)  # the local Ray it started, should any of it outlive it
        submit.wait(timeout=30)
    assert submit.returncode == 0, out[-5000:] + err[-5000:]


def show_sweep_with_param_column(page: Page, tracking_uri: str, experiment_id: str) -> None:
    """Open the experiment's runs table, unfold the sweep's parent run, add the param column."""
    runs_page = f"{tracking_uri}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    page.goto(runs_page)
    parent_link = page.get_by_role("link", name=SWEEP, exact=True)
    page.get_by_role("gridcell").filter(has=parent_link).get_by_role("button").click()
    page.get_by_role("button", name="Columns").click()
    page.get_by_placeholder("Search columns").fill(PARAM)
    page.get_by_role("dialog").get_by_text(PARAM, exact=True).click()
    page.keyboard.press("Escape")


def check_children_and_param_column(page: Page, children: dict[str, str]) -> None:
    """Each child run's row shows its name and, under the param's header, its temperature."""
    # The header cell that names the column (a label inside it has the role too).
    header = page.get_by_role("columnheader", name=PARAM, exact=True).and_(page.locator("[col-id]"))
    expect(header).to_be_in_viewport(timeout=UI_TIMEOUT_MS)
    column = header.get_attribute("col-id")
    assert column, "the param's column header has no column id"
    for temperature in TEMPERATURES:
        name = f"temperature={temperature}"
        row = page.locator(f'[role=row][row-id="{children[name]}"]')
        expect(row.get_by_role("link", name=name, exact=True)).to_be_in_viewport()
        value = row.locator(f'[role=gridcell][col-id="{column}"]')
        expect(value).to_have_text(temperature)
        expect(value).to_be_in_viewport()


def test_the_ui_shows_the_sweeps_child_runs_and_their_param_column(
    tmp_path: Path, tiny_base: dict[str, Any], page: Page
) -> None:
    with mlflow_server(tmp_path) as tracking_uri:
        submit_sweep(tmp_path, tracking_uri, tiny_base)
        _, runs = mlflow_runs(tracking_uri, SWEEP)
        children = {
            r.info.run_name: r.info.run_id for r in runs if "mlflow.parentRunId" in r.data.tags
        }
        assert sorted(children) == [f"temperature={t}" for t in TEMPERATURES]
        screenshot = tmp_path / "mlflow-ui.png"
        try:
            show_sweep_with_param_column(page, tracking_uri, runs[0].info.experiment_id)
            check_children_and_param_column(page, children)
        except BaseException as exc:
            with contextlib.suppress(Exception):  # a dead page must not hide the failure
                page.screenshot(path=screenshot, full_page=True)
                exc.add_note(f"screenshot of the page: {screenshot}")
            raise
