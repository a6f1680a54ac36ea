"""Writes the results store could not take yet, kept in the order they were made.

A write is a `ResultsStore` method and its arguments, as plain JSON. While the store is away
longer than its retries (`engine.retried`), the recorder keeps its writes here instead of
stopping the sweep: the first `memory_bound` in memory, the later ones appended to a spill file
(JSON lines) in the sweep's folder of Tune's storage. Once the store answers they are applied in
order, the spill file's first, before any newer write. A sweep whose store never came back
leaves every write it kept in the spill file; the next driver of the sweep (`submit`, `resume`,
`orchestrator sync`) applies it before anything else (`replay_spilled`).

Applying a write twice leaves the store as applying it once (each sets what it sets: a step's
values are keyed by trial and step and replace the ones stored), except `mark_running`, which
counts one attempt more. A spill file is applied only by the driver whose lease epoch directly
follows the one that wrote it: a driver in between may have recorded newer results, so the
file is set aside instead, and named.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import InputError
from orchestrator.store.repository import ResultsStore

SPILL_NAME = "pending-writes.jsonl"
FORMAT = 1
# The store methods a kept write may name: the recorder's writes, nothing else.
OPS: dict[str, Callable[..., object]] = {
    "mark_running": ResultsStore.mark_running,
    "set_placement": ResultsStore.set_placement,
    "record_metrics": ResultsStore.record_metrics,
    "record_many": ResultsStore.record_many,
    "set_checkpoint": ResultsStore.set_checkpoint,
    "finish_trial": ResultsStore.finish_trial,
}


@dataclass(frozen=True)
class Write:
    """One write of the recorder: a store method (OPS) and its arguments after the sweep."""

    op: str
    args: dict[str, Any]

    def apply(self, store: ResultsStore, sweep: str) -> None:
        OPS[self.op](store, sweep, **self.args)

    def line(self) -> str:
        return json.dumps({"op": self.op, "args": self.args}, separators=(",", ":"))

    @classmethod
    def parse(cls, line: str, where: str) -> Write:
        try:
            found = json.loads(line)
        except ValueError:
            found = None
        if (
            not isinstance(found, dict)
            or found.get("op") not in OPS
            or not isinstance(found.get("args"), dict)
        ):
            raise InputError(f"{where}: not a results store write kept by gapsweep")
        return cls(str(found["op"]), dict(found["args"]))


def spill_path(storage: Path, sweep: str) -> Path:
    """Where the writes a driver of `sweep` could not hand to the store are kept on disk."""
    return storage / sweep / SPILL_NAME


def read_spill(path: Path) -> tuple[dict[str, Any], list[Write]]:
    """The spill file's header (sweep, lease epoch) and its writes, in order. A last line cut
    short (the driver killed while appending) was never a complete write and is left out."""
    lines = path.read_text().split("\n")
    complete = lines[:-1]  # what follows the last newline is empty, or a cut-off line
    header: Any = None
    if complete:
        try:
            header = json.loads(complete[0])
        except ValueError:
            header = None
    if not isinstance(header, dict) or header.get("gapsweep_pending_writes") != FORMAT:
        raise InputError(f"{path}: not a file of results store writes kept by gapsweep")
    return header, [Write.parse(ln, f"{path}:{i}") for i, ln in enumerate(complete[1:], 2)]


class PendingWrites:
    """The writes waiting for the store, oldest first: those in the spill file (all of them
    older), then those in memory. Past `memory_bound` in memory, they all go to the file."""

    def __init__(self, path: Path, sweep: str, epoch: int, memory_bound: int) -> None:
        self.path, self.sweep, self.epoch = path, sweep, epoch
        self.memory_bound = memory_bound
        self.memory: deque[Write] = deque()
        self.in_file = 0  # writes in the spill file not yet applied
        self.applied_from_file = 0  # those before them, applied but still in the file

    def __len__(self) -> int:
        return self.in_file + len(self.memory)

    def add(self, write: Write) -> None:
        self.memory.append(write)
        if len(self.memory) > self.memory_bound:
            self.spill()

    def spill(self) -> None:
        """Append the writes in memory to the spill file (made, with its header, when there is
        none) and sync it to disk."""
        if not self.memory:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        with self.path.open("a", encoding="utf-8") as out:
            if new:
                head = {"gapsweep_pending_writes": FORMAT, "sweep": self.sweep, "epoch": self.epoch}
                out.write(json.dumps(head) + "\n")
            out.writelines(w.line() + "\n" for w in self.memory)
            out.flush()
            os.fsync(out.fileno())
        self.in_file += len(self.memory)
        self.memory.clear()

    def drain(self, apply: Callable[[Write], None]) -> None:
        """Apply every write in order, each counted as applied once `apply` returns; whatever
        `apply` raises leaves that write and the ones after it waiting."""
        if self.in_file:
            _, writes = read_spill(self.path)
            for write in writes[self.applied_from_file :]:
                apply(write)
                self.applied_from_file += 1
                self.in_file -= 1
            self.path.unlink()
            self.applied_from_file = 0
        while self.memory:
            apply(self.memory[0])
            self.memory.popleft()

    def discard(self) -> int:
        """Forget every waiting write (the spill file included); how many there were."""
        count = len(self)
        self.memory.clear()
        self.path.unlink(missing_ok=True)
        self.in_file = self.applied_from_file = 0
        return count


def replay_spilled(
    store: ResultsStore, sweep: str, storage: Path, epoch: int, say: Callable[[str], None]
) -> int:
    """Apply the writes an earlier driver of `sweep` left in its spill file, in order, for a
    driver holding lease epoch `epoch`; how many were applied. A file from an epoch before the
    last one is set aside (renamed) and named, never applied."""
    path = spill_path(storage, sweep)
    if not path.is_file():
        return 0
    header, writes = read_spill(path)
    written_at = header.get("epoch")
    if header.get("sweep") != sweep or written_at != epoch - 1:
        aside = path.with_name(f"{path.stem}.epoch-{written_at}.not-applied.jsonl")
        path.rename(aside)
        say(
            f"{len(writes)} results kept in {aside} by the driver of lease epoch {written_at} "
            f"are not applied: another driver ran sweep {sweep} since (this one holds epoch "
            f"{epoch}), and they may be older than what it recorded"
        )
        return 0
    for write in writes:
        write.apply(store, sweep)
    path.unlink()
    say(f"applied the {len(writes)} results the last driver kept in {path}")
    return len(writes)
