"""The results store's connections and transactions: the engine, a session per call, the fence
a write to a held sweep passes first, and `apply_together` for the recorder's batches.

Every write method of `ResultsStore` opens its transaction through `_writing`. Inside
`apply_together` they all join its one transaction instead, fenced once at its start, so a batch
of the recorder's writes lands whole or not at all, and costs one commit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Self

from sqlalchemy.orm import Session, sessionmaker

from orchestrator.store import lease
from orchestrator.store.engine import driver_errors, make_engine, retried, tried_once
from orchestrator.store.lease import Fence


class StoreSessions:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._fences: dict[str, Fence] = {}  # the leases this store holds, by sweep
        self._joined = threading.local()  # `batch`: (sweep, session) of an `apply_together`

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with driver_errors(self.url), self._sessions.begin() as session:
            yield session

    @contextmanager
    def _writing(self, sweep: str) -> Iterator[Session]:
        """A session for a write to `sweep`, fenced by its lease when this store holds it."""
        joined: tuple[str, Session] | None = getattr(self._joined, "batch", None)
        if joined is not None:  # inside `apply_together`: its transaction, already fenced
            if joined[0] != sweep:
                raise ValueError(f"a batch of writes to {joined[0]!r} wrote to {sweep!r}")
            yield joined[1]
            return
        with self._session() as session:
            fence = self._fences.get(sweep)
            if fence is not None:
                lease.guard(session, fence)
            yield session

    @retried
    def apply_together(self, sweep: str, writes: Sequence[Callable[[], object]]) -> None:
        """Run `writes` (calls of this store's write methods on `sweep`) in one transaction:
        all are applied or none. A transient failure retries the whole batch; the writes inside
        are tried once each, since a failed statement ends the transaction they share."""
        if getattr(self._joined, "batch", None) is not None:
            raise ValueError("apply_together inside apply_together")
        with self._writing(sweep) as session, tried_once():
            self._joined.batch = (sweep, session)
            try:
                for write in writes:
                    write()
            finally:
                self._joined.batch = None
