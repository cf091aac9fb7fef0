"""The windows of renewals and reminders, on both sides of each boundary, in UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from shared.domain.renewals import (
    Occasion,
    midnight,
    reminder_windows,
    reminders_due,
    renewal_bounds,
    renews_within,
    term_at_renewal,
)
from shared.domain.subscriptions import NextTerm
from tests.renewal_records import subscription

NOW = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
TODAY = NOW.date()


def ending(day: date, **kw: object) -> object:
    return subscription("demo", "C1", "S1", ends=midnight(day), **kw)


def test_a_subscription_renews_the_day_after_its_commitment_ends_in_utc():
    prague = timezone(timedelta(hours=2))
    # 00:30 in Prague on the 15th is still the 14th in UTC: it renews on the 15th.
    sub = subscription("demo", "C1", "S1", ends=datetime(2026, 1, 15, 0, 30, tzinfo=prague))
    assert sub.renews_on == date(2026, 1, 15)
    assert subscription("demo", "C1", "S1", ends=None).renews_on is None


@pytest.mark.parametrize(
    ("ends", "inside"),
    [
        (TODAY - timedelta(days=2), False),  # renewed yesterday
        (TODAY - timedelta(days=1), True),  # renews today
        (TODAY + timedelta(days=29), True),  # renews on the 30th day
        (TODAY + timedelta(days=30), False),  # the 31st day
    ],
)
def test_renewing_within_30_days_counts_today_and_the_30th_day(ends, inside):
    sub = ending(ends)
    assert renews_within(sub, TODAY, 30) is inside
    start, end = renewal_bounds(TODAY, 30)
    assert (start <= sub.commitment_end_date < end) is inside


@pytest.mark.parametrize(
    ("closes", "due"),
    [
        (NOW, False),  # closed just now
        (NOW + timedelta(seconds=1), True),
        (NOW + timedelta(hours=24), True),
        (NOW + timedelta(hours=24, seconds=1), False),
    ],
)
def test_cancellation_window_reminder_only_when_it_closes_within_24_hours(closes, due):
    sub = ending(TODAY + timedelta(days=300), cancellation_allowed_until=closes)
    occasions = [d.occasion for d in reminders_due(sub, NOW)]
    assert (Occasion.CANCELLATION_WINDOW_CLOSING in occasions) is due


@pytest.mark.parametrize(
    ("ends", "due"),
    [
        (TODAY - timedelta(days=2), False),
        (TODAY - timedelta(days=1), True),  # renews today
        (TODAY + timedelta(days=6), True),  # renews in 7 days
        (TODAY + timedelta(days=7), False),  # in 8 days
    ],
)
def test_renewal_reminder_only_within_7_days(ends, due):
    occasions = [d.occasion for d in reminders_due(ending(ends), NOW)]
    assert occasions == ([Occasion.RENEWAL] if due else [])


@pytest.mark.parametrize(
    ("ends", "due"),
    [
        (NOW, False),
        (NOW + timedelta(seconds=1), True),
        (NOW + timedelta(days=7), True),
        (NOW + timedelta(days=7, seconds=1), False),
    ],
)
def test_trial_reminder_only_when_it_ends_within_7_days_and_never_as_a_renewal(ends, due):
    sub = subscription("demo", "C1", "S1", ends=ends, is_trial=True)
    occasions = [d.occasion for d in reminders_due(sub, NOW)]
    assert occasions == ([Occasion.TRIAL_END] if due else [])


def test_cancelled_subscriptions_are_owed_no_reminder():
    sub = ending(TODAY + timedelta(days=2), status="cancelled", cancellation_allowed_until=NOW)
    assert reminders_due(sub, NOW) == []


def test_every_due_reminder_falls_inside_the_queries_of_a_run():
    subs = [
        ending(TODAY + timedelta(days=d), cancellation_allowed_until=NOW + timedelta(hours=h))
        for d in range(-2, 10)
        for h in (1, 24)
    ] + [subscription("demo", "C", "T", ends=NOW + timedelta(days=7), is_trial=True)]
    windows = reminder_windows(NOW)
    for sub in subs:
        for due in reminders_due(sub, NOW):
            assert any(
                (v := getattr(sub, w.field)) is not None and w.since <= v < w.before
                for w in windows
            ), due


def test_next_term_says_what_changes_at_renewal():
    sub = ending(
        TODAY,
        next_term=NextTerm(
            catalog_item_id=None, quantity=12, term_duration=None, billing_cycle="monthly"
        ),
    )
    term = term_at_renewal(sub)
    assert (term.quantity, term.billing_cycle, term.term_duration) == (12, "monthly", "P1Y")
    assert term.changes == ("quantity 10 → 12", "billing cycle annual → monthly")
    assert term_at_renewal(ending(TODAY)).changes == ()
