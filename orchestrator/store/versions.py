"""The versions of a sweep's spec, as the store keeps them (models.SweepVersionRow).

What counts as a new version is decided by the orchestrator (orchestrator/versions.py); here
they are only read and written. Writes go through the store's fenced session, so a driver that
lost its lease cannot record a version.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.errors import InputError
from orchestrator.store.engine import retried
from orchestrator.store.models import SweepRow, SweepVersionRow, utcnow

Sessions = Callable[[], AbstractContextManager[Session]]
Writing = Callable[[str], AbstractContextManager[Session]]


@dataclass(frozen=True)
class SpecVersion:
    number: int
    spec_hash: str
    spec_text: str
    overrides: dict[str, Any]
    keys: tuple[str, ...]  # the trials of this version, in plan order
    created_at: datetime


class SweepVersions:
    """`store.versions`: the versions of each sweep's spec."""

    def __init__(self, sessions: Sessions, writing: Writing) -> None:
        self._sessions, self._writing = sessions, writing

    @retried
    def numbers(self, sweep: str) -> list[int]:
        with self._sessions() as s:
            q = _of(sweep, SweepVersionRow.number).order_by(SweepVersionRow.number)
            return [int(n) for n in s.scalars(q)]

    @retried
    def get(self, sweep: str, number: int | None = None) -> SpecVersion | None:
        """Version `number` of the sweep, the latest when None; None where there is none."""
        with self._sessions() as s:
            q = _of(sweep, SweepVersionRow)
            q = (
                q.order_by(SweepVersionRow.number.desc())
                if number is None
                else q.where(SweepVersionRow.number == number)
            )
            row = s.scalars(q.limit(1)).first()
            return None if row is None else _view(row)

    def read(self, sweep: str, number: int | None) -> SpecVersion | None:
        """The version a reader asked for (`--version N`, None: the latest); an InputError
        naming the versions there are when N is not one. None for a sweep with no version
        recorded (one whose driver was refused before it recorded its spec)."""
        found = self.get(sweep, number)
        if found is None and number is not None:
            known = ", ".join(map(str, self.numbers(sweep))) or "none"
            raise InputError(f"--version {number}: sweep {sweep!r} has versions {known}")
        return found

    @retried
    def record(
        self,
        sweep: str,
        number: int,
        spec: tuple[str, str, dict[str, Any] | None],
        keys: Sequence[str],
    ) -> None:
        """Write version `number` (spec hash, text, overrides; its trial keys), replacing the
        version's row when it exists: a spec that only added trials stays the same version."""
        spec_hash, spec_text, overrides = spec
        with self._writing(sweep) as s:
            row = s.scalars(
                _of(sweep, SweepVersionRow).where(SweepVersionRow.number == number)
            ).first()
            if row is None:
                sweep_id = s.scalar(select(SweepRow.id).where(SweepRow.name == sweep))
                row = SweepVersionRow(sweep_id=sweep_id, number=number, created_at=utcnow())
                s.add(row)
            row.spec_hash, row.spec_text, row.overrides = spec_hash, spec_text, overrides or None
            row.keys = list(keys)


def _of(sweep: str, *what: Any) -> Any:
    return (
        select(*what)
        .join(SweepRow, SweepRow.id == SweepVersionRow.sweep_id)
        .where(SweepRow.name == sweep)
    )


def _view(row: SweepVersionRow) -> SpecVersion:
    return SpecVersion(
        number=row.number,
        spec_hash=row.spec_hash,
        spec_text=row.spec_text,
        overrides=dict(row.overrides or {}),
        keys=tuple(row.keys),
        created_at=row.created_at,
    )
