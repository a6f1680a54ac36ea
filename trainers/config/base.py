"""The base of every trial config model, the helper for fields added later, and the helper
that builds a name-tagged union.

Datasets and towers are picked by name from static tables (a discriminated union on `name` or
`kind`), so a spec can only choose among listed classes and never names code to import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class FrozenModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def added_field(default: Any, **kwargs: Any) -> Any:
    """A field added after trials were recorded: while it holds its default it is left out of
    the dumped config, so the content key of every trial that does not use it stays the same and
    resubmitting an older sweep runs none of its completed trials again."""
    return Field(default, exclude_if=lambda value: value == default, **kwargs)


def tag_or_default(field: str, default: str) -> Callable[[Any], str | None]:
    """Discriminator reading `field`, falling back to `default` when a spec leaves it out.

    The fallback keeps specs written before a union existed (no `kind`, no `name`) valid.
    Anything else (null, a number, a list) has no tag: None makes Pydantic report the union's
    own error on that field instead of an AttributeError escaping validation.
    """

    def tag(value: Any) -> str | None:
        if isinstance(value, dict):
            return str(value.get(field, default))
        found = getattr(value, field, None)
        return None if found is None else str(found)

    return tag
