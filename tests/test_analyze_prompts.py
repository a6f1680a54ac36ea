"""`analyze --class-prompts` (CLIP's zero-shot on embeddings computed elsewhere) and
`--direction-from` (the shift along another data set's gap), checked against NumPy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from orchestrator.cli import app


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def made(seed: int, offset: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Images, captions, labels and class prompts of five classes, a gap along axis 0."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(5, 12)))
    gap = np.zeros(12)
    gap[0] = offset
    labels = rng.integers(0, 5, 200)
    a = unit(centres[labels] + gap + 0.8 * rng.normal(size=(200, 12)))
    b = unit(centres[labels] - gap + 0.8 * rng.normal(size=(200, 12)))
    prompts = unit(centres - gap + 0.2 * rng.normal(size=(5, 12)))
    return a, b, labels, prompts


def numpy_zero_shot(
    a: np.ndarray, prompts: np.ndarray, labels: np.ndarray, lam: float, g: np.ndarray
) -> float:
    images = unit(a - lam / 2 * g)
    moved = unit(prompts + lam / 2 * g)
    return float(np.mean(np.argmax(images @ moved.T, axis=1) == labels))


def run(tmp_path: Path, *extra: str) -> dict[str, object]:
    result = CliRunner().invoke(
        app, ["analyze", str(tmp_path / "pairs.npy"), "--json", "--shift", "-0.5,0,0.5", *extra]
    )
    assert result.exit_code == 0, result.output
    out: dict[str, object] = json.loads(result.stdout)
    return out


def test_class_prompts_give_clips_zero_shot_beside_the_centroid_classifier(
    tmp_path: Path,
) -> None:
    a, b, labels, prompts = made(0, 0.6)
    np.save(tmp_path / "pairs.npy", np.stack([a, b]))
    np.save(tmp_path / "labels.npy", labels)
    np.save(tmp_path / "prompts.npy", prompts)
    files = {"--labels": "labels.npy", "--class-prompts": "prompts.npy"}
    out = run(tmp_path, *(arg for k, v in files.items() for arg in (k, str(tmp_path / v))))
    g = unit(a.mean(axis=0) - b.mean(axis=0))
    for point in out["shift"]:  # type: ignore[attr-defined]
        lam = point["lambda"]
        assert point["zero_shot_acc"] == pytest.approx(numpy_zero_shot(a, prompts, labels, lam, g))
        assert 0.0 <= point["centroid_acc"] <= 1.0


def test_the_shift_can_follow_another_data_sets_gap(tmp_path: Path) -> None:
    a, b, labels, prompts = made(1, 0.6)
    np.save(tmp_path / "pairs.npy", np.stack([a, b]))
    other_a, other_b, _, _ = made(2, 0.9)
    other_a[:, 1] += 0.5  # a gap that points elsewhere too
    np.save(tmp_path / "other.npy", np.stack([other_a, other_b]))
    np.save(tmp_path / "labels.npy", labels)
    np.save(tmp_path / "prompts.npy", prompts)
    files = {
        "--labels": "labels.npy",
        "--class-prompts": "prompts.npy",
        "--direction-from": "other.npy",
    }
    out = run(tmp_path, *(arg for k, v in files.items() for arg in (k, str(tmp_path / v))))
    g = unit(unit(other_a).mean(axis=0) - unit(other_b).mean(axis=0))
    for point in out["shift"]:  # type: ignore[attr-defined]
        lam = point["lambda"]
        assert point["zero_shot_acc"] == pytest.approx(numpy_zero_shot(a, prompts, labels, lam, g))
        moved_a, moved_b = unit(a - lam / 2 * g), unit(b + lam / 2 * g)
        gap = np.linalg.norm(moved_a.mean(axis=0) - moved_b.mean(axis=0))
        assert point["gap_norm"] == pytest.approx(gap)


@pytest.mark.parametrize(
    ("prompts_shape", "labels", "expected"),
    [
        ((5, 7), [0, 1], "shape (5, 7); expected (classes, 12)"),
        ((2, 12), [0, 4], "2 prompts, but --labels has class 4"),
        ((5, 12), None, "needs --labels"),
    ],
)
def test_bad_prompts_are_one_line(
    tmp_path: Path, prompts_shape: tuple[int, int], labels: list[int] | None, expected: str
) -> None:
    a, b, _, _ = made(3, 0.6)
    np.save(tmp_path / "pairs.npy", np.stack([a, b]))
    np.save(tmp_path / "prompts.npy", np.ones(prompts_shape))
    args = [
        "analyze",
        str(tmp_path / "pairs.npy"),
        "--class-prompts",
        str(tmp_path / "prompts.npy"),
    ]
    if labels is not None:
        np.save(tmp_path / "labels.npy", np.resize(np.array(labels), 200))
        args += ["--labels", str(tmp_path / "labels.npy")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert expected in result.output
