"""The mirror's MLflow work on a thread of its own, so that Tune's event loop on the driver
never waits on MLflow (a server's round trips, its store's commits, a trial's artifacts drawn).

The recorder stays the one writer: it writes the results store itself, in Tune's loop, and hands
the mirror's share to this thread, which runs it in the order handed. Nothing is lost if the
driver dies with work still queued: the store holds every value, and the next driver (or
`orchestrator sync`) catches MLflow up from it as after an outage (tracking/mirror.py).

MLflow is handed only what the store took under the sweep's lease, but the work may run later:
a driver paused past the lease's timeout (SIGSTOP, a frozen VM) must not log what is queued once
it wakes, after another driver took the sweep over and caught MLflow up itself. So the thread
asks the store whether the lease is still held before work that logs, when it last asked more
than a second ago, and once it is lost drops everything.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from orchestrator.errors import LeaseLostError, without_passwords
from orchestrator.store.engine import TransientStoreError
from orchestrator.tracking.mirror import MlflowMirror

# Work waiting past this many items holds the recorder up until the thread catches up: memory
# stays bounded when MLflow is slower than the sweep's reports.
MAX_QUEUED = 10_000
CONFIRM_EVERY_S = 1.0  # how old the last word on the lease may be before work that logs

Work = Callable[[], None]


class MirrorThread:
    def __init__(
        self,
        mirror: MlflowMirror,
        tags_due: dict[str, dict[str, str]],
        max_queued: int = MAX_QUEUED,
    ) -> None:
        self.mirror = mirror
        self.tags_due = tags_due  # the recorder's: tags a failed hand-over carried go there
        self.queue: queue.Queue[tuple[str, Work, bool] | None] = queue.Queue(max_queued)
        self.thread: threading.Thread | None = None
        self.confirmed_at = -CONFIRM_EVERY_S  # monotonic time the store last confirmed the lease
        self.lease_lost = False

    def hand(
        self, key: str, work: Work, tags: dict[str, str] | None = None, logs: bool = True
    ) -> None:
        """Run `work` for trial `key` on the thread, after everything handed before it (`logs`:
        it writes to MLflow). If it meets the store failing, the trial is caught up from the
        store later (its `tags` kept for its next report)."""
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="gapsweep-mlflow", daemon=True)
            self.thread.start()
        self.queue.put((key, _keeping(self, key, work, tags), logs))

    def close(self) -> None:
        """Run what is queued, then end the thread."""
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join()
            self.thread = None

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            key, work, logs = item
            try:
                if not logs or self._lease_held():
                    work()
            except LeaseLostError:
                self.lease_lost = True  # another driver runs the sweep; the stopper ends this one
            except Exception as exc:  # never lose the thread: the trial is caught up later
                self.mirror.warn(
                    f"MLflow's share of trial {key}: {without_passwords(str(exc))[:300]}"
                )
                self.mirror.catch_up_later(key)

    def _lease_held(self) -> bool:
        if self.lease_lost:
            return False
        if time.monotonic() - self.confirmed_at > CONFIRM_EVERY_S:
            self.mirror.store.check_lease(self.mirror.sweep)  # LeaseLostError once taken over
            self.confirmed_at = time.monotonic()
        return True


def _keeping(thread: MirrorThread, key: str, work: Work, tags: dict[str, str] | None) -> Work:
    def run() -> None:
        try:
            work()
        except TransientStoreError:
            # The mirror's own store call failed for a moment: catch up from the store later.
            if tags:
                thread.tags_due[key] = tags
            thread.mirror.catch_up_later(key)

    return run
