"""What the recorder has been handed and not yet written: the store's writes in the order they
were made, and MLflow's share of the reports, per trial.

A write per report costs the driver a transaction and an MLflow call each (tens of
milliseconds on MLflow's SQLite store), which is most of what a sweep of many small trials
spends on its driver. Reports are therefore gathered for GAPSWEEP_RECORD_EVERY_S (0.25 s; 0
writes each at once) and written together: one transaction for the store, in which a trial's
reports are one `record_many` of three statements, and one `log_batch` per trial for MLflow.
Every other write (an attempt's start and placement, a checkpoint, a trial's end) is written at
once, after the reports gathered before it and in the same transaction, so the store is always
what it would be had each event been written as it came, only up to a quarter of a second
older: a driver killed between batches leaves what a driver killed a moment earlier would have,
which resuming already handles (docs/reliability.md).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from orchestrator.settings import non_negative_setting
from orchestrator.store.pending import Write

EVERY_ENV, EVERY_S = "GAPSWEEP_RECORD_EVERY_S", 0.25


@dataclass
class MirrorDue:
    """A trial's reports the store has (or will have with the batch) and MLflow not yet."""

    reports: list[tuple[int, Mapping[str, float]]] = field(default_factory=list)
    tags: dict[str, str] | None = None


class ReportBatch:
    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self.writes: list[Write] = []
        self.gathering: dict[str, Write] = {}  # each trial's `record_many` in `writes`
        self.mirror: dict[str, MirrorDue] = {}
        self.since: float | None = None  # monotonic time of the oldest report gathered

    @classmethod
    def from_env(cls) -> ReportBatch:
        return cls(non_negative_setting(EVERY_ENV, EVERY_S))

    def add_report(
        self,
        key: str,
        step: int,
        metrics: Mapping[str, float],
        first_of_attempt: bool,
        tags: dict[str, str] | None,
    ) -> None:
        """A report for the store and MLflow. A trial's reports gathered since the last write
        share one `record_many` write, in the place of the first of them: the trials' writes
        interleave, but each trial's keep their order."""
        gathering = self.gathering.get(key)
        if gathering is None or first_of_attempt:
            args = {"key": key, "reports": [], "first_of_attempt": first_of_attempt}
            gathering = self.gathering[key] = Write("record_many", args)
            self.writes.append(gathering)
        gathering.args["reports"].append((step, metrics))
        due = self.mirror.setdefault(key, MirrorDue())
        due.reports.append((step, metrics))
        if tags:
            due.tags = {**(due.tags or {}), **tags}
        if self.since is None:
            self.since = time.monotonic()

    def add_write(self, write: Write) -> None:
        """A write other than a report's, after the ones gathered before it."""
        self.writes.append(write)

    @property
    def due(self) -> bool:
        return self.since is not None and time.monotonic() - self.since >= self.every_s

    def take_writes(self) -> list[Write]:
        writes, self.writes = self.writes, []
        self.gathering.clear()
        return writes

    def take_mirror(self, key: str | None = None) -> dict[str, MirrorDue]:
        """MLflow's share, of every trial or of `key` only, taken out of the batch."""
        if key is None:
            taken, self.mirror, self.since = self.mirror, {}, None
            return taken
        due = self.mirror.pop(key, None)
        if not self.mirror:
            self.since = None
        return {} if due is None else {key: due}
