"""Engine set-up of the results store: the URL checked and masked, SQLite's pragmas, the schema
brought to this version's head, and the one place where the database driver's errors become the
project's `ServiceError` (with the password masked). Failures another try may not meet (a
connection lost, a server restarting, SQLite busy past its timeout) are `TransientStoreError`,
which `ResultsStore` tries again a few times; pooled connections are pinged before use, so one
that died while idle (a PostgreSQL restart) is replaced without an error."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError

from orchestrator.errors import InputError, ServiceError
from orchestrator.store.revision import HEAD_REVISION, stored_revision

# What the database driver says when another try may succeed: SQLite busy past its timeout,
# PostgreSQL restarting or its connection gone (a dropped database is not among them).
TRANSIENT = (
    "database is locked",
    "database is busy",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "terminating connection",
    "server closed the connection",
    "connection refused",
    "connection reset",
)


class TransientStoreError(ServiceError):
    """A results store failure that another try may not meet."""


def mask_url(url: str) -> str:
    """The URL with any password replaced, for messages and logs."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def missing_sqlite_file(url: str) -> bool:
    """Whether `url` names a SQLite file that does not exist (opening it would create it)."""
    prefix = "sqlite:///"
    return url.startswith(prefix) and not Path(url[len(prefix) :]).exists()


def make_engine(url: str) -> Engine:
    try:
        engine = create_engine(url, pool_pre_ping=True)
    except (ArgumentError, ImportError, ValueError) as exc:
        raise InputError(f"results store URL {mask_url(url)!r} is not usable: {exc}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def bring_schema_to_head(engine: Engine, url: str) -> tuple[str | None, str]:
    """(revision before, revision after). A store already at head, the usual case, costs one
    query; Alembic and its migration scripts are loaded only to migrate."""
    stored = stored_revision(engine)
    if stored == HEAD_REVISION:
        return stored, stored
    from orchestrator.store.schema import upgrade

    return upgrade(engine, mask_url(url))


@contextmanager
def driver_errors(url: str) -> Iterator[None]:
    """Turn the database driver's errors into ServiceError naming the store by its masked URL.

    An IntegrityError is the caller's to handle (a lease row that already exists), so it passes.
    """
    try:
        yield
    except IntegrityError:
        raise
    except DBAPIError as exc:
        reason = " ".join(str(exc.orig).split()) or type(exc.orig).__name__
        message = f"results store {mask_url(url)} failed: {reason}"
        if exc.connection_invalidated or any(t in reason.lower() for t in TRANSIENT):
            raise TransientStoreError(message) from None
        raise ServiceError(message) from None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (`orchestrator results`) run while the sweep writes; the busy timeout
    # makes a second writer wait instead of failing at once. In WAL mode `synchronous=NORMAL`
    # syncs the log at checkpoints instead of at every commit: a killed driver loses nothing, a
    # power cut at most the last commits, which a resumed sweep records again, and the file
    # stays consistent either way (docs/reliability.md).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


P = ParamSpec("P")
R = TypeVar("R")
# The pauses between tries of a call that met a transient failure (engine.TRANSIENT): about
# 8 s in all, then its ServiceError goes to the caller.
RETRY_PAUSES_S = (0.1, 0.3, 1.0, 2.0, 4.0)
_once = threading.local()  # `tried_once` blocks running in this thread


@contextmanager
def tried_once() -> Iterator[None]:
    """Store calls made by this thread inside the block are tried once, without the pauses: for
    a caller that has somewhere else to keep a write (the recorder's pending writes) and would
    only be held up by waiting out the retries of a store it already knows is away."""
    before = getattr(_once, "active", False)
    _once.active = True
    try:
        yield
    finally:
        _once.active = before


def retried(call: Callable[P, R]) -> Callable[P, R]:
    """Run a store call again, in a new transaction, after a transient failure. A refused or
    rolled-back transaction wrote nothing; only a commit whose acknowledgement was lost may be
    applied twice, which every write absorbs except `mark_running`'s attempt count."""

    @functools.wraps(call)
    def tried(*args: P.args, **kwargs: P.kwargs) -> R:
        for pause in () if getattr(_once, "active", False) else RETRY_PAUSES_S:
            try:
                return call(*args, **kwargs)
            except TransientStoreError:
                time.sleep(pause)
        return call(*args, **kwargs)

    return tried
