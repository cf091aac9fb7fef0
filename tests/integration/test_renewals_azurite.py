"""Renewals and reminders against Azurite: the server-side date filters, claims and outbox."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.bootstrap import Container
from shared.config import Settings
from shared.domain.claims import CLAIM_PREFIX
from shared.domain.identity import RESELLER_PARTITION
from shared.domain.renewals import midnight, renewal_bounds
from shared.domain.subscriptions import Subscription
from shared.services import reminders, renewals
from tests.fakes import FakeClock, InMemoryRepository, onboard
from tests.renewal_records import subscription

pytestmark = pytest.mark.integration

CUST_A, CUST_B, CUST_X = (
    "01JCXSTA00000000000000000A",
    "01JCXSTB00000000000000000B",
    "01JCXSTX0000000000000000XX",
)


@pytest.fixture
def world(settings: Settings) -> tuple[Container, FakeClock]:
    clock = FakeClock()
    c = Container(settings, clock=clock)
    onboard(c.resellers, clock, "demo")
    onboard(c.resellers, clock, "other")
    demo = c.resellers.get(RESELLER_PARTITION, "demo")
    demo.settings.notifications.extra_recipients = ["ops@demo.example"]
    c.resellers.update(demo)
    return c, clock


def _subs(clock: FakeClock) -> list[Subscription]:
    today = clock.now().date()
    start, end = renewal_bounds(today, 30)
    return [
        subscription("demo", CUST_A, "at-start", ends=start),  # renews today
        subscription("demo", CUST_A, "before-start", ends=start - timedelta(microseconds=1)),
        subscription("demo", CUST_B, "last-moment", ends=end - timedelta(microseconds=1)),
        subscription("demo", CUST_B, "at-end", ends=end),  # renews on the 31st day
        subscription("demo", CUST_B, "no-date", ends=None),
        subscription("other", CUST_X, "other-reseller", ends=midnight(today)),
    ]


def test_the_renewal_query_matches_in_storage_as_in_the_fake(world):
    c, clock = world
    fake = InMemoryRepository[Subscription](lambda s: (s.customer_id, s.id.lower()))
    for sub in _subs(clock):
        c.subscriptions.add(sub)
        fake.add(sub)
    book = c.order_book
    stored = [s.id for s in renewals.renewing(book, "demo", clock.now().date(), 30)]
    assert stored == ["at-start", "last-moment"]
    book.subscriptions = fake
    assert [s.id for s in renewals.renewing(book, "demo", clock.now().date(), 30)] == stored


def test_reminders_run_twice_against_storage_queue_one_digest_with_its_claims(world):
    c, clock = world
    for day in (1, 3):
        ends = midnight(clock.now().date() + timedelta(days=day))
        c.subscriptions.add(subscription("demo", CUST_A, f"sub-{day}", ends=ends))
    first = reminders.run(c.order_book)
    second = reminders.run(c.order_book)
    assert len(first.queued) == 1 and first.reminded == 2
    assert second.queued == []
    [digest] = list(c.notifications.iterate("demo"))
    assert digest.email.to == ["ops@demo.example"]
    table = c.store.table("Notifications")
    claims = list(
        table.query_entities(
            "PartitionKey eq 'demo' and RowKey ge @lo and RowKey lt @hi",
            parameters={"lo": CLAIM_PREFIX + "reminder~", "hi": CLAIM_PREFIX + "reminder~~"},
        )
    )
    assert len(claims) == 2 and {e["Owner"] for e in claims} == {digest.id}
