"""Queue names and the outbox message that travels to them."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.domain.model import new_id, utcnow


class Queue(StrEnum):
    """Every queue the app uses; each has a `<name>-poison` twin made by the host."""

    PROVISION_CUSTOMER = "provision-customer"
    PROVISION_ORDER = "provision-order"
    CHANGE_SUBSCRIPTION = "change-subscription"
    SYNC_RESELLER = "sync-reseller"
    NOTIFICATIONS = "notifications"
    LEDGER = "ledger"
    USAGE_IMPORT = "usage-import"


class OutboxMessage(BaseModel):
    """A queue message written in the same transaction as the records it is about."""

    model_config = ConfigDict(frozen=True)

    queue: Queue
    body: dict[str, Any]
    id: str = Field(default_factory=new_id)
    created_at: AwareDatetime = Field(default_factory=utcnow)

    def payload(self) -> dict[str, Any]:
        """What the queue function receives: the body plus the message id."""
        return {**self.body, "messageId": self.id}
