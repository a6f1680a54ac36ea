"""The GAPSWEEP_TRACE timeline: each trial's start, reports and end as JSON lines with both
clocks (the worker's when it happened, the driver's when it was written). The recorder writes it
for gapsweep's sweeps and benchmarks/sweep_overhead.py for the bare sides it compares against, so
this module imports nothing heavier than the standard library."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

TRACE_ENV = "GAPSWEEP_TRACE"


class Trace:
    """Appends events to the file named at construction; with no file, writes nothing."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None

    @classmethod
    def from_env(cls) -> Trace:
        return cls(os.environ.get(TRACE_ENV))

    def event(self, key: str, event: str, at: float | None, **extra: float) -> None:
        if self.path is None or at is None:
            return
        record = {"key": key, "event": event, "t": at, "recorded": time.time(), **extra}
        with self.path.open("a") as out:
            out.write(json.dumps(record) + "\n")
