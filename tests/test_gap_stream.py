"""The streaming pass: memory maps, chunking, tensors, and rows that cannot be normalised."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch

from trainers.errors import DataError
from trainers.gap import (
    STREAMING_METRICS,
    gap_metrics,
    gap_report,
    stream_gap_metrics,
)
from trainers.gap.stream import GapAccumulator

F64 = npt.NDArray[np.float64]


def gapped_pairs(n: int, d: int, seed: int = 0) -> tuple[F64, F64]:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, d)) + 2.0 * rng.standard_normal(d)
    b = a + rng.standard_normal((n, d)) + 2.0 * rng.standard_normal(d)
    return a, b


def write_stacked(path: Path, a: F64, b: F64) -> np.memmap:
    """A (2, N, d) float32 .npy written through a memory map, as a large input would be."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(2, *a.shape))
    out[0], out[1] = a, b
    out.flush()
    loaded: np.memmap = np.load(path, mmap_mode="r")
    return loaded


def assert_same_metrics(got: dict[str, float], expected: dict[str, float], rel: float) -> None:
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=rel, abs=rel), name


def test_trainer_keys_are_the_streaming_metrics() -> None:
    a, b = gapped_pairs(64, 8)
    assert tuple(gap_metrics(a, b)) == STREAMING_METRICS


@pytest.mark.parametrize("chunk_rows", [1, 7, 64, 1000, 5000])
def test_memory_mapped_file_streams_to_the_in_memory_result(
    tmp_path: Path, chunk_rows: int
) -> None:
    a, b = gapped_pairs(3001, 24)
    stacked = write_stacked(tmp_path / "pairs.npy", a, b)
    streamed = stream_gap_metrics(stacked[0], stacked[1], chunk_rows=chunk_rows).result()
    in_memory = gap_metrics(np.asarray(stacked[0]).copy(), np.asarray(stacked[1]).copy())
    assert_same_metrics(streamed, in_memory, rel=1e-12)
    # float32 storage loses about 1e-7 against the float64 originals, no more.
    assert_same_metrics(streamed, gap_metrics(a, b), rel=1e-6)


def test_blocks_larger_than_the_cache_block_agree(tmp_path: Path) -> None:
    # 512-d rows: the accumulator splits each 3000-row chunk into its own cache-sized blocks.
    a, b = gapped_pairs(3000, 512, seed=3)
    acc = GapAccumulator(512)
    acc.update(a, b)
    direct_x = a / np.linalg.norm(a, axis=1, keepdims=True)
    assert acc.centroid_a == pytest.approx(direct_x.mean(axis=0), rel=1e-12, abs=1e-15)
    assert_same_metrics(stream_gap_metrics(a, b, chunk_rows=999).result(), acc.result(), 1e-12)


def test_report_on_a_memory_map_samples_beyond_max_pairs(tmp_path: Path) -> None:
    a, b = gapped_pairs(1200, 16, seed=5)
    stacked = write_stacked(tmp_path / "pairs.npy", a, b)
    report = gap_report(stacked[0], stacked[1], max_pairs=300, seed=4, lambdas=(0.0,))
    assert report.sampled and report.sample_size == 300 and report.n_pairs == 1200
    exact = gap_report(a, b, lambdas=(0.0,))
    assert not exact.sampled
    # The streaming metrics stay exact on all pairs; the sampled ones are estimates.
    assert_same_metrics(
        {k: report.metrics[k] for k in STREAMING_METRICS},
        {k: exact.metrics[k] for k in STREAMING_METRICS},
        rel=1e-6,
    )
    assert report.metrics["uniformity_a"] == pytest.approx(exact.metrics["uniformity_a"], rel=0.05)
    again = gap_report(stacked[0], stacked[1], max_pairs=300, seed=4, lambdas=(0.0,))
    assert again.metrics == report.metrics  # the sample is seeded


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_tensors_give_the_numpy_result(dtype: torch.dtype) -> None:
    a, b = gapped_pairs(512, 64)
    ta, tb = torch.from_numpy(a).to(dtype), torch.from_numpy(b).to(dtype)
    expected = gap_metrics(ta.double().numpy(), tb.double().numpy())
    assert_same_metrics(gap_metrics(ta, tb), expected, rel=1e-12)
    assert_same_metrics(gap_metrics(ta.requires_grad_(), tb), expected, rel=1e-12)


def test_integer_input_is_normalised_like_floats() -> None:
    a = np.array([[3, 4], [1, 0], [0, 2]])
    b = np.array([[4, 3], [1, 1], [0, -2]])
    assert_same_metrics(gap_metrics(a, b), gap_metrics(a * 0.5, b * 2.0), rel=1e-12)


@pytest.mark.parametrize(
    ("bad_value", "phrase"),
    [(np.nan, "NaN or infinite"), (np.inf, "NaN or infinite"), (-np.inf, "NaN or infinite")],
)
def test_non_finite_rows_are_reported_with_their_row(bad_value: float, phrase: str) -> None:
    a, b = gapped_pairs(500, 8)
    b[321, 2] = bad_value
    with pytest.raises(DataError, match=rf"modality text: 1 row\(s\) hold {phrase}.*row 321"):
        stream_gap_metrics(a, b, chunk_rows=100, names=("image", "text"))


def test_zero_rows_are_reported_in_both_modalities() -> None:
    a, b = gapped_pairs(50, 8)
    a[[7, 9]] = 0.0
    b[40] = 0.0
    with pytest.raises(DataError) as caught:
        stream_gap_metrics(a, b)
    lines = str(caught.value).splitlines()
    assert lines == [
        "modality a: 2 row(s) are all-zero vectors, which have no direction (first: row 7)",
        "modality b: 1 row(s) are all-zero vectors, which have no direction (first: row 40)",
    ]


def test_tiny_but_nonzero_rows_are_fine() -> None:
    a, b = gapped_pairs(20, 4)
    a[3] *= 1e-30
    assert gap_metrics(a, b)["gap_norm"] == pytest.approx(gap_metrics(a * 1.0, b)["gap_norm"])


@pytest.mark.parametrize(
    ("shape_a", "shape_b"),
    [((10, 4), (9, 4)), ((10, 4), (10, 5)), ((10,), (10,)), ((2, 10, 4), (2, 10, 4))],
)
def test_mismatched_shapes_are_data_errors(
    shape_a: tuple[int, ...], shape_b: tuple[int, ...]
) -> None:
    with pytest.raises(DataError, match="same shape"):
        stream_gap_metrics(np.ones(shape_a), np.ones(shape_b))


def test_no_rows_is_a_data_error() -> None:
    with pytest.raises(DataError, match="no pairs"):
        gap_metrics(np.empty((0, 4)), np.empty((0, 4)))


def test_one_pair_has_no_cone() -> None:
    metrics = gap_metrics(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))
    assert np.isnan(metrics["cone_cosine_a"])
    assert np.isnan(metrics["rmg"])
    assert metrics["gap_norm"] == pytest.approx(np.sqrt(2))
