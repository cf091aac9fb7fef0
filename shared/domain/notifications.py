"""E-mail notifications: what is sent, to whom, and whether it went."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, EmailStr, Field

from shared.domain.model import Timestamped, new_id


class NotificationStatus(StrEnum):
    """Where a notification is in its life."""

    PENDING = "Pending"
    SENT = "Sent"
    FAILED = "Failed"


class Email(BaseModel):
    """One plain-text e-mail."""

    to: list[EmailStr] = Field(min_length=1)
    cc: list[EmailStr] = Field(default_factory=list)
    subject: str = Field(min_length=1, max_length=250)
    text: str


class Notification(Timestamped):
    """An e-mail the platform owes someone; `scope` is the reseller slug or `platform`."""

    scope: str
    id: str = Field(default_factory=new_id)
    email: Email
    status: NotificationStatus = NotificationStatus.PENDING
    sent_at: AwareDatetime | None = None
    error: str | None = None


class NotificationMessage(BaseModel):
    """The `notifications` queue message: ids only, the record holds the data."""

    scope: str
    id: str
    message_id: str | None = Field(default=None, alias="messageId")
