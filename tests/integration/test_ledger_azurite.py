"""The ledger on Azurite: subscription writes through the real repositories → outbox → the
`ledger` queue → `queue_project_ledger` → month aggregates equal to a replay of the facts."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from azure.functions.queue import QueueMessage
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from functions.queue_ledger import queue_project_ledger
from shared import bootstrap
from shared.adapters.queues import QueueSender
from shared.adapters.tables.ledger import LedgerTable, partition
from shared.bootstrap import Container
from shared.config import Settings
from shared.domain.customers import Customer
from shared.domain.errors import ValidationFailed
from shared.domain.identity import Principal, Role, SignInKind
from shared.domain.ledger import Figures, MonthWrite
from shared.domain.subscriptions import Subscription
from shared.services.ledger import open_months, rebuild, reconcile
from shared.services.reports.licences import licence_report
from tests.fakes import FakeClock, onboard
from tests.unit.test_codec import subscription_priced_without_retail_price

pytestmark = pytest.mark.integration

NOV, DEC = "2026-11", "2026-12"


class _OwnLedgerQueue(QueueSender):
    """The real sender, with this test's own `ledger` queue (queues are not prefixed)."""

    def __init__(self, inner: QueueSender, name: str) -> None:
        super().__init__(inner.service)
        self.name = name

    def send(self, queue: str, text: str, *, delay_seconds: float = 0) -> None:
        super().send(self.name if queue == "ledger" else queue, text, delay_seconds=delay_seconds)


@pytest.fixture
def ledger_world(settings: Settings) -> Iterator[tuple[Container, QueueClient, FakeClock]]:
    clock = FakeClock(datetime(2026, 11, 3, 9, tzinfo=UTC))
    c = Container(settings, clock=clock)
    name = f"ledger-{uuid.uuid4().hex[:12]}"
    c.__dict__["queues"] = _OwnLedgerQueue(QueueSender.from_settings(settings), name)
    client = QueueClient.from_connection_string(
        settings.storage_connection() or "",
        name,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )
    bootstrap.use(c)
    try:
        yield c, client, clock
    finally:
        bootstrap.use(None)
        client.delete_queue()


def record(customer: str, seats: int, **over: Any) -> Subscription:
    base = subscription_priced_without_retail_price()
    values = {
        "customer_id": customer,
        "id": str(uuid.uuid4()),
        "quantity": seats,
        "billing_cycle": "monthly",
        "catalog_item_id": "CFQ7TTC0LH18:0001:CFQ7TTC0K971",
        **over,
    }
    return base.model_copy(update=values)


def drain(client: QueueClient) -> list[QueueMessage]:
    """The queue's messages as the host hands them to the function (then deleted)."""
    out = []
    for m in client.receive_messages(messages_per_page=32, visibility_timeout=30):
        out.append(QueueMessage(id=m.id, body=m.content.encode(), dequeue_count=1))  # type: ignore[no-untyped-call]
        client.delete_message(m)
    return out


def test_writes_through_the_outbox_and_the_queue_function_equal_a_replay(ledger_world) -> None:
    c, queue, clock = ledger_world
    subs = c.subscriptions
    # Order completion: two customers' subscriptions added in one transaction each.
    a1, _annual = subs.save_all(
        "cA", adds=[record("cA", 10), record("cA", 3, billing_cycle="annual")]
    )
    [b1] = subs.save_all("cB", adds=[record("cB", 7)])
    # A change applied (seats), a sync-like refresh that changes nothing priced, and a licences
    # update found by the sync.
    clock.advance(days=2)
    a1.quantity = 12
    a1 = subs.update(a1)
    a1.refreshed_at = clock.now()
    a1 = subs.update(a1)
    b1.assigned_licences = 5
    subs.save_all("cB", updates=[b1])
    messages = drain(queue)
    assert len(messages) == 4  # the refresh sent nothing
    for msg in messages:
        queue_project_ledger(msg)
    queue_project_ledger(messages[0])  # redelivered

    ledger = c.ledger
    assert rebuild(ledger, "demo", [NOV]) == []
    customer = ledger.customer_month("demo", NOV, "cA")
    assert customer is not None and customer.figures.seats == 15
    unit = a1.priced.unit.customer_price.amount  # type: ignore[union-attr]
    assert customer.figures.mrr == unit * 12 + (unit * 3 / 12).quantize(Decimal("1e-12"))
    assert ledger.totals("demo", NOV).figures.subscriptions == 3


def test_two_concurrent_projections_for_one_customer_count_each_fact_once(ledger_world) -> None:
    c, queue, _ = ledger_world
    subs = c.subscriptions
    subs.add(record("cA", 4))
    subs.add(record("cA", 6))
    first, second = drain(queue)
    barrier = threading.Barrier(2, timeout=10)
    table: LedgerTable = c.ledger  # type: ignore[assignment]
    real_write = LedgerTable.write
    raced = threading.local()
    calls: list[str] = []

    def write_after_both_read(self: LedgerTable, write: MonthWrite) -> None:
        calls.append(write.base.customer_id)
        if not getattr(raced, "done", False):
            raced.done = True
            barrier.wait()  # both have read the customer's month before either writes
        real_write(self, write)

    table.write = write_after_both_read.__get__(table)  # type: ignore[method-assign]
    errors: list[BaseException] = []

    def run(msg: QueueMessage) -> None:
        try:
            queue_project_ledger(msg)
        except BaseException as exc:  # pragma: no cover - shown by the assertion
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(m,)) for m in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(calls) == 3  # one lost the race (the customer row appeared), read again, wrote
    customer = table.customer_month("demo", NOV, "cA")
    assert customer is not None and customer.figures.seats == 10
    assert table.totals("demo", NOV).figures.seats == 10
    assert rebuild(table, "demo", [NOV]) == []


def test_rebuild_finds_a_tampered_aggregate_row(ledger_world) -> None:
    c, queue, _ = ledger_world
    c.subscriptions.add(record("cA", 4))
    for msg in drain(queue):
        queue_project_ledger(msg)
    table: LedgerTable = c.ledger  # type: ignore[assignment]
    entity = table.table.get_entity(partition("demo", NOV), "c~cA")
    entity["seats"] = 40
    table.table.update_entity(entity)
    diffs = rebuild(table, "demo", [NOV])
    assert [d.row for d in diffs] == ["customer cA"]


def test_a_month_opens_with_every_live_subscription_carried(ledger_world) -> None:
    c, queue, clock = ledger_world
    subs = c.subscriptions
    live = subs.add(record("cA", 4))
    ended = subs.add(record("cB", 2))
    ended.status = "cancelled"
    subs.update(ended)
    for msg in drain(queue):
        queue_project_ledger(msg)
    clock.advance(days=30)  # December
    assert open_months(c.ledger, clock, ["demo"]) == {"demo": 1}
    assert open_months(c.ledger, clock, ["demo"]) == {"demo": 0}
    [row] = c.ledger.subscription_months("demo", DEC).items
    assert row.subscription_id == live.id and row.opening == row.closing
    assert c.ledger.totals("demo", DEC).opened
    assert rebuild(c.ledger, "demo", [NOV, DEC]) == []


def test_the_adapter_pages_filters_by_product_and_stores_decimals_as_strings(ledger_world) -> None:
    c, queue, _ = ledger_world
    subs = c.subscriptions
    for n in range(5):
        subs.add(record("cA", n + 1))
    subs.add(record("cA", 9, catalog_item_id="OTHER:0001:X"))
    for msg in drain(queue):
        queue_project_ledger(msg)
    table: LedgerTable = c.ledger  # type: ignore[assignment]
    seen, token = [], None
    while True:
        page = table.subscription_months("demo", NOV, page_size=2, continuation_token=token)
        seen += page.items
        token = page.continuation_token
        if token is None:
            break
    assert len(seen) == 6
    assert [r.subscription_id for r in seen] == sorted(r.subscription_id for r in seen)
    other = table.subscription_months("demo", NOV, product_id="OTHER").items
    assert [r.closing.seats for r in other] == [9]
    assert table.subscription_months("demo", NOV, customer_id="cZ").items == []
    raw = table.table.get_entity(partition("demo", NOV), "c~cA")
    assert isinstance(raw["mrr"], str) and Decimal(raw["mrr"]) > 0
    assert table.totals("demo", "2020-01").figures == Figures()
    with pytest.raises(ValidationFailed):
        table.subscription_months("demo", NOV, continuation_token="garbage!")


def test_the_opening_marker_makes_a_month_carried_into_before_it_is_opened(ledger_world) -> None:
    c, _, _ = ledger_world
    c.subscriptions.add(record("cA", 4))  # (creates the test's queue, which it deletes)
    assert not c.ledger.month_slice("demo", DEC, "cA").carried_into
    c.ledger.mark_opening("demo", DEC)
    marked = c.ledger.month_slice("demo", DEC, "cA")
    assert marked.opening and marked.carried_into and not marked.opened


def test_a_message_lost_to_poison_is_sent_again_by_the_reconciliation(ledger_world) -> None:
    c, queue, clock = ledger_world
    for cid in ("cA", "cB"):
        c.customers.add(Customer(reseller="demo", id=cid, name=cid, domain=f"{cid}.example.com"))
    subs = c.subscriptions
    a = subs.add(record("cA", 4))
    open_months(c.ledger, clock, ["demo"])
    b = subs.add(record("cB", 2))
    [first, _lost] = drain(queue)  # cB's message ends in ledger-poison
    queue_project_ledger(first)
    assert reconcile(c.ledger, clock, c.customers, subs, ["demo"]) == {"demo": 1}
    for msg in drain(queue):
        queue_project_ledger(msg)
    rows = {r.subscription_id: r for r in c.ledger.subscription_months("demo", NOV).items}
    assert rows[b.id].closing.seats == 2 and rows[a.id].closing.seats == 4
    assert reconcile(c.ledger, clock, c.customers, subs, ["demo"]) == {"demo": 0}
    assert rebuild(c.ledger, "demo", [NOV]) == []


def test_the_licence_report_on_azurite_refuses_a_key_unsafe_customer_and_pages_with_bound_tokens(
    ledger_world,
) -> None:
    c, queue, clock = ledger_world
    onboard(c.resellers, clock, "demo", "CZK")
    customer = "01JCXSTA00000000000000000A"
    for n in range(3):
        c.subscriptions.add(record(customer, n + 1))
    for msg in drain(queue):
        queue_project_ledger(msg)
    staff = Principal("u1", "demo", None, Role.READ_ONLY, "u@x.example", SignInKind.PLATFORM)
    book = c.reports_book

    # Table Storage cannot hold `a/b` as a key: a 400 naming the filter, not a storage error.
    for bad in ("a/b", "#", "x?y"):
        with pytest.raises(ValidationFailed) as caught:
            licence_report(book, staff, "demo", customer_id=bad)
        assert [e.field for e in caught.value.errors] == ["customer"]

    # Table Storage's own continuation tokens, bound to the query, page through every row.
    seen, token = [], None
    while True:
        page = licence_report(book, staff, "demo", page_size=2, continuation_token=token)
        seen += [r.subscription_id for r in page.items]
        token = page.continuation_token
        if token is None:
            break
        with pytest.raises(ValidationFailed) as caught:
            licence_report(book, staff, "demo", month=DEC, page_size=2, continuation_token=token)
        assert [e.field for e in caught.value.errors] == ["continuationToken"]
    assert len(seen) == 3
