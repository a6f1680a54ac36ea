"""The recorder's way into the results store when the store may be away for a while.

A write goes straight to the store while it answers (with the store's own retries). Once one
fails past them, the store is taken to be away: that write and every later one wait, in order,
in `PendingWrites` (memory, then the spill file), and the sweep goes on. Every DRAIN_EVERY_S the
oldest waiting write is tried once; when it goes through, the others follow in order, before
any newer write. Past GAPSWEEP_PENDING_MAX waiting writes the sweep is stopped (`over_bound`),
with everything reported until then kept. At the end of a sweep the driver waits up to
GAPSWEEP_STORE_WAIT_S for the store (`settle`); if it never answers, the writes stay in the
spill file for the next driver, and the error says so.

A write refused because another driver took the lease over is never kept: `LeaseLostError` is
final, and every waiting write is then discarded.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from orchestrator.errors import LeaseLostError, ServiceError
from orchestrator.settings import positive_setting
from orchestrator.store.engine import TransientStoreError, tried_once
from orchestrator.store.pending import PendingWrites, Write, spill_path
from orchestrator.store.repository import ResultsStore

DRAIN_EVERY_S = 5.0
IN_MEMORY_ENV, IN_MEMORY = "GAPSWEEP_PENDING_IN_MEMORY", 10_000
MAX_ENV, MAX = "GAPSWEEP_PENDING_MAX", 200_000
WAIT_ENV, WAIT_S = "GAPSWEEP_STORE_WAIT_S", 300.0


class BufferedWriter:
    def __init__(
        self,
        store: ResultsStore,
        pending: PendingWrites,
        max_pending: int,
        say: Callable[[str], None],
    ) -> None:
        self.store, self.pending, self.max_pending, self.say = store, pending, max_pending, say
        self.sweep = pending.sweep
        self.away_since: float | None = None  # monotonic time of the failure, while away
        self.reason = ""  # the store's last error, while away
        self.kept = 0  # writes kept during the current absence
        self.next_try = 0.0
        self._over = False

    @classmethod
    def for_sweep(
        cls,
        store: ResultsStore,
        sweep: str,
        storage: Path,
        epoch: int,
        say: Callable[[str], None],
    ) -> BufferedWriter:
        """The writer of the driver holding lease `epoch`, its bounds from the environment."""
        in_memory = int(positive_setting(IN_MEMORY_ENV, IN_MEMORY))
        pending = PendingWrites(spill_path(storage.resolve(), sweep), sweep, epoch, in_memory)
        return cls(store, pending, int(positive_setting(MAX_ENV, MAX)), say)

    @property
    def away(self) -> bool:
        return self.away_since is not None

    @property
    def over_bound(self) -> bool:
        """More writes wait than the sweep may keep; stays true once it was: the sweep stops."""
        self._over = self._over or len(self.pending) >= self.max_pending
        return self._over

    def write_many(self, writes: Sequence[Write]) -> None:
        """Apply `writes` now, in one transaction (all or none), or keep them, in order, after
        the ones already waiting."""
        self.drain_if_due()
        if not self.away:
            try:
                if len(writes) == 1:
                    writes[0].apply(self.store, self.sweep)
                else:
                    calls = [functools.partial(w.apply, self.store, self.sweep) for w in writes]
                    self.store.apply_together(self.sweep, calls)
                return
            except TransientStoreError as exc:
                self._went_away(exc)
        for write in writes:
            self.pending.add(write)
        self.kept += len(writes)

    def drain_if_due(self) -> None:
        if self.away and time.monotonic() >= self.next_try:
            self.drain()

    def drain(self) -> bool:
        """Try the waiting writes in order, each once; True when none is left waiting."""
        since = self.away_since
        if since is None:
            return True
        try:
            with tried_once():
                self.pending.drain(lambda w: w.apply(self.store, self.sweep))
        except TransientStoreError as exc:
            self.reason, self.next_try = str(exc), time.monotonic() + DRAIN_EVERY_S
            return False
        except LeaseLostError:
            dropped = self.pending.discard()
            self.away_since = None
            self.say(f"{dropped} results kept while the results store was away are discarded")
            raise
        self.say(
            f"the results store answers again after {time.monotonic() - since:.0f} s: "
            f"the {self.kept} results kept meanwhile are recorded, in order"
        )
        self.away_since, self.kept = None, 0
        return True

    def settle(self, wait_s: float, show: Callable[[str], None]) -> None:
        """At the end of the sweep: wait up to `wait_s` for the store to take every waiting
        write (Ctrl-C stops waiting). If it does not, they all go to the spill file and a
        ServiceError says how they will be recorded."""
        deadline = time.monotonic() + wait_s
        try:
            while not self.drain():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                show(
                    f"waiting for the results store to take {len(self.pending)} results "
                    f"({left:.0f} s more at most; Ctrl-C stops waiting, nothing is lost)"
                )
                time.sleep(min(DRAIN_EVERY_S, left))
        except KeyboardInterrupt:
            pass
        if self.away:
            self.pending.spill()
            raise ServiceError(self._left_behind())

    def _left_behind(self) -> str:
        stopped = (
            f"the sweep was stopped once {self.max_pending} results waited ({MAX_ENV}); "
            if self._over
            else ""
        )
        return (
            f"{self.reason}; {stopped}the {len(self.pending)} results it did not take are kept, "
            f"in order, in {self.pending.path}: submitting the sweep again (or `orchestrator "
            f"resume {self.sweep}`, or `orchestrator sync {self.sweep}`) with the same --storage "
            "records them first, once the store answers"
        )

    def _went_away(self, exc: ServiceError) -> None:
        self.away_since, self.reason = time.monotonic(), str(exc)
        self.next_try = self.away_since + DRAIN_EVERY_S
        self.say(
            f"{exc}; the sweep goes on: its results wait, in order (in memory, past "
            f"{self.pending.memory_bound} in {self.pending.path}), until the store takes them; "
            f"it is tried again every {DRAIN_EVERY_S:.0f} s"
        )
