"""Results-store benchmark: `orchestrator results` and `compare` on a store holding 10,000 trials
and 10,000,000 metric rows, on SQLite and on PostgreSQL.

    python -m benchmarks.results_store                      # full size (a few minutes)
    python -m benchmarks.results_store --trials 200 --steps 10   # the CI smoke size

For each backend it fills a fresh store (not timed), then times, best of 3:
- `query`: the command's own work in this process (read the sweep, build the JSON or the groups);
- `cli`: the whole `orchestrator results/compare` command in a new process, start-up included.
Goal: under 1 s each for the command's work. The metric rows are generated inside the database
(`fill_metrics`), so the full size fills in minutes.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select, text, update

from orchestrator.report.compare import group_by
from orchestrator.report.records import trial_record
from orchestrator.store.models import TrialRow
from orchestrator.store.repository import ResultsStore
from orchestrator.store.testing import temporary_postgres_database
from orchestrator.store.views import NewTrial

METRICS = ("loss", "gap_norm", "centroid_cosine", "paired_cosine", "zero_shot_acc")
SWEEP = "bench"
ORCHESTRATOR = str(Path(sys.executable).with_name("orchestrator"))


def fill(store: ResultsStore, trials: int, steps: int) -> None:
    """`trials` completed trials over 10 temperatures, each with `steps` x 5 metric rows."""
    store.upsert_sweep(SWEEP, "dual_encoder", "name: bench\n", "x", ("gap_norm", "min"))
    temps = [0.01 * 2**i for i in range(10)]
    new = [
        NewTrial(
            key=uuid.uuid4().hex[:16], name=f"t{i}", position=i,
            config={"seed": i, "loss": {"temperature": temps[i % 10]}, "optim": {"lr": 1e-3}},
            varied={"loss.temperature": temps[i % 10], "seed": i},
        )
        for i in range(trials)
    ]  # fmt: skip
    store.register_trials(SWEEP, new)
    rng = random.Random(0)
    with store.engine.begin() as conn:
        conn.execute(
            update(TrialRow).values(
                status="completed", attempts=1, final_metrics={m: rng.random() for m in METRICS}
            )
        )
        ids = [row[0] for row in conn.execute(select(TrialRow.id))]
    fill_metrics(store, ids, steps)


# Every metric row generated inside the database, 200 trials per statement: the rows never pass
# through Python, so 10,000,000 of them take a minute or two instead of tens of minutes.
_FILL_SQL = {
    "sqlite": """
        WITH RECURSIVE
        steps(s) AS (SELECT 0 UNION ALL SELECT s + 1 FROM steps WHERE s + 1 < :steps),
        names(n) AS (VALUES {names})
        INSERT INTO metrics (trial_id, step, name, value)
        SELECT t.id, s, n, abs(random() % 1000000) / 1000000.0
        FROM trials t, steps, names WHERE t.id BETWEEN :lo AND :hi ORDER BY t.id, s, n""",
    "postgresql": """
        INSERT INTO metrics (trial_id, step, name, value)
        SELECT t.id, s, n, random() FROM trials t
        CROSS JOIN generate_series(0, :steps - 1) AS s CROSS JOIN (VALUES {names}) AS names(n)
        WHERE t.id BETWEEN :lo AND :hi ORDER BY t.id, s, n""",
}


def fill_metrics(store: ResultsStore, ids: list[int], steps: int) -> None:
    names = ", ".join(f"('{m}')" for m in METRICS)
    statement = text(_FILL_SQL[store.engine.dialect.name].format(names=names))
    for chunk in _chunks(sorted(ids), 200):
        with store.engine.begin() as conn:
            conn.execute(statement, {"steps": steps, "lo": chunk[0], "hi": chunk[-1]})


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def best_of(repeats: int, action: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def query_results(url: str) -> str:
    store = ResultsStore(url)
    try:
        return json.dumps([trial_record(t) for t in store.trials(SWEEP)])
    finally:
        store.close()


def query_compare(url: str) -> object:
    store = ResultsStore(url)
    try:
        return group_by(store.trials(SWEEP), ["loss.temperature"], "gap_norm")
    finally:
        store.close()


def cli(url: str, *args: str) -> None:
    subprocess.run(
        [ORCHESTRATOR, *args, "--results-db", url], check=True, capture_output=True, timeout=600
    )


@contextmanager
def sqlite_store(folder: Path) -> Iterator[str]:
    yield f"sqlite:///{folder / 'bench.db'}"


@contextmanager
def postgres_store() -> Iterator[str]:
    with temporary_postgres_database(prefix="gapsweep_bench") as url:
        yield url


def measure(backend: str, url: str, trials: int, steps: int, repeats: int) -> dict[str, object]:
    start = time.perf_counter()
    store = ResultsStore(url)
    fill(store, trials, steps)
    rows = store.count_metric_rows(SWEEP)
    store.close()
    fill_s = time.perf_counter() - start
    return {
        "backend": backend,
        "trials": trials,
        "metric_rows": rows,
        "fill_s": round(fill_s, 1),
        "results_query_s": round(best_of(repeats, lambda: query_results(url)), 3),
        "compare_query_s": round(best_of(repeats, lambda: query_compare(url)), 3),
        "results_cli_s": round(best_of(repeats, lambda: cli(url, "results", SWEEP, "--format",
                                                             "json")), 3),
        "compare_cli_s": round(best_of(repeats, lambda: cli(url, "compare", SWEEP, "--by",
                                                             "loss.temperature")), 3),
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=200, help="steps per trial (x5 metrics)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gapsweep-bench-") as folder:
        backends = {"sqlite": lambda: sqlite_store(Path(folder)), "postgresql": postgres_store}
        for backend, make in backends.items():
            if args.backend not in (backend, "both"):
                continue
            with make() as url:
                record = measure(backend, url, args.trials, args.steps, args.repeats)
            print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
