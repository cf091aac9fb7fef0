"""Queueing and delivering e-mail notifications (at most once per record, no secret kept)."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from shared.domain.claims import Claim
from shared.domain.identity import NotificationEvent, Reseller, Role, User, UserStatus
from shared.domain.model import utcnow
from shared.domain.notifications import Email, Notification, NotificationMessage, NotificationStatus
from shared.domain.outbox import OutboxMessage, Queue
from shared.ports import Mailer, Repository

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipients:
    """Who gets one e-mail: `to` and `cc`, lower-case, each address once."""

    to: list[str]
    cc: list[str]


def account_managers(users: Repository[User] | None, reseller: str) -> list[str]:
    """E-mail addresses of the reseller's active Account Managers."""
    if users is None:
        return []
    page = users.list(
        reseller,
        equals={"role": Role.ACCOUNT_MANAGER, "status": UserStatus.ACTIVE},
        page_size=50,
    )
    return [u.email for u in page.items if u.customer_id is None]


def recipients(
    reseller: Reseller,
    event: NotificationEvent | None,
    *,
    addressed: Iterable[str | None] = (),
    interested: Iterable[str | None] = (),
    users: Repository[User] | None = None,
    staff: bool = True,
) -> Recipients | None:
    """Who an e-mail of the platform goes to: the one place the reseller's preferences apply.

    `addressed` are the people the e-mail is *for* (an invitee, a new tenant's contact with its
    sign-in): they always get it. With no `event`, only they do. Everyone else hears of
    `event` only while the reseller has it switched on (settings → notifications → events):
    `interested` (e.g. whoever placed the order), and, unless the e-mail is for a customer's
    side (`staff=False`: never mix a customer's people with the reseller's staff in one
    e-mail), the reseller's Account Managers, its support address and its extra recipients.
    None when nobody is left.
    """
    prefs = reseller.settings.notifications
    copies: list[str | None] = []
    if event is not None and prefs.events.get(event, True):
        copies = list(interested)
        if staff:
            copies += [
                *account_managers(users, reseller.slug),
                reseller.settings.appearance.support_email,
                *prefs.extra_recipients,
            ]
    direct = _unique(addressed)
    others = [e for e in _unique(copies) if e not in direct]
    everyone = direct + others
    if not everyone:
        return None
    return Recipients(to=direct if direct else everyone[:1], cc=others if direct else everyone[1:])


def is_customer_user(users: Repository[User] | None, reseller: str, email: str) -> bool:
    """Whether `email` belongs to a user of one of the reseller's customers."""
    if users is None or not email:
        return False
    page = users.list(reseller, equals={"email": email}, page_size=10)
    wanted = email.strip().lower()
    return any(u.customer_id is not None and u.email.lower() == wanted for u in page.items)


def _unique(emails: Iterable[str | None]) -> list[str]:
    return list(dict.fromkeys(str(e).strip().lower() for e in emails if e))


def email_to(
    reseller: Reseller,
    event: NotificationEvent | None,
    subject: str,
    text: str,
    *,
    addressed: Sequence[str | None] = (),
    interested: Sequence[str | None] = (),
    users: Repository[User] | None = None,
    staff: bool = True,
) -> Email | None:
    """An e-mail to whom `recipients` names (None when nobody should get it)."""
    who = recipients(
        reseller, event, addressed=addressed, interested=interested, users=users, staff=staff
    )
    if who is None:
        return None
    return Email(to=who.to, cc=who.cc, subject=subject, text=text)


def queue_email(
    notifications: Repository[Notification],
    scope: str,
    email: Email,
    *,
    notification_id: str | None = None,
    secrets: Mapping[str, str] | None = None,
    claims: Collection[Claim] = (),
) -> Notification:
    """Record an e-mail to send and, in the same transaction, the queue message for it.

    A fixed `notification_id` makes a repeated call find the first record (Conflict on add).
    `secrets` fill the e-mail's `secret_placeholder`s at send time and are dropped from the
    record when it is sent or given up: no secret stays at rest. `claims` are taken in the same
    transaction (ClaimTaken when an earlier e-mail of the scope holds one): what an e-mail
    tells of, when it must be told once only.
    """
    record = Notification(scope=scope, email=email, secrets=dict(secrets or {}))
    if notification_id is not None:
        record.id = notification_id
    message = OutboxMessage(queue=Queue.NOTIFICATIONS, body={"scope": scope, "id": record.id})
    return notifications.add(record, messages=[message], claims=claims)


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
