"""Facts written with the subscription records: the Subscriptions decorator."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from shared.domain.ledger import LedgerMessage, PricedState
from shared.domain.outbox import Queue
from shared.domain.subscriptions import Subscription
from shared.services.ledger import LedgeredSubscriptions, backfill, open_months, project, rebuild
from tests.fakes import FakeClock, InMemoryRepository
from tests.ledger_fakes import InMemoryLedger


def repo() -> tuple[LedgeredSubscriptions, InMemoryRepository[Subscription]]:
    inner = InMemoryRepository[Subscription](lambda s: (s.customer_id, s.id.lower()))
    return LedgeredSubscriptions(inner, FakeClock(datetime(2026, 11, 3, tzinfo=UTC))), inner


def sub(customer: str = "c1", seats: int = 5, **over: object) -> Subscription:
    values: dict[str, object] = {
        "reseller": "demo",
        "customer_id": customer,
        "id": str(uuid.uuid4()),
        "name": "Microsoft 365 Business Basic",
        "quantity": seats,
        "billing_cycle": "monthly",
        "status": "Active",
    }
    values.update(over)
    return Subscription.model_validate(values)


def ledger_messages(inner: InMemoryRepository[Subscription]) -> list[LedgerMessage]:
    return [
        LedgerMessage.model_validate(m.payload()) for m in inner.sent if m.queue is Queue.LEDGER
    ]


def test_adding_a_subscription_sends_its_fact_and_records_the_digest() -> None:
    subs, inner = repo()
    saved = subs.add(sub(seats=7))
    [message] = ledger_messages(inner)
    [fact] = message.ledger_facts()
    assert fact.subscription_id == saved.id and fact.state.seats == 7
    assert saved.ledgered == PricedState.of(saved).digest()
    assert inner.find("c1", saved.id.lower()).ledgered == saved.ledgered  # type: ignore[union-attr]


def test_a_write_that_changes_nothing_priced_sends_nothing() -> None:
    subs, inner = repo()
    saved = subs.add(sub())
    saved.refreshed_at = datetime(2026, 11, 4, tzinfo=UTC)
    saved.sync_change = "Updated"
    subs.update(saved)
    subs.save_all("c1", updates=[subs.get("c1", saved.id.lower())])
    assert len(ledger_messages(inner)) == 1  # the add's only


def test_a_seat_change_sends_one_fact_with_the_new_state() -> None:
    subs, inner = repo()
    saved = subs.add(sub(seats=5))
    saved.quantity = 9
    again = subs.update(saved)
    assert [m.ledger_facts()[0].state.seats for m in ledger_messages(inner)] == [5, 9]
    assert again.ledgered == PricedState.of(again).digest()


def test_one_transaction_of_many_records_sends_one_message_with_the_changed_ones() -> None:
    subs, inner = repo()
    a, b, c = (subs.add(sub()) for _ in range(3))
    inner.sent.clear()
    a.quantity, c.status = 6, "Suspended"
    b.refreshed_at = datetime(2026, 11, 5, tzinfo=UTC)
    subs.save_all("c1", updates=[a, b, c])
    [message] = ledger_messages(inner)
    assert {f.subscription_id for f in message.ledger_facts()} == {a.id, c.id}


def test_saving_a_hundred_records_splits_so_each_transaction_holds_its_facts() -> None:
    subs, inner = repo()
    records = [sub() for _ in range(100)]
    saved = subs.save_all("c1", adds=records)
    assert [s.id for s in saved] == [r.id for r in records]
    messages = ledger_messages(inner)
    assert len(messages) == 2
    assert sorted(f.s for m in messages for f in m.facts) == sorted(r.id for r in records)


def test_a_message_stays_under_the_row_size_limit() -> None:
    subs, inner = repo()
    long_name = "N" * 900  # an unusually long friendly name: fewer facts fit in one message
    subs.save_all("c1", adds=[sub(name=long_name) for _ in range(60)])
    bodies = [m for m in inner.sent if m.queue is Queue.LEDGER]
    assert len(bodies) >= 2
    assert all(len(json.dumps(m.payload(), separators=(",", ":"))) < 32_000 for m in bodies)


def test_caller_messages_travel_in_the_first_transaction() -> None:
    from shared.domain.outbox import OutboxMessage

    subs, inner = repo()
    mine = OutboxMessage(queue=Queue.NOTIFICATIONS, body={"x": 1})
    subs.save_all("c1", adds=[sub() for _ in range(99)], messages=[mine])
    assert inner.sent[0] == mine
    assert len(ledger_messages(inner)) == 2


def test_backfill_sends_facts_of_records_never_ledgered_once() -> None:
    subs, inner = repo()
    old = inner.add(sub())  # written before the ledger: no digest
    subs.add(sub())
    inner.sent.clear()
    assert backfill(subs) == 1
    [message] = ledger_messages(inner)
    assert message.facts[0].s == old.id
    assert backfill(subs) == 0


@pytest.mark.parametrize("trial", [True, False])
def test_message_body_is_compact_json_with_decimal_strings(trial: bool) -> None:
    subs, inner = repo()
    subs.add(sub(is_trial=trial))
    body = json.dumps(inner.sent[-1].payload(), separators=(",", ":"))
    assert "null" not in body and ": " not in body
    assert ('"is_trial":true' in body) is trial


def test_backfilled_subscriptions_open_the_migration_month_instead_of_showing_as_new() -> None:
    inner = InMemoryRepository[Subscription](lambda s: (s.customer_id, s.id.lower()))
    clock = FakeClock(datetime(2026, 12, 15, tzinfo=UTC))
    subs = LedgeredSubscriptions(inner, clock)
    inner.add(sub(seats=4))  # from before the ledger
    assert backfill(subs) == 1
    ledger = InMemoryLedger()
    for message in ledger_messages(inner):
        project(ledger, clock, message)
    open_months(ledger, clock, ["demo"])
    [december] = ledger.subscription_months("demo", "2026-12").items
    # it opens the month (no "new" revenue), carried from the month before
    assert december.opening is not None and december.opening == december.closing
    assert december.facts == 0 and december.closing.seats == 4
    assert rebuild(ledger, "demo", ["2026-11", "2026-12"]) == []


def test_resending_a_ledgered_record_sends_its_fact_again_unless_it_changed_meanwhile() -> None:
    subs, inner = repo()
    a, b = subs.add(sub()), subs.add(sub())
    inner.sent.clear()
    subs.update(b.model_copy(update={"quantity": 8}))  # b changed after it was read
    assert subs.resend("c1", [a, b]) == 1
    assert [m.facts[0].s for m in ledger_messages(inner)] == [b.id, a.id]
