"""Benchmark: the streaming gap metrics against a bare NumPy read-and-sum and the naive way.

    python -m benchmarks.gap_metrics                 # 1,000,000 pairs x 512 dims (4 GB file)
    python -m benchmarks.gap_metrics --size 20000    # the quick run CI does

Writes a (2, N, d) float32 .npy under benchmarks/data/ once, then runs each side in its own
process while this one samples the child's RssAnon (its own anonymous memory; the pages of the
memory-mapped input file are not in it) from /proc every few milliseconds:

- read_sum:  memory-map the file, sum both modalities chunk by chunk in float64. The floor.
- stream:    the O(N·d) metrics of `analyze` (trainers.gap.stream_gap_metrics), same chunks.
- report:    everything `analyze` computes: stream + sampled metrics + shift curve.
- naive:     the first --naive-size rows loaded into memory, NxN cosine matrices per modality.
- blockwise: the same rows and metrics as naive, computed the gapsweep way.

Goals (issue 3): stream at most 2x read_sum; stream and report under 1 GiB peak RssAnon.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.gap_data import ensure_pairs_file

GIB = 1 << 30
RATIO_GOAL = 2.0
MEMORY_GOAL_BYTES = GIB
_POLL_SECONDS = 0.002
_MIN_TIMED_SECONDS = 0.5


# ---------------------------------------------------------------- the sides (child process)


def side_read_sum(a: np.ndarray, b: np.ndarray, args: argparse.Namespace) -> None:
    total_a, total_b = np.zeros(a.shape[1]), np.zeros(a.shape[1])
    for start in range(0, a.shape[0], args.chunk_rows):
        total_a += a[start : start + args.chunk_rows].sum(axis=0, dtype=np.float64)
        total_b += b[start : start + args.chunk_rows].sum(axis=0, dtype=np.float64)


def side_stream(a: np.ndarray, b: np.ndarray, args: argparse.Namespace) -> None:
    from trainers.gap import stream_gap_metrics

    stream_gap_metrics(a, b, chunk_rows=args.chunk_rows).result()


def side_report(a: np.ndarray, b: np.ndarray, args: argparse.Namespace) -> None:
    from trainers.gap import gap_report

    gap_report(a, b, max_pairs=args.sample_size, chunk_rows=args.chunk_rows)


def side_naive(a: np.ndarray, b: np.ndarray, args: argparse.Namespace) -> None:
    n = args.naive_size
    x, y = np.array(a[:n], dtype=np.float64), np.array(b[:n], dtype=np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    off_diagonal = ~np.eye(n, dtype=bool)
    for rows in (x, y):
        cosines = (rows @ rows.T)[off_diagonal]  # the NxN matrix, then its N(N-1) entries
        _ = (cosines.mean(), cosines.min(), np.log(np.exp(4.0 * cosines - 4.0).mean()))
    _ = (np.linalg.norm(x.mean(axis=0) - y.mean(axis=0)), np.sum(x * y, axis=1).mean())


def side_blockwise(a: np.ndarray, b: np.ndarray, args: argparse.Namespace) -> None:
    from trainers.gap import stream_gap_metrics
    from trainers.gap.pairwise import within_modality
    from trainers.gap.stream import normalised

    n = args.naive_size
    stream_gap_metrics(a[:n], b[:n], chunk_rows=args.chunk_rows).result()
    within_modality(normalised(a[:n]))
    within_modality(normalised(b[:n]))


SIDES: dict[str, Callable[[np.ndarray, np.ndarray, argparse.Namespace], None]] = {
    "read_sum": side_read_sum,
    "stream": side_stream,
    "report": side_report,
    "naive": side_naive,
    "blockwise": side_blockwise,
}


def run_side(args: argparse.Namespace) -> None:
    """In the child: time one side on the memory-mapped file and print one JSON line."""
    stacked = np.load(args.file, mmap_mode="r")
    work = SIDES[args.side]
    # Imports happen before the clock starts, as read_sum's numpy does.
    if args.side in ("stream", "report", "blockwise"):
        import trainers.gap  # noqa: F401
    if args.side == "report":
        import sklearn.linear_model  # noqa: F401  (trainers import it lazily)
    rss_before = read_status(Path("/proc/self/status"))["RssAnon"]
    start = time.perf_counter()
    work(stacked[0], stacked[1], args)
    wall = time.perf_counter() - start
    status = read_status(Path("/proc/self/status"))
    print(json.dumps({"wall_s": wall, "rss_anon_before": rss_before, "vm_hwm": status["VmHWM"]}))


# ---------------------------------------------------------------- measuring (parent process)


def read_status(path: Path) -> dict[str, int]:
    """RssAnon, VmHWM and friends from a /proc/PID/status file, in bytes."""
    values = {}
    for line in path.read_text().splitlines():
        key, _, rest = line.partition(":")
        if rest.strip().endswith("kB"):
            values[key] = int(rest.split()[0]) * 1024
    return values


def measure(side: str, args: argparse.Namespace, path: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.gap_metrics", "--side", side, "--file", str(path)]
    command += ["--chunk-rows", str(args.chunk_rows), "--sample-size", str(args.sample_size)]
    command += ["--naive-size", str(args.naive_size)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    status, peak = Path(f"/proc/{child.pid}/status"), 0
    while child.poll() is None:
        try:
            peak = max(peak, read_status(status).get("RssAnon", 0))
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(_POLL_SECONDS)
    out, _ = child.communicate()
    if child.returncode != 0:
        raise SystemExit(f"side {side} failed with exit code {child.returncode}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_anon"] = peak
    return result


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        # The fastest run: other load on the machine only ever adds time.
        "wall_s": min(r["wall_s"] for r in runs),
        "peak_rss_anon": max(r["peak_rss_anon"] for r in runs),
        "rss_anon_before": max(r["rss_anon_before"] for r in runs),
        "vm_hwm": max(r["vm_hwm"] for r in runs),
        "runs": len(runs),
    }


def benchmark(args: argparse.Namespace) -> int:
    path = ensure_pairs_file(args.size, args.dim)
    # Defaults that scale with the input, so the quick CI size stays quick.
    args.naive_size = min(args.naive_size or max(1000, args.size // 100), args.size)
    args.sample_size = args.sample_size or min(5000, max(500, args.size // 200))
    print(f"input: {path} ({path.stat().st_size / GIB:.2f} GiB), chunk {args.chunk_rows} rows")
    print(f"load average before: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    measure("read_sum", args, path)  # warm the page cache; not recorded
    results: dict[str, list[dict[str, Any]]] = {"read_sum": [], "stream": []}
    for _ in range(args.repeat):  # interleaved, so drift in machine load hits both sides
        for side in results:
            results[side].append(measure(side, args, path))
    for side in ("report", "naive", "blockwise"):
        results[side] = [measure(side, args, path)]
    summary = {side: summarise(runs) for side, runs in results.items()}
    print_table(summary, args)
    return check_goals(summary) if args.check else 0


def print_table(summary: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    rows = {
        "read_sum": f"{args.size:,} pairs",
        "stream": f"{args.size:,} pairs",
        "report": f"{args.size:,} pairs, sample {min(args.sample_size, args.size):,}",
        "naive": f"{args.naive_size:,} pairs",
        "blockwise": f"{args.naive_size:,} pairs",
    }
    base = summary["read_sum"]["wall_s"]
    print(f"{'side':<10} {'rows':<32} {'wall s':>8} {'x read_sum':>10} {'peak RssAnon':>13}")
    for side, label in rows.items():
        s = summary[side]
        ratio = f"{s['wall_s'] / base:.2f}" if side == "stream" else ""
        mib = s["peak_rss_anon"] / (1 << 20)
        print(f"{side:<10} {label:<32} {s['wall_s']:>8.2f} {ratio:>10} {mib:>9.0f} MiB")
    print(f"(wall: best of {args.repeat} for read_sum and stream, excluding interpreter start;")
    print(" RssAnon before the work, after imports:", end=" ")
    print(", ".join(f"{k} {v['rss_anon_before'] / (1 << 20):.0f} MiB" for k, v in summary.items()))
    print(")")
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"machine: {os.cpu_count()} CPUs, load average {load} (1, 5, 15 min) at the end")


def check_goals(summary: dict[str, dict[str, Any]]) -> int:
    base = summary["read_sum"]["wall_s"]
    ratio = summary["stream"]["wall_s"] / base
    failures = []
    if base < _MIN_TIMED_SECONDS:
        # Tiny inputs time process-level noise (first page touches, cache state), not the pass.
        print(f"ratio not checked: read_sum took {base:.2f} s, under {_MIN_TIMED_SECONDS} s")
    elif ratio > RATIO_GOAL:
        failures.append(f"stream takes {ratio:.2f}x read_sum (goal <= {RATIO_GOAL})")
    for side in ("stream", "report"):
        if summary[side]["peak_rss_anon"] >= MEMORY_GOAL_BYTES:
            failures.append(f"{side} peaks at {summary[side]['peak_rss_anon'] / GIB:.2f} GiB")
    for failure in failures:
        print(f"goal missed: {failure}")
    return 1 if failures else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=int, default=1_000_000, help="pairs (rows per modality)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--chunk-rows", type=int, default=4096, help="rows read per chunk")
    parser.add_argument(
        "--sample-size", type=int, default=0, help="report's max_pairs (default size/200, <= 5000)"
    )
    parser.add_argument(
        "--naive-size", type=int, default=0, help="rows for naive/blockwise (default size/100)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs of read_sum and stream")
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    parser.add_argument("--side", choices=sorted(SIDES), help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.side:
        run_side(args)
        return 0
    return benchmark(args)


if __name__ == "__main__":
    sys.exit(main())
