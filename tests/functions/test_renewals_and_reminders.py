"""GET /resellers/{r}/renewals and the daily reminders timer, over the app's real triggers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest

from shared import bootstrap
from shared.domain.identity import NotificationEvent
from shared.domain.renewals import midnight
from shared.domain.subscriptions import NextTerm
from shared.services import reminders
from tests.functions.helpers import call, json_of, trigger
from tests.functions.world import CUST_A, CUST_B, CUST_OTHER, World, add_customers, build_world
from tests.order_fakes import install_orders
from tests.renewal_records import subscription


@pytest.fixture
def world() -> Iterator[World]:
    w = build_world()
    add_customers(w)
    install_orders(w.container)
    bootstrap.use(w.container)
    yield w
    bootstrap.use(None)


def _save(world: World, reseller: str, customer: str, sid: str, days: int, **kw: Any) -> None:
    """A subscription whose commitment ends `days` after today (renews a day later)."""
    ends = midnight(world.clock.now().date() + timedelta(days=days))
    world.container.subscriptions.add(subscription(reseller, customer, sid, ends=ends, **kw))


def _renewals(world: World, role: str, reseller: str = "demo", **params: str) -> Any:
    return call(
        "http_list_renewals",
        "GET",
        f"resellers/{reseller}/renewals",
        route={"r": reseller},
        token=world.token(role),
        params=params,
    )


# --- GET /renewals ---------------------------------------------------------------------------


def test_renewals_across_customers_soonest_first_with_what_changes(world):
    scheduled = NextTerm(catalog_item_id=None, quantity=15, term_duration=None, billing_cycle=None)
    _save(world, "demo", CUST_B, "sub-b", 3, next_term=scheduled)
    _save(world, "demo", CUST_A, "sub-a", 10)
    _save(world, "demo", CUST_A, "sub-off", 5, auto_renew=False)
    _save(world, "demo", CUST_A, "sub-late", 40)
    _save(world, "demo", CUST_A, "sub-gone", 2, status="cancelled")
    _save(world, "other", CUST_OTHER, "sub-other", 3)
    resp = _renewals(world, "AccountManager")
    assert resp.status_code == 200
    items = json_of(resp)["items"]
    assert [i["subscription"]["id"] for i in items] == ["sub-b", "sub-off", "sub-a"]
    first = items[0]
    today = world.clock.now().date()
    assert first["renewsOn"] == (today + timedelta(days=4)).isoformat()
    assert first["customerName"] == "Beta a.s."
    assert first["willRenew"] is True
    assert first["nextTerm"]["quantity"] == 15
    assert first["nextTerm"]["changes"] == ["quantity 10 → 15"]
    assert {"resellerCost", "margin"} <= set(first["subscription"]["priced"])
    off = items[1]
    assert off["willRenew"] is False and off["nextTerm"] is None


def test_renewals_page_through_in_date_order(world):
    for day in range(5):
        _save(world, "demo", CUST_A, f"sub-{day}", day)
    first = json_of(_renewals(world, "Sales", pageSize="2"))
    second = json_of(
        _renewals(world, "Sales", pageSize="2", continuationToken=first["continuationToken"])
    )
    ids = [i["subscription"]["id"] for i in first["items"] + second["items"]]
    assert ids == ["sub-0", "sub-1", "sub-2", "sub-3"]


def test_a_customer_user_sees_only_its_own_customers_renewals_at_its_price(world):
    _save(world, "demo", CUST_A, "sub-a", 3)
    _save(world, "demo", CUST_B, "sub-b", 3)
    resp = _renewals(world, "CustomerReader")
    assert resp.status_code == 200
    items = json_of(resp)["items"]
    assert [i["subscription"]["id"] for i in items] == ["sub-a"]
    priced = items[0]["subscription"]["priced"]
    body = resp.get_body().decode()
    assert "resellerCost" not in body and "margin" not in body.lower()
    assert set(priced) == {"currency", "price", "quantity", "totalPrice"}


def test_another_resellers_renewals_are_not_found(world):
    _save(world, "other", CUST_OTHER, "sub-other", 3)
    for role in ("AccountManager", "CustomerAdmin"):
        assert _renewals(world, role, reseller="other").status_code == 404


@pytest.mark.parametrize("within", ["0", "366", "soon"])
def test_renewals_within_out_of_range_is_a_400_naming_within(world, within):
    resp = _renewals(world, "AccountManager", within=within)
    assert resp.status_code == 400
    assert [e["field"] for e in json_of(resp)["errors"]] == ["within"]


def test_renewals_within_a_year(world):
    _save(world, "demo", CUST_A, "sub-late", 300)
    assert json_of(_renewals(world, "AccountManager"))["items"] == []
    items = json_of(_renewals(world, "AccountManager", within="365"))["items"]
    assert [i["subscription"]["id"] for i in items] == ["sub-late"]


# --- the reminders timer ---------------------------------------------------------------------


# A decimal amount, with or without its currency ("12.50", "1 234,00 CZK").
AMOUNT = re.compile(r"\d[.,]\d")


def _queued(world: World, reseller: str = "demo") -> list[Any]:
    return list(world.container.notifications.iterate(reseller))


def _run_timer() -> None:
    trigger("timer_reminders")(mock.Mock())


def test_reminder_timer_run_twice_queues_one_digest(world):
    _save(world, "demo", CUST_A, "sub-a", 3)
    _save(world, "demo", CUST_B, "sub-b", 5, auto_renew=False)
    _run_timer()
    _run_timer()
    [digest] = _queued(world)
    assert digest.email.to == ["owner@demo.example"]
    text = digest.email.text
    assert "Alfa s.r.o." in text and "renews on" in text
    assert "Beta a.s." in text and "expires on" in text and "auto-renew is off" in text
    assert not AMOUNT.search(text), "no price in a reminder"


def test_a_reminder_is_told_once_per_occasion_over_the_following_days(world):
    _save(world, "demo", CUST_A, "sub-a", 5)
    _run_timer()
    world.clock.advance(days=1)
    _save(world, "demo", CUST_B, "sub-b", 5)
    _run_timer()
    world.clock.advance(days=1)
    _run_timer()
    digests = sorted(_queued(world), key=lambda n: n.created_at)
    assert len(digests) == 2
    assert "sub-a" in digests[0].email.text and "sub-a" not in digests[1].email.text
    assert "sub-b" in digests[1].email.text


def test_a_run_repeated_after_a_crash_finds_the_digest_it_queued(world):
    _save(world, "demo", CUST_A, "sub-a", 3)
    book = world.container.order_book
    now = world.clock.now()
    due = reminders.due_now(book, now)["demo"]
    reseller = world.container.resellers.get("reseller", "demo")
    first = reminders.ReminderRun()
    reminders.remind(book, reseller, due, now, first)
    # The same reminders again (as a run that crashed after queueing and never recorded it).
    again = reminders.ReminderRun()
    reminders._queue_digest(book, reseller, ["owner@demo.example"], [], due, now)
    reminders.remind(book, reseller, due, now, again)
    assert len(first.queued) == 1 and again.queued == []
    assert len(_queued(world)) == 1


def test_events_switched_off_are_not_reminded_and_the_others_are(world):
    c = world.container
    demo = c.resellers.get("reseller", "demo")
    demo.settings.notifications.events[NotificationEvent.RENEWAL_SOON] = False
    c.resellers.update(demo)
    _save(world, "demo", CUST_A, "sub-renews", 3)
    closes = world.clock.now() + timedelta(hours=5)
    _save(world, "demo", CUST_B, "sub-window", 200, cancellation_allowed_until=closes)
    _run_timer()
    [digest] = _queued(world)
    assert "sub-window" in digest.email.text and "sub-renews" not in digest.email.text
    demo = c.resellers.get("reseller", "demo")
    demo.settings.notifications.events[NotificationEvent.CANCELLATION_WINDOW_CLOSING] = False
    c.resellers.update(demo)
    world.clock.advance(hours=1)
    _save(world, "demo", CUST_B, "sub-window-2", 200, cancellation_allowed_until=closes)
    _run_timer()
    assert len(_queued(world)) == 1


def test_trial_ending_and_cancellation_window_closing_are_in_the_digest(world):
    now = world.clock.now()
    _save(world, "demo", CUST_A, "sub-trial", 0, is_trial=True, trial_ends=now + timedelta(days=2))
    _save(
        world, "demo", CUST_A, "sub-new", 365, cancellation_allowed_until=now + timedelta(hours=3)
    )
    _run_timer()
    [digest] = _queued(world)
    assert "Trial ends within 7 days" in digest.email.text and "sub-trial" in digest.email.text
    assert "Cancellation window closes within 24 hours" in digest.email.text


def test_the_timer_reads_only_the_subscriptions_that_are_due(world):
    c = world.container
    for i in range(30):
        _save(world, "demo", CUST_A, f"sub-far-{i}", 100 + i)
        _save(world, "demo", CUST_B, f"sub-past-{i}", -100 - i, status="expired")
    _save(world, "demo", CUST_A, "sub-soon", 2)
    seen: list[str] = []
    real = c.subscriptions.iterate

    def counting(*args: Any, **kw: Any) -> Iterator[Any]:
        for sub in real(*args, **kw):
            seen.append(sub.id)
            yield sub

    c.subscriptions.iterate = counting  # type: ignore[method-assign]
    _run_timer()
    assert set(seen) == {"sub-soon"}
