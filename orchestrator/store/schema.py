"""The results store's schema version: upgraded by Alembic migrations shipped in the package.

A store written by an older gapsweep is upgraded in place; one written by a newer gapsweep is
refused, since this version cannot know what the newer columns mean.
"""

from __future__ import annotations

import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from orchestrator.errors import InputError

MIGRATIONS = Path(__file__).with_name("migrations")
MIGRATION_ATTEMPTS = 5


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "the package ships at least one migration"
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, display_url: str) -> tuple[str | None, str]:
    """Bring the schema to this version's head; returns (revision before, revision after)."""
    before = current_revision(engine)
    known = {s.revision for s in ScriptDirectory.from_config(_config()).walk_revisions()}
    if before is not None and before not in known:
        raise InputError(
            f"results store {display_url} has schema revision {before}, newer than this "
            f"gapsweep knows (it knows up to {head_revision()}); upgrade gapsweep to use it"
        )
    head = head_revision()
    for attempt in range(MIGRATION_ATTEMPTS):
        if current_revision(engine) == head:
            break
        try:
            _run_upgrade(engine)
        except DBAPIError:
            # Another process (a second CLI command on a fresh store) is creating the same
            # tables right now; once it is done the schema is at head and there is nothing to do.
            if attempt == MIGRATION_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    return before, head


def _run_upgrade(engine: Engine) -> None:
    config = _config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
