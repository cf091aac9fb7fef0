"""Idempotency records: one per (scope, key), holding the answer a repeated request gets."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, Field

from shared.domain.model import Record, new_id


class IdempotencyStatus(StrEnum):
    """Whether the first request with a key is still running or has answered."""

    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"


class StoredResponse(BaseModel):
    """An answer as it is replayed: status, body text, content type, chosen headers."""

    status: int
    body: str = ""
    content_type: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)


class IdempotencyRecord(Record):
    """The lock and the memory of one idempotent request (table `Idempotency`)."""

    scope: str
    key_hash: str
    request_hash: str
    status: IdempotencyStatus = IdempotencyStatus.IN_PROGRESS
    created_at: AwareDatetime
    # An in-progress record whose owner died is taken over after this moment.
    locked_until: AwareDatetime
    expires_at: AwareDatetime
    # The id the request's new resource gets, chosen before it runs: a run that takes over
    # from one that died after committing finds that resource instead of creating another.
    resource_id: str = Field(default_factory=new_id)
    response: StoredResponse | None = None
