"""The schema revision a results store holds, read with one query and without Alembic, and the
revision this version of gapsweep ships (tests keep it equal to the newest migration)."""

from __future__ import annotations

from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError, ProgrammingError

HEAD_REVISION = "0005"


def stored_revision(engine: Engine) -> str | None:
    """The store's revision; None for a store without Alembic's table (a new one)."""
    with engine.connect() as connection:  # an unreachable server raises here, as it should
        try:
            found = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except (OperationalError, ProgrammingError):  # SQLite and PostgreSQL: no such table
            return None
    return None if found is None else str(found)
