"""The base of every trial config model, and the helper that builds a name-tagged union.

Datasets and towers are picked by name from static tables (a discriminated union on `name` or
`kind`), so a spec can only choose among listed classes and never names code to import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict


class FrozenModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def tag_or_default(field: str, default: str) -> Callable[[Any], str]:
    """Discriminator reading `field`, falling back to `default` when a spec leaves it out.

    The fallback keeps specs written before a union existed (no `kind`, no `name`) valid.
    """

    def tag(value: Any) -> str:
        found = value.get(field, default) if isinstance(value, dict) else getattr(value, field)
        return str(found)

    return tag
