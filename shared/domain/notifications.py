"""E-mail notifications: what is sent, to whom, and whether it went."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, EmailStr, Field, model_validator

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


def secret_placeholder(name: str) -> str:
    """Where a secret (e.g. an invitation token) goes in an e-mail's text until it is sent."""
    return "{{secret:" + name + "}}"


class Notification(Timestamped):
    """An e-mail the platform owes someone; `scope` is the reseller slug or `platform`.

    No secret at rest once sent: an e-mail that carries one (an invitation link) holds it only
    in `secrets`, keyed by the placeholder in its text (`secret_placeholder`); `render()` fills
    it in at send time and the same write that marks the row Sent (or Failed) removes it. A row
    that is not Pending never holds a secret.
    """

    scope: str
    id: str = Field(default_factory=new_id)
    email: Email
    secrets: dict[str, str] = Field(default_factory=dict, repr=False)
    status: NotificationStatus = NotificationStatus.PENDING
    sent_at: AwareDatetime | None = None
    error: str | None = None

    @model_validator(mode="after")
    def _no_secret_after_pending(self) -> Notification:
        if self.secrets and self.status is not NotificationStatus.PENDING:
            raise ValueError("a notification that is not pending holds no secret")
        return self

    def render(self) -> Email:
        """The e-mail as it is sent, its secrets filled in."""
        text, subject = self.email.text, self.email.subject
        for name, value in self.secrets.items():
            text = text.replace(secret_placeholder(name), value)
            subject = subject.replace(secret_placeholder(name), value)
        return self.email.model_copy(update={"text": text, "subject": subject})

    def close(self, status: NotificationStatus, at: datetime, error: str | None = None) -> None:
        """Mark the e-mail sent or failed, dropping its secrets in the same change."""
        self.secrets = {}
        self.status, self.updated_at, self.error = status, at, error
        if status is NotificationStatus.SENT:
            self.sent_at = at


class NotificationMessage(BaseModel):
    """The `notifications` queue message: ids only, the record holds the data."""

    scope: str
    id: str
    message_id: str | None = Field(default=None, alias="messageId")
