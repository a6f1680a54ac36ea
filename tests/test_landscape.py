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


def latitude_loss(phi: float, temperature: float) -> float:
    """The equator layout's loss with the texts at latitude phi, written out independently:
    six images 20 degrees apart on the equator, captions of pairs 0 and 1 swapped."""
    theta = np.radians(20.0 * np.arange(6))
    images = np.stack([np.cos(theta), np.sin(theta), np.zeros(6)], axis=1)
    swapped = theta[[1, 0, 2, 3, 4, 5]]
    texts = np.stack(
        [np.cos(phi) * np.cos(swapped), np.cos(phi) * np.sin(swapped), np.full(6, np.sin(phi))],
        axis=1,
    )
    logits = images @ texts.T / temperature
    diag = np.diag(logits)
    rows = np.log(np.exp(logits).sum(axis=1)) - diag
    cols = np.log(np.exp(logits).sum(axis=0)) - diag
    return float((rows.mean() + cols.mean()) / 2)


def test_the_equator_minimum_is_where_scipy_finds_it_and_inside_the_range() -> None:
    from scipy.optimize import minimize_scalar

    found = minimize_scalar(
        latitude_loss, bounds=(0.0, np.pi / 2 - 1e-6), args=(0.01,), method="bounded"
    )
    assert np.degrees(found.x) == pytest.approx(77.7, abs=0.2)  # the paper's curve, read off
    fine = LandscapeConfig(temperature=0.01, max_shift=10.0, shifts=2001)
    result = run_landscape(fine, lambda s, m: None)
    assert result["min_loss_shift"] == pytest.approx(np.tan(found.x), abs=0.01)
    assert result["min_loss"] == pytest.approx(found.fun, rel=1e-6)
    assert result["min_at_edge"] == 0.0
    cut = run_landscape(LandscapeConfig(temperature=0.01, max_shift=3.0), lambda s, m: None)
    assert cut["min_at_edge"] == 1.0  # the old range stopped short of it, and now says so


def test_the_mirrored_ring_starts_at_twice_its_height_and_closes_at_two_heights() -> None:
    height = 0.5
    config = LandscapeConfig(layout="mirrored_ring", ring_height=height, max_shift=1.0, shifts=3)
    images = image_points(config)
    assert np.allclose(images[:, 2], height) and np.allclose(np.linalg.norm(images, axis=1), 1)
    angles = np.degrees(np.arctan2(images[:, 1], images[:, 0])) % 360
    assert angles[-1] == pytest.approx(10.0)  # the moved pair, beside pair 0
    mirrored = images * np.array([1.0, 1.0, -1.0])
    assert np.allclose(text_points(images, config, 0.0), mirrored)
    assert np.allclose(text_points(images, config, 2 * height), images)
    rows: list[dict[str, float]] = []
    run_landscape(config, lambda s, m: rows.append(m))
    halfway = mirrored + np.array([0.0, 0.0, height])
    halfway /= np.linalg.norm(halfway, axis=1, keepdims=True)
    gaps = [2 * height, np.linalg.norm(images.mean(axis=0) - halfway.mean(axis=0)), 0.0]
    assert [r["gap_norm"] for r in rows] == pytest.approx(gaps, abs=1e-9)
    even = image_points(LandscapeConfig(layout="mirrored_ring", mismatched=False))
    assert np.degrees(np.arctan2(even[-1, 1], even[-1, 0])) % 360 == pytest.approx(320.0)
