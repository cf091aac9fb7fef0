"""Queueing and delivering e-mail notifications (at most once per record, no secret kept)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from shared.domain.model import utcnow
from shared.domain.notifications import Email, Notification, NotificationMessage, NotificationStatus
from shared.domain.outbox import OutboxMessage, Queue
from shared.ports import Mailer, Repository

log = logging.getLogger(__name__)


def queue_email(
    notifications: Repository[Notification],
    scope: str,
    email: Email,
    *,
    notification_id: str | None = None,
    secrets: Mapping[str, str] | None = None,
) -> Notification:
    """Record an e-mail to send and, in the same transaction, the queue message for it.

    A fixed `notification_id` makes a repeated call find the first record (Conflict on add).
    `secrets` fill the e-mail's `secret_placeholder`s at send time and are dropped from the
    record when it is sent or given up: no secret stays at rest.
    """
    record = Notification(scope=scope, email=email, secrets=dict(secrets or {}))
    if notification_id is not None:
        record.id = notification_id
    message = OutboxMessage(queue=Queue.NOTIFICATIONS, body={"scope": scope, "id": record.id})
    return notifications.add(record, messages=[message])


def deliver(
    notifications: Repository[Notification], mailer: Mailer, message: NotificationMessage
) -> None:
    """Send the e-mail unless it already went; a redelivered message does nothing."""
    record = notifications.find(message.scope, message.id)
    if record is None:
        log.warning("notification %s/%s no longer exists", message.scope, message.id)
        return
    if record.status is not NotificationStatus.PENDING:
        return
    mailer.send(record.render(), message_id=record.id)
    record.close(NotificationStatus.SENT, utcnow())
    notifications.update(record)


def give_up(
    notifications: Repository[Notification], message: NotificationMessage, reason: str
) -> None:
    """Mark the notification Failed so a person can see why it never went."""
    record = notifications.find(message.scope, message.id)
    if record is None or record.status is not NotificationStatus.PENDING:
        return
    record.close(NotificationStatus.FAILED, utcnow(), reason[:1000])
    notifications.update(record)
