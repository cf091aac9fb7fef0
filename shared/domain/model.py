"""Base classes for domain records and pages."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import ClassVar, Generic, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from ulid import ULID


def new_id() -> str:
    """A new time-ordered id (ULID, 26 characters)."""
    return str(ULID())


def utcnow() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(UTC)


class Record(BaseModel):
    """A stored domain record; `etag` is the storage version it was read at (None if new)."""

    model_config = ConfigDict(validate_assignment=True, extra="forbid")

    etag: str | None = Field(default=None, exclude=True, repr=False)
    # field → the name it was stored under before a rename (storage reads either).
    renamed_fields: ClassVar[Mapping[str, str]] = {}


class Timestamped(Record):
    """A record that remembers when it was created and last changed."""

    created_at: AwareDatetime = Field(default_factory=utcnow)
    updated_at: AwareDatetime = Field(default_factory=utcnow)


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list; `continuation_token` is opaque and None on the last page."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    items: list[T]
    continuation_token: str | None = None


class WireModel(BaseModel):
    """A model as it travels over HTTP: camelCase names, built from either spelling."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


ANY_VERSION = "*"
"""`If-Match: *`: the caller accepts whatever version is current (RFC 9110)."""


def expected_version(read_at: str | None, if_match: str | None) -> str | None:
    """The version a conditional write must still find.

    The caller's ETag when it named one; for `*` (or no If-Match where it is optional) the
    version just read, so a write that lands between the read and this write is still a lost
    race (412), never silently overwritten.
    """
    if if_match is None or if_match == ANY_VERSION:
        return read_at
    return if_match
