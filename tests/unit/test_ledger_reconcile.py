"""The reconciliation: a fact lost on its way (poison) is sent again from the record."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

import pytest

from shared.domain.customers import Customer
from shared.domain.errors import UpstreamUnavailable
from shared.domain.failures import Failure
from shared.domain.ledger import LedgerMessage, month_of
from shared.domain.subscriptions import Subscription
from shared.services.ledger import LedgeredSubscriptions, open_months, project, rebuild, reconcile
from tests.fakes import FakeClock, InMemoryRepository
from tests.ledger_fakes import InMemoryLedger
from tests.unit.test_ledger_writing import ledger_messages, sub


class World:
    def __init__(self) -> None:
        self.clock = FakeClock(datetime(2026, 11, 3, tzinfo=UTC))
        self.records = InMemoryRepository[Subscription](lambda s: (s.customer_id, s.id.lower()))
        self.subs = LedgeredSubscriptions(self.records, self.clock)
        self.customers = InMemoryRepository[Customer](lambda c: (c.reseller, c.id))
        self.ledger = InMemoryLedger()
        for cid in ("c1", "c2"):
            self.customers.add(
                Customer(reseller="demo", id=cid, name=cid, domain=f"{cid}.onmicrosoft.com")
            )

    def deliver(self, lose: int | None = None) -> list[LedgerMessage]:
        """Project the messages sent so far, except the `lose`-th (it went to poison)."""
        messages = ledger_messages(self.records)
        self.records.sent.clear()
        for n, message in enumerate(messages):
            if n != lose:
                project(self.ledger, self.clock, message)
        return messages

    def reconcile(self) -> dict[str, int]:
        return reconcile(self.ledger, self.clock, self.customers, self.subs, ["demo"])


def test_a_change_whose_message_was_lost_is_sent_again_and_the_ledger_catches_up() -> None:
    w = World()
    a = w.subs.add(sub("c1", seats=5))
    w.subs.add(sub("c2", seats=3))
    open_months(w.ledger, w.clock, ["demo"])
    w.deliver()
    w.clock.advance(days=1)
    a.quantity = 9
    w.subs.update(a)
    w.deliver(lose=0)  # the change's message ended in ledger-poison
    month = month_of(w.clock.now())
    assert rebuild(w.ledger, "demo", [month]) == []  # the rebuild cannot see the loss
    assert w.reconcile() == {"demo": 1}
    w.deliver()
    rows = {r.subscription_id: r for r in w.ledger.subscription_months("demo", month).items}
    assert rows[a.id].closing.seats == 9
    assert w.reconcile() == {"demo": 0}  # agreed: nothing sent again


def test_a_lost_first_fact_of_a_live_subscription_is_sent_again() -> None:
    w = World()
    open_months(w.ledger, w.clock, ["demo"])
    b = w.subs.add(sub("c2", seats=3))
    w.deliver(lose=0)
    assert w.reconcile() == {"demo": 1}
    [message] = ledger_messages(w.records)
    assert message.facts[0].s == b.id


def test_reconciliation_waits_for_the_month_to_open() -> None:
    w = World()
    w.subs.add(sub("c1", seats=5))
    w.deliver(lose=0)
    assert w.reconcile() == {"demo": 0}  # carried rows are not all there yet


def test_one_resellers_failing_reconciliation_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    w = World()
    open_months(w.ledger, w.clock, ["demo", "aaa"])
    w.subs.add(sub("c1", seats=5))
    w.deliver(lose=0)
    real = w.ledger.opened

    def broken(reseller: str, month: str) -> bool:
        if reseller == "aaa":
            raise UpstreamUnavailable("storage timed out")
        return real(reseller, month)

    w.ledger.opened = broken  # type: ignore[method-assign]
    assert reconcile(w.ledger, w.clock, w.customers, w.subs, ["aaa", "demo"]) == {"demo": 1}
    assert any(r.levelname == "ERROR" and "aaa" in r.getMessage() for r in caplog.records)


def test_a_message_given_up_logs_the_keys_of_its_facts(caplog: pytest.LogCaptureFixture) -> None:
    from functions.queue_ledger import _give_up

    w = World()
    w.subs.add(sub("c1", seats=5, id=str(uuid.uuid4())))
    [message] = ledger_messages(w.records)
    with caplog.at_level(logging.ERROR):
        _give_up(message, Failure.of(UpstreamUnavailable("storage down")))
    [fact] = message.ledger_facts()
    assert any(fact.key in r.getMessage() and "demo" in r.getMessage() for r in caplog.records)
