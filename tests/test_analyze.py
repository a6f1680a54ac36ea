"""`orchestrator analyze` end to end through Typer, on the real embeddings and on bad inputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from orchestrator.cli.analyze import analyze
from tests.test_gap_metrics import direct_metrics, features_dir
from trainers.gap import METRIC_NAMES

app = typer.Typer()
app.command()(analyze)
runner = CliRunner()


def clip_path() -> Path:
    path = features_dir() / "features_clip.npy"
    if not path.exists():
        pytest.skip(f"real embeddings not found at {path} (set GAPSWEEP_FEATURES_DIR)")
    return path


def invoke(*args: str | Path) -> Any:
    return runner.invoke(app, [str(arg) for arg in args])


def run_json(*args: str | Path) -> dict[str, Any]:
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def expect_input_error(result: Any, *phrases: str) -> list[str]:
    """Exit 2, every stderr line an `error: ` line, each phrase in one of them, no traceback."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines: list[str] = result.stderr.strip().splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), result.stderr
    assert "Traceback" not in result.output
    for phrase in phrases:
        assert any(phrase in line for line in lines), (phrase, lines)
    return lines


def save_stacked(path: Path, stacked: np.ndarray) -> Path:
    np.save(path, stacked)
    return path


def small_pairs(n: int = 40, d: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, d)) + 1.5
    return np.stack([a, a + rng.standard_normal((n, d)) - 1.5]).astype(np.float32)


# ---------------------------------------------------------------- results


def test_json_on_clip_has_exactly_the_metric_names_and_the_shift_curve() -> None:
    out = run_json(clip_path())
    assert list(out) == [*METRIC_NAMES, "shift", "intervals"]
    assert out["gap_norm"] == pytest.approx(0.82, abs=0.05)
    stacked = np.load(clip_path())
    expected = direct_metrics(stacked[0], stacked[1])
    for name in METRIC_NAMES:
        assert out[name] == pytest.approx(expected[name], rel=1e-9, abs=1e-9), name
    assert [point["lambda"] for point in out["shift"]] == [
        -1,
        -0.75,
        -0.5,
        -0.25,
        0,
        0.25,
        0.5,
        0.75,
        1,
    ]
    assert set(out["shift"][0]) == {
        "lambda",
        "gap_norm",
        "loss",
        "recall_at_1_a2b",
        "recall_at_1_b2a",
    }


def test_table_names_the_modalities() -> None:
    result = invoke(clip_path(), "--names", "image,text", "--shift", "0,0.5")
    assert result.exit_code == 0, result.output
    for text in ["gap_norm", "pc1_variance_ratio", "within image", "R@1 image→text", "+0.50"]:
        assert text in result.stdout
    assert "sample" not in result.stdout


def test_two_files_give_the_stacked_result(tmp_path: Path) -> None:
    stacked = np.load(clip_path())
    np.save(tmp_path / "image.npy", stacked[0])
    np.save(tmp_path / "text.npy", stacked[1])
    assert run_json(tmp_path / "image.npy", tmp_path / "text.npy") == run_json(clip_path())


def test_npz_files_with_key(tmp_path: Path) -> None:
    stacked = small_pairs()
    np.savez(tmp_path / "a.npz", emb=stacked[0], ids=np.arange(40))
    np.savez(tmp_path / "b.npz", emb=stacked[1], ids=np.arange(40))
    np.savez(tmp_path / "both.npz", features=stacked)
    save_stacked(tmp_path / "both.npy", stacked)
    from_npy = run_json(tmp_path / "both.npy")
    assert run_json(tmp_path / "a.npz", tmp_path / "b.npz", "--key", "emb") == from_npy
    assert run_json(tmp_path / "both.npz") == from_npy  # one array: no --key needed


@pytest.mark.parametrize("suffix", [".txt", ".npy"])
def test_labels_add_the_nearest_centroid_accuracy(tmp_path: Path, suffix: str) -> None:
    stacked = small_pairs()
    data = save_stacked(tmp_path / "pairs.npy", stacked)
    labels = np.arange(40) % 4
    path = tmp_path / f"labels{suffix}"
    if suffix == ".npy":
        np.save(path, labels)
    else:
        path.write_text("".join(f"class{k}\n" for k in labels))
    out = run_json(data, "--labels", path, "--shift", "-0.5:0.5:0.5")
    assert [p["lambda"] for p in out["shift"]] == [-0.5, 0.0, 0.5]
    assert all(0.0 <= p["centroid_acc"] <= 1.0 for p in out["shift"])
    assert all("zero_shot_acc" not in p for p in out["shift"])  # no prompts, no zero-shot


def test_sampling_is_noted_on_stderr_and_keeps_stdout_json(tmp_path: Path) -> None:
    result = invoke(clip_path(), "--json", "--sample-size", "100", "--shift", "0")
    assert result.exit_code == 0, result.output
    assert list(json.loads(result.stdout)) == [*METRIC_NAMES, "shift", "intervals"]
    assert "seeded sample of 100 of 500 pairs" in result.stderr
    table = invoke(clip_path(), "--sample-size", "100", "--shift", "0")
    assert "seeded sample of 100 of 500 pairs" in " ".join(table.stdout.split())


def test_plot_writes_a_png(tmp_path: Path) -> None:
    target = tmp_path / "gap.png"
    result = invoke(clip_path(), "--plot", target, "--names", "image,text", "--shift", "-1:1:0.5")
    assert result.exit_code == 0, result.output
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- bad input


def test_missing_file(tmp_path: Path) -> None:
    expect_input_error(invoke(tmp_path / "nope.npy"), "nope.npy: no such file")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.npy").write_bytes(b"")
    expect_input_error(invoke(tmp_path / "empty.npy"), "the file is empty")


def test_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "junk.npy").write_bytes(b"this is not an array at all" * 10)
    expect_input_error(invoke(tmp_path / "junk.npy"), "cannot read it as a .npy or .npz")


def test_truncated_npy(tmp_path: Path) -> None:
    path = save_stacked(tmp_path / "cut.npy", small_pairs())
    path.write_bytes(path.read_bytes()[:300])
    expect_input_error(invoke(path), "cut.npy: cannot read")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    expect_input_error(invoke(tmp_path), "not a file")


@pytest.mark.parametrize("shape", [(40, 6), (3, 40, 6), (2, 40, 6, 1)])
def test_wrong_shape_of_one_file(tmp_path: Path, shape: tuple[int, ...]) -> None:
    path = save_stacked(tmp_path / "x.npy", np.ones(shape, dtype=np.float32))
    expect_input_error(invoke(path), "expected shape (2, N, d)")


def test_no_pairs(tmp_path: Path) -> None:
    path = save_stacked(tmp_path / "x.npy", np.ones((2, 0, 6), dtype=np.float32))
    expect_input_error(invoke(path), "holds 0 pair(s)")


def test_two_files_with_different_n_and_d(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.ones((40, 6)))
    np.save(tmp_path / "b.npy", np.ones((39, 6)))
    np.save(tmp_path / "c.npy", np.ones((40, 7)))
    np.save(tmp_path / "flat.npy", np.ones(40))
    expect_input_error(invoke(tmp_path / "a.npy", tmp_path / "b.npy"), "40 rows", "matched pair")
    expect_input_error(invoke(tmp_path / "a.npy", tmp_path / "c.npy"), "6 dimensions")
    expect_input_error(invoke(tmp_path / "a.npy", tmp_path / "flat.npy"), "expected shape (N, d)")


def test_three_files(tmp_path: Path) -> None:
    path = save_stacked(tmp_path / "x.npy", small_pairs())
    expect_input_error(invoke(path, path, path), "expected FILE or A B, got 3 files")


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_values(tmp_path: Path, value: float) -> None:
    stacked = small_pairs()
    stacked[1, 17, 3] = value
    path = save_stacked(tmp_path / "x.npy", stacked)
    expect_input_error(invoke(path, "--names", "image,text"), "modality text", "row 17")


def test_zero_vectors(tmp_path: Path) -> None:
    stacked = small_pairs()
    stacked[0, 5] = 0.0
    path = save_stacked(tmp_path / "x.npy", stacked)
    expect_input_error(invoke(path), "modality a: 1 row(s) are all-zero vectors", "row 5")


@pytest.mark.parametrize("dtype", [np.complex64, np.bool_, "U3"])
def test_non_real_dtypes(tmp_path: Path, dtype: Any) -> None:
    path = save_stacked(tmp_path / "x.npy", np.ones((2, 5, 3), dtype=dtype))
    expect_input_error(invoke(path), "expected real numbers")


def test_object_arrays_are_not_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    np.save(path, np.array([[{"a": 1}]], dtype=object), allow_pickle=True)
    expect_input_error(invoke(path), "cannot read")


def test_npz_key_problems(tmp_path: Path) -> None:
    stacked = small_pairs()
    np.savez(tmp_path / "a.npz", emb=stacked[0], other=stacked[0])
    np.save(tmp_path / "b.npy", stacked[1])
    expect_input_error(
        invoke(tmp_path / "a.npz", tmp_path / "b.npy"), "holds arrays emb, other; choose one"
    )
    expect_input_error(
        invoke(tmp_path / "a.npz", tmp_path / "b.npy", "--key", "x"),
        "no array named 'x' (it holds: emb, other)",
    )


def test_bad_options_are_all_reported_at_once(tmp_path: Path) -> None:
    lines = expect_input_error(
        invoke(
            tmp_path / "nope.npy",
            "--names",
            "image",
            "--shift",
            "1:-1:0.5",
            "--temperature",
            "0",
            "--sample-size",
            "1",
            "--plot",
            tmp_path / "missing" / "x.png",
        ),
        "--names 'image'",
        "--shift '1:-1:0.5'",
        "--temperature must be a positive number",
        "--sample-size must be at least 2",
        "folder",
        "no such file",
    )
    assert len(lines) == 6


@pytest.mark.parametrize("shift", ["a:b:c", "0:1", "0:1:0", "", "0,,1", "nan", "0:1000:0.5"])
def test_bad_shift_grids(shift: str) -> None:
    expect_input_error(invoke(clip_path(), "--shift", shift), "--shift")


def test_plot_must_be_png(tmp_path: Path) -> None:
    expect_input_error(invoke(clip_path(), "--plot", tmp_path / "x.pdf"), "name it *.png")


def test_labels_problems(tmp_path: Path) -> None:
    data = save_stacked(tmp_path / "pairs.npy", small_pairs())
    (tmp_path / "short.txt").write_text("1\n2\n")
    (tmp_path / "gap.txt").write_text("1\n\n2\n" + "3\n" * 38)
    np.save(tmp_path / "floats.npy", np.full(40, 0.5))
    expect_input_error(invoke(data, "--labels", tmp_path / "short.txt"), "2 labels for 40 pairs")
    expect_input_error(invoke(data, "--labels", tmp_path / "gap.txt"), "line 2 is empty")
    expect_input_error(invoke(data, "--labels", tmp_path / "floats.npy"), "whole numbers")
    expect_input_error(invoke(data, "--labels", tmp_path / "none.txt"), "--labels", "no such file")
