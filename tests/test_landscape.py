"""The landscape trainer (Figure 3): the layouts, the reported curve, and the paper's finding."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.report.build import landscape_figure
from orchestrator.store.views import TrialView
from trainers.config import LandscapeConfig
from trainers.landscape import image_points, run_landscape, text_points
from trainers.reports import LANDSCAPE_METRICS


def minimum_gap(**settings: object) -> float:
    result = run_landscape(LandscapeConfig.model_validate(settings), lambda s, m: None)
    return result["min_loss_gap"]


def test_layouts_are_unit_points() -> None:
    equator = image_points(LandscapeConfig(layout="equator"))
    rings = image_points(LandscapeConfig(layout="rings", ring_height=0.4))
    assert equator.shape == (6, 3) and rings.shape == (9, 3)
    assert np.allclose(np.linalg.norm(rings, axis=1), 1.0)
    assert np.degrees(np.arccos(equator[0] @ equator[1])) == pytest.approx(20.0)
    assert sorted(set(np.round(rings[:, 2], 6))) == [-0.4, 0.4]


def test_text_starts_on_its_image_and_moves_north() -> None:
    config = LandscapeConfig(mismatched=False)
    images = image_points(config)
    assert np.allclose(text_points(images, config, 0.0), images)
    assert (text_points(images, config, 1.0)[:, 2] > 0.5).all()


def test_reports_each_shift_and_the_minimum_last() -> None:
    reports: list[tuple[int, dict[str, float]]] = []
    run_landscape(LandscapeConfig(shifts=5), lambda s, m: reports.append((s, m)))
    assert [s for s, _ in reports] == [0, 1, 2, 3, 4]
    assert "min_loss_gap" in reports[-1][1] and "min_loss_gap" not in reports[0][1]
    assert {name for _, m in reports for name in m} == set(LANDSCAPE_METRICS)


@pytest.mark.parametrize("layout", ["equator", "rings"])
def test_mismatched_pairs_move_the_minimum_off_zero_gap_at_low_temperature(layout: str) -> None:
    assert minimum_gap(layout=layout, mismatched=True, temperature=0.01) > 0.5
    assert minimum_gap(layout=layout, mismatched=False, temperature=0.01) < 1e-9
    assert minimum_gap(layout=layout, mismatched=True, temperature=1.0) < 1e-9


def test_report_draws_one_landscape_panel_per_layout_and_pairing() -> None:
    reports: dict[str, dict[str, list[tuple[int, float]]]] = {}
    trials = []
    for layout in ("equator", "rings"):
        for mismatched in (True, False):
            config = {"layout": layout, "mismatched": mismatched, "temperature": 0.01, "shifts": 9}
            key = f"{layout}-{mismatched}"
            curves: dict[str, list[tuple[int, float]]] = {"loss": [], "gap_norm": []}

            def keep(
                step: int, m: dict[str, float], c: dict[str, list[tuple[int, float]]] = curves
            ) -> None:
                for name in c:
                    c[name].append((step, m[name]))

            run_landscape(LandscapeConfig.model_validate(config), keep)
            reports[key] = curves
            trials.append(_trial_view(key, config))
    fig = landscape_figure(trials, lambda key, metric: reports[key][metric])
    assert fig is not None
    titles = sorted(ax.get_title() for ax in fig.axes)
    assert titles == [
        "equator, all matched",
        "equator, swapped pairs",
        "rings, all matched",
        "rings, swapped pairs",
    ]


def _trial_view(key: str, config: dict[str, object]) -> TrialView:
    return TrialView(
        key=key, name=key, status="completed", attempts=1, config=config, varied={}, metrics={},
        error=None, host=None, node_id=None, mlflow_run_id=None, last_step=None,
        resumed_from_step=None, mlflow_last_step=None, checkpoint_path=None, started_at=None,
        ended_at=None,
    )  # fmt: skip
