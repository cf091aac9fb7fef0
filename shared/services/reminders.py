"""The daily reminders: cancellation windows closing, renewals and trial ends coming up.

One pass over the platform: a few server-side filtered queries of the Subscriptions table
(one per date field, each returning only the rows inside its window), grouped by reseller, so
the cost follows the subscriptions that are due, not the size of the table nor the number of
resellers. Each reseller's staff get one digest e-mail a day (per set of recipients), in the
reseller's notification settings (`shared.services.notifications.recipients`).

Exactly once per subscription per occasion: every reminder in a digest is a claim row
(`~claim~reminder~<occasion>:<customer>:<subscription>:<day>`) taken in the same transaction
as the digest's Notification and its outbox message, and a reminder already claimed is left
out of later digests. The digest's id derives from what it holds, so a run repeated after a
crash finds the digest it already queued (Conflict) instead of sending a second one.
Housekeeping deletes a claim once its day has passed by `RETENTION_DAYS` (no reminder for a
day long gone can be owed again).
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from shared.domain.claims import Claim
from shared.domain.errors import ClaimTaken, Conflict
from shared.domain.identity import RESELLER_PARTITION, Reseller
from shared.domain.notifications import Email
from shared.domain.renewals import Due, Occasion, reminder_windows, reminders_due, term_at_renewal
from shared.domain.subscriptions import Subscription
from shared.services import notifications
from shared.services.orders import OrderBook

log = logging.getLogger(__name__)

CLAIM_KIND = "reminder"
# A table transaction holds at most 100 operations: the Notification row, its outbox row and
# one claim row per reminder.
MAX_PER_EMAIL = 98

_HEADINGS = {
    Occasion.CANCELLATION_WINDOW_CLOSING: "Cancellation window closes within 24 hours",
    Occasion.RENEWAL: "Renews or expires within 7 days",
    Occasion.TRIAL_END: "Trial ends within 7 days",
}


@dataclass
class ReminderRun:
    """What one run did: the digests queued and how many reminders they carry."""

    queued: list[str] = field(default_factory=list)  # notification ids
    reminded: int = 0


def claim(due: Due) -> Claim:
    """The claim row that says this reminder was told."""
    return Claim(CLAIM_KIND, due.key)


def claim_day(told: Claim) -> date | None:
    """The day a reminder claim is about (the last part of `Due.key`); None if unreadable."""
    try:
        return date.fromisoformat(told.value.rsplit(":", 1)[-1])
    except ValueError:
        return None


def due_now(book: OrderBook, now: datetime) -> dict[str, list[Due]]:
    """Every reminder owed at `now`, by reseller slug (one filtered query per date field)."""
    found: dict[tuple[str, str], Subscription] = {}
    for window in reminder_windows(now):
        for sub in book.subscriptions.iterate(
            since={window.field: window.since}, before={window.field: window.before}
        ):
            found[(sub.customer_id, sub.id.lower())] = sub
    by_reseller: dict[str, list[Due]] = defaultdict(list)
    for sub in found.values():
        by_reseller[sub.reseller].extend(reminders_due(sub, now))
    return {slug: due for slug, due in by_reseller.items() if due}


def run(book: OrderBook) -> ReminderRun:
    """Queue today's reminder digests (safe to run again: nothing is told twice)."""
    done = ReminderRun()
    if book.notifications is None:
        return done
    now = book.clock.now()
    for slug, due in sorted(due_now(book, now).items()):
        reseller = book.resellers.find(RESELLER_PARTITION, slug)
        if reseller is None:
            log.warning("reminders: subscriptions of unknown reseller %s skipped", slug)
            continue
        remind(book, reseller, due, now, done)
    return done


def remind(
    book: OrderBook, reseller: Reseller, due: Sequence[Due], now: datetime, done: ReminderRun
) -> None:
    """Queue one reseller's digests: per set of recipients, the reminders not yet told."""
    assert book.notifications is not None
    groups: dict[tuple[tuple[str, ...], tuple[str, ...]], list[Due]] = defaultdict(list)
    for occasion in Occasion:
        items = [d for d in due if d.occasion is occasion]
        if not items:
            continue
        who = notifications.recipients(reseller, occasion.event, users=book.users)
        if who is None:  # switched off in the reseller's settings, or nobody to tell
            continue
        groups[(tuple(who.to), tuple(who.cc))].extend(items)
    for (to, cc), items in groups.items():
        fresh = sorted(_untold(book, reseller.slug, items), key=_order)
        for start in range(0, len(fresh), MAX_PER_EMAIL):
            chunk = fresh[start : start + MAX_PER_EMAIL]
            nid = _queue_digest(book, reseller, list(to), list(cc), chunk, now)
            if nid is not None:
                done.queued.append(nid)
                done.reminded += len(chunk)


def _untold(book: OrderBook, slug: str, due: Iterable[Due]) -> list[Due]:
    assert book.notifications is not None
    return [d for d in due if book.notifications.claim_owner(slug, claim(d)) is None]


def _order(d: Due) -> tuple[str, str, str, str]:
    return (d.occasion.value, d.day.isoformat(), d.subscription.customer_id, d.subscription.id)


def digest_id(day: str, chunk: Sequence[Due]) -> str:
    """The digest's id: the same reminders on the same day give the same id."""
    digest = hashlib.sha256("\n".join(sorted(d.key for d in chunk)).encode()).hexdigest()
    return f"reminders-{day}-{digest[:16]}"


def _queue_digest(
    book: OrderBook,
    reseller: Reseller,
    to: list[str],
    cc: list[str],
    chunk: list[Due],
    now: datetime,
) -> str | None:
    """Queue one digest with its claims; None when an earlier run already told all of it."""
    assert book.notifications is not None
    day = now.astimezone(UTC).date().isoformat()
    while chunk:
        nid = digest_id(day, chunk)
        email = Email(to=to, cc=cc, **_digest(book, reseller.slug, chunk, day))
        try:
            notifications.queue_email(
                book.notifications,
                reseller.slug,
                email,
                notification_id=nid,
                claims=[claim(d) for d in chunk],
            )
            return nid
        except Conflict as exc:
            if not isinstance(exc, ClaimTaken):
                return None  # this very digest was queued by an earlier run
            # Another run told some of these meanwhile: tell the rest.
            chunk = _untold(book, reseller.slug, chunk)
    return None


def _digest(book: OrderBook, slug: str, chunk: Sequence[Due], day: str) -> dict[str, str]:
    """Subject and text of a digest (names, dates and what changes; no price)."""
    names: dict[str, str] = {}
    for cid in dict.fromkeys(d.subscription.customer_id for d in chunk):
        customer = book.customers.find(slug, cid)
        names[cid] = customer.name if customer is not None else cid
    parts: list[str] = []
    for occasion in Occasion:
        items = [d for d in chunk if d.occasion is occasion]
        if items:
            lines = "\n".join(f"- {_line(d, names[d.subscription.customer_id])}" for d in items)
            parts.append(f"{_HEADINGS[occasion]}:\n{lines}")
    count = f"{len(chunk)} subscription{'s' if len(chunk) != 1 else ''}"
    return {
        "subject": f"Reminders for {day}: {count} to look at",
        "text": "\n\n".join(parts) + "\n",
    }


def _line(d: Due, customer: str) -> str:
    s = d.subscription
    head = f"{customer}: {s.name} ({s.quantity} × {s.catalog_item_id or '?'}, subscription {s.id})"
    if d.occasion is Occasion.CANCELLATION_WINDOW_CLOSING:
        return f"{head} can be cancelled or reduced until {_moment(d.at)}"
    if d.occasion is Occasion.TRIAL_END:
        then = "converts to paid" if s.auto_renew else "ends"
        return f"{head}: the trial {then} on {_moment(d.at)}"
    if not s.auto_renew:
        return f"{head} expires on {d.day.isoformat()} (auto-renew is off)"
    changes = term_at_renewal(s).changes
    what = "changes then: " + ", ".join(changes) if changes else "renews as it is"
    return f"{head} renews on {d.day.isoformat()}; {what}"


def _moment(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if at is not None else "?"
