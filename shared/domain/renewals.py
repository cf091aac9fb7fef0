"""Renewals and the occasions the platform reminds people of, as pure functions of the clock.

Every window is in UTC. A subscription renews (or, with auto-renew off, expires) on
`Subscription.renews_on`, the day after its commitment ends. The reminders' occasions:

- the cancellation window of a purchase or renewal closes within 24 hours
  (`now < cancellation_allowed_until <= now + 24 h`);
- a subscription renews within 7 days (`today <= renews_on <= today + 7`), saying what changes
  then, or that it expires;
- a trial ends within 7 days (`now < trial end <= now + 7 days`).

An occasion is identified by (subscription, occasion, its day), so a reminder goes once per
occasion however often the timer runs, and again only for the next one (next year's renewal).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from shared.domain.identity import NotificationEvent
from shared.domain.subscriptions import Subscription

CANCELLATION_NOTICE = timedelta(hours=24)
RENEWAL_NOTICE_DAYS = 7
TRIAL_NOTICE = timedelta(days=7)


def midnight(day: date) -> datetime:
    """The start of `day` in UTC."""
    return datetime.combine(day, time(), UTC)


def renews_within(sub: Subscription, today: date, days: int) -> bool:
    """Whether the subscription's anniversary falls on `today` or in the `days` after it."""
    renews_on = sub.renews_on
    return renews_on is not None and today <= renews_on <= today + timedelta(days=days)


def renewal_bounds(today: date, days: int) -> tuple[datetime, datetime]:
    """The commitment end dates [from, to) of subscriptions that `renews_within` `days`."""
    return midnight(today - timedelta(days=1)), midnight(today + timedelta(days=days))


@dataclass(frozen=True)
class TermAtRenewal:
    """What the subscription becomes at renewal: the scheduled next-term change applied."""

    catalog_item_id: str | None
    quantity: int
    term_duration: str | None
    billing_cycle: str | None
    changes: tuple[str, ...]  # what differs from now, in words ("quantity 10 → 12")


def term_at_renewal(sub: Subscription) -> TermAtRenewal:
    """The next term of a subscription (what it is now where nothing is scheduled)."""
    nt = sub.next_term
    after = TermAtRenewal(
        catalog_item_id=(nt.catalog_item_id if nt and nt.catalog_item_id else sub.catalog_item_id),
        quantity=nt.quantity if nt and nt.quantity is not None else sub.quantity,
        term_duration=nt.term_duration if nt and nt.term_duration else sub.term_duration,
        billing_cycle=nt.billing_cycle if nt and nt.billing_cycle else sub.billing_cycle,
        changes=(),
    )
    pairs = [
        ("product", sub.catalog_item_id, after.catalog_item_id),
        ("quantity", sub.quantity, after.quantity),
        ("term", sub.term_duration, after.term_duration),
        ("billing cycle", sub.billing_cycle, after.billing_cycle),
    ]
    changes = tuple(f"{what} {old} → {new}" for what, old, new in pairs if old != new)
    return TermAtRenewal(
        after.catalog_item_id, after.quantity, after.term_duration, after.billing_cycle, changes
    )


class Occasion(StrEnum):
    """What a reminder is about."""

    CANCELLATION_WINDOW_CLOSING = "cancellation-window-closing"
    RENEWAL = "renewal"
    TRIAL_END = "trial-end"

    @property
    def event(self) -> NotificationEvent:
        """The notification setting that switches this reminder on or off."""
        return _EVENTS[self]


_EVENTS = {
    Occasion.CANCELLATION_WINDOW_CLOSING: NotificationEvent.CANCELLATION_WINDOW_CLOSING,
    Occasion.RENEWAL: NotificationEvent.RENEWAL_SOON,
    Occasion.TRIAL_END: NotificationEvent.TRIAL_EXPIRING,
}


@dataclass(frozen=True)
class Due:
    """One reminder owed: the occasion of a subscription, on its day (`at`: the exact moment
    where there is one, e.g. when the cancellation window closes)."""

    occasion: Occasion
    subscription: Subscription
    day: date
    at: datetime | None = None

    @property
    def key(self) -> str:
        """The fixed identity of this reminder (subscription + occasion + day)."""
        s = self.subscription
        return f"{self.occasion.value}:{s.customer_id}:{s.id.lower()}:{self.day.isoformat()}"


def trial_end(sub: Subscription) -> datetime | None:
    """When a trial ends (its commitment end where Partner Center gave no separate date)."""
    if not sub.is_trial:
        return None
    return sub.trial_ends or sub.commitment_end_date


def reminders_due(sub: Subscription, now: datetime) -> list[Due]:
    """The reminders a subscription is owed at `now` (each occasion whose window holds now)."""
    if not sub.live:
        return []
    due: list[Due] = []
    closes = sub.cancellation_allowed_until
    if closes is not None and now < closes <= now + CANCELLATION_NOTICE:
        day = closes.astimezone(UTC).date()
        due.append(Due(Occasion.CANCELLATION_WINDOW_CLOSING, sub, day, closes))
    ends = trial_end(sub)
    today = now.astimezone(UTC).date()
    if ends is not None:
        # A trial does not renew: it ends (or converts), which is its own reminder.
        if now < ends <= now + TRIAL_NOTICE:
            due.append(Due(Occasion.TRIAL_END, sub, ends.astimezone(UTC).date(), ends))
    elif sub.renews_on is not None and renews_within(sub, today, RENEWAL_NOTICE_DAYS):
        due.append(Due(Occasion.RENEWAL, sub, sub.renews_on))
    return due


@dataclass(frozen=True)
class Window:
    """Which records a reminder run must look at: `field` in [since, before)."""

    field: str
    since: datetime
    before: datetime


def reminder_windows(now: datetime) -> list[Window]:
    """Queries whose union holds every subscription `reminders_due` may pick at `now` (a little
    wider than the windows: the exact test is `reminders_due`)."""
    today = now.astimezone(UTC).date()
    start, end = renewal_bounds(today, RENEWAL_NOTICE_DAYS)
    edge = timedelta(seconds=1)  # the windows include their last moment; `before` excludes it
    return [
        Window("cancellation_allowed_until", now, now + CANCELLATION_NOTICE + edge),
        # Renewals, and trials whose end is their commitment end.
        Window("commitment_end_date", min(start, now), max(end, now + TRIAL_NOTICE + edge)),
        Window("trial_ends", now, now + TRIAL_NOTICE + edge),
    ]
