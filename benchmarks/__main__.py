"""Every benchmark in one run, each in a process of its own; the figures table of
benchmarks/README.md is rewritten with what was measured, the machine, the versions and the date.

    python -m benchmarks                 # full sizes (under 15 minutes on 2 idle cores)
    python -m benchmarks --tiny          # every benchmark at a tiny size, README untouched (CI)
    python -m benchmarks --only trainer_throughput,sweep_overhead   # prints; README untouched
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from benchmarks.readme import render_figures, replace_figures

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "benchmarks" / "README.md"
# name -> (arguments at full size, arguments at the tiny size)
BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    "trainer_throughput": ([], ["--tiny"]),
    # At the tiny size Ray Tune with actor reuse and the concurrency sweeps are left out, to keep
    # CI under a few minutes: each Ray start costs 10 to 30 s on 2 loaded cores.
    "sweep_overhead": ([], ["--tiny", "--sides", "sequential,ray_tune,gapsweep"]),
    "scaling": ([], ["--tiny", "--concurrency", ""]),
    "gap_metrics": (["--size", "200000", "--repeat", "3"], ["--size", "20000", "--repeat", "1"]),
    "results_store": ([], ["--trials", "100", "--steps", "5", "--repeats", "1"]),
    "search": ([], ["--tiny"]),
    "many_trials": ([], ["--tiny"]),
    "packing": ([], ["--tiny"]),
    # Without an NVIDIA GPU only the tiny CPU version of the ViT step can run.
    "gpu_trainer": ([] if shutil.which("nvidia-smi") else ["--tiny"], ["--tiny"]),
}


@dataclass
class Outcome:
    name: str
    wall_s: float
    load_before: float
    load_after: float
    records: list[dict[str, Any]] = field(default_factory=list)
    text: str = ""  # what it printed besides JSON records (gap_metrics prints a table)


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def run_benchmark(name: str, args: list[str]) -> Outcome:
    before, start = load_average(), time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    outcome = Outcome(name, round(time.perf_counter() - start, 1), before, load_average())
    sys.stdout.write(result.stdout)
    if result.returncode != 0:
        sys.stderr.write(result.stderr[-5000:])
        raise SystemExit(f"benchmark {name} failed (exit {result.returncode})")
    lines = result.stdout.splitlines()
    outcome.records = [json.loads(ln) for ln in lines if ln.startswith("{")]
    outcome.text = "\n".join(ln for ln in lines if not ln.startswith("{"))
    return outcome


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines()
                 if ln.startswith("model name")]  # fmt: skip
        cpu = names[0] if names else cpu
    packages = ("torch", "ray", "mlflow", "sqlalchemy", "numpy")
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{os.cpu_count()} x {cpu}",
        "python": platform.python_version(),
        **{p: _version(p) for p in packages},
    }


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "absent"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes; README untouched")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated names")
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite the README")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    start = time.perf_counter()
    outcomes = []
    for name in names:
        print(f"== {name} (load average {load_average()})", flush=True)
        outcomes.append(run_benchmark(name, BENCHMARKS[name][1 if args.tiny else 0]))
    total = time.perf_counter() - start
    print(f"== all done in {total:.0f} s", flush=True)
    # The figures section holds one complete run: a partial one only prints.
    if not (args.tiny or args.no_readme) and names == list(BENCHMARKS):
        text = render_figures(machine(), outcomes, total)
        README.write_text(replace_figures(README.read_text(), text))
        print(f"rewrote the figures in {README.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
