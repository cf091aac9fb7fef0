"""The `provision-order` step of Change orders, with in-memory fakes: each outcome of Partner
Center, the record and its price afterwards, and a crash at every step boundary."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from azure.functions.queue import QueueMessage

from functions._queue import run_step
from shared.adapters.partner_center import subscriptions as wire
from shared.domain.customers import Qualification
from shared.domain.errors import NotFound, UpstreamRejected, UpstreamUnavailable
from shared.domain.failures import Failure, FailureKind
from shared.domain.identity import NotificationEvent, Principal, Role, SignInKind
from shared.domain.orders import (
    ChangeKind,
    Order,
    OrderCreate,
    OrderKind,
    OrderStatus,
    ProvisionOrderMessage,
    SubscriptionChangeOrder,
)
from shared.domain.outbox import Queue
from shared.domain.subscriptions import NextTerm, PendingChange, Subscription, TransitionOption
from shared.services import orders, watchdog
from shared.services.orders import OrderBook
from shared.services.orders.submission import provision_message
from shared.services.subscriptions.refusals import SENTENCES, refusal_sentence
from tests.catalog_fakes import BOTH, COMMERCIAL_ONLY, install_catalog
from tests.functions.world import CUST_B, World, add_customers, build_world
from tests.order_fakes import FakeOrderPartnerCenter, install_orders, offer_line

S = OrderStatus
AM = Principal("u1", "demo", None, Role.ACCOUNT_MANAGER, "owner@demo.example", SignInKind.PLATFORM)
TENANT = "11111111-2222-3333-4444-555555555555"


class Crash(Exception):
    """The process died here."""


@pytest.fixture
def world() -> Iterator[tuple[World, OrderBook, FakeOrderPartnerCenter]]:
    w = build_world()
    install_catalog(w.container, w.clock, {})
    add_customers(w)
    book = install_orders(w.container)
    pc: FakeOrderPartnerCenter = w.container.partner_center
    customer = book.customers.get("demo", CUST_B)
    customer.tenant_id = TENANT
    customer.qualification = Qualification.APPROVED
    book.customers.update(customer)
    yield w, book, pc


def _offer(w: World, book: OrderBook, slug: str = BOTH, **extra: Any) -> dict[str, Any]:
    products: Any = w.container.catalog_reader
    reseller = book.resellers.get("reseller", "demo")
    market = products.market_products(reseller.country, products.import_id(reseller.country))
    product = market[w.container.partner_center.fallback.product_id(slug)]
    return offer_line(products, book.customers.get("demo", CUST_B), product, **extra)


def _deliver_all(book: OrderBook, pc: FakeOrderPartnerCenter, order: Order) -> list[float]:
    """Deliver provision-order through the queue edge, then each delayed message it schedules,
    until none is left; the delays asked for."""
    sched: Any = book.scheduler
    bodies: list[dict[str, Any]] = [{"reseller": order.reseller, "orderId": order.id}]
    delays: list[float] = []
    for _ in range(50):
        if not bodies:
            break
        run_step(
            QueueMessage(id="m", body=json.dumps(bodies.pop(0)).encode(), dequeue_count=1),
            ProvisionOrderMessage,
            lambda m: orders.provision(book, pc, m),
            lambda m, failure: orders.give_up(book, m, failure),
        )
        while sched.sent:
            queue, body, delay = sched.sent.pop(0)
            assert queue is Queue.PROVISION_ORDER
            bodies.append(body)
            delays.append(delay)
    return delays


def _bought(
    w: World, book: OrderBook, pc: FakeOrderPartnerCenter, quantity: int = 10
) -> Subscription:
    """A subscription bought through an order (record and Partner Center agree)."""
    # Sold with its own mark-up: a price taken afresh from the catalog (10 %) would differ.
    line = _offer(w, book, quantity=quantity, markupPercent="25")
    body = OrderCreate.model_validate({"lines": [line]})
    draft = orders.create(book, AM, "demo", CUST_B, body)
    placed = orders.submit(book, AM, "demo", CUST_B, draft.id, draft.etag or "")
    _deliver_all(book, pc, placed)
    (record,) = book.subscriptions.list(CUST_B).items
    book.notifications.rows.clear()  # type: ignore[union-attr]
    return record


def _change_order(
    book: OrderBook, record: Subscription, kind: ChangeKind, summary: str, **fields: Any
) -> Order:
    """What the request path writes: the record's pending change, then the Change order
    (Submitted, one line priced as the record's offer) with its provision-order message."""
    purchase = next(o for o in book.orders.list("demo").items if o.kind is OrderKind.PURCHASE)
    line = purchase.lines[0].model_copy(update={"result": None})
    if fields.get("quantity"):
        line.quantity = fields["quantity"]
    order = Order(
        reseller="demo",
        customer_id=CUST_B,
        kind=OrderKind.CHANGE,
        change=SubscriptionChangeOrder(
            kind=kind,
            subscription_id=record.id,
            summary=summary,
            previous_quantity=record.quantity,
            **fields,
        ),
        lines=[line],
        currency=purchase.currency,
        created_by=AM.email,
    )
    record.pending_change = PendingChange(
        order_id=order.id, summary=summary, requested_at=book.clock.now(), requested_by=AM.email
    )
    book.subscriptions.update(record)
    order.move(S.SUBMITTED, book.clock.now(), AM.email)
    return book.orders.add(order, messages=[provision_message(order)])


def _accept_later(pc: FakeOrderPartnerCenter, running_reads: int) -> None:
    """The next change answers 202 and is done on the read after `running_reads` reads."""
    pc.accept_next_changes, pc.accepted_polls = 1, running_reads + 1


def _upgradable(pc: FakeOrderPartnerCenter, record: Subscription, target: str) -> None:
    """Partner Center lists `target` as an eligible upgrade of the subscription."""
    pc.transition_targets[record.id] = [TransitionOption(target, "Visio Plan 1", eligible=True)]


def _order(book: OrderBook, order: Order) -> Order:
    return orders.get(book, AM, "demo", CUST_B, order.id)


def _record(book: OrderBook, sid: str) -> Subscription:
    return book.subscriptions.get(CUST_B, sid.lower())


def _agrees_with_partner_center(record: Subscription, pc: FakeOrderPartnerCenter) -> None:
    facts = pc.subscriptions[record.id]
    assert (record.quantity, record.status, record.auto_renew, record.next_term) == (
        facts.quantity,
        facts.status,
        facts.auto_renew,
        facts.next_term,
    )
    assert record.billing_cycle == facts.billing_cycle
    assert record.term_duration == facts.term_duration


def _emails(book: OrderBook) -> list[Any]:
    return list(book.notifications.rows.values())  # type: ignore[union-attr]


# --- outcomes ----------------------------------------------------------------------------------


def test_a_quantity_increase_is_made_once_and_the_record_and_its_price_follow(world):
    w, book, pc = world
    record = _bought(w, book, pc)
    sold = record.priced
    assert sold is not None
    order = _change_order(book, record, ChangeKind.UPDATE, "quantity 10 → 12", quantity=12)

    assert _deliver_all(book, pc, order) == []  # applied at once: nothing waits
    done = _order(book, order)
    assert done.status is S.COMPLETED and done.change is not None and done.change.applied
    assert len(pc.changes) == 1 and pc.changes[0][0] == order.change.request_id  # type: ignore[union-attr]
    after = _record(book, record.id)
    _agrees_with_partner_center(after, pc)
    assert after.quantity == 12 and after.pending_change is None
    assert after.priced is not None and after.priced.quantity == 12
    assert sold.markup_percent == Decimal(25)
    assert after.priced.unit.customer_price == sold.unit.customer_price  # the price as sold
    assert after.priced.extended.customer_price == sold.unit.customer_price * 12
    assert after.refreshed_at == w.clock.now()


def test_a_change_is_e_mailed_as_subscription_changed_saying_what_changed(world):
    w, book, pc = world
    record = _bought(w, book, pc)
    reseller = book.resellers.get("reseller", "demo")
    reseller.settings.notifications.events[NotificationEvent.ORDER_COMPLETED] = False
    book.resellers.update(reseller)
    order = _change_order(book, record, ChangeKind.UPDATE, "quantity 10 → 12", quantity=12)
    _deliver_all(book, pc, order)
    (email,) = _emails(book)
    assert "quantity 10 → 12" in email.email.subject and "is done" in email.email.text

    reseller = book.resellers.get("reseller", "demo")
    reseller.settings.notifications.events[NotificationEvent.SUBSCRIPTION_CHANGED] = False
    book.resellers.update(reseller)
    book.notifications.rows.clear()  # type: ignore[union-attr]
    again = _change_order(
        book, _record(book, record.id), ChangeKind.UPDATE, "quantity 12 → 14", quantity=14
    )
    _deliver_all(book, pc, again)
    assert _order(book, again).status is S.COMPLETED and _emails(book) == []


def test_a_suspension_keeps_the_price_snapshot_as_it_was(world):
    w, book, pc = world
    record = _bought(w, book, pc)
    order = _change_order(book, record, ChangeKind.UPDATE, "suspend", status="Suspended")
    _deliver_all(book, pc, order)
    after = _record(book, record.id)
    assert _order(book, order).status is S.COMPLETED
    assert after.status == "Suspended" and not after.auto_renew
    assert after.priced == record.priced


def test_a_change_accepted_for_later_is_polled_by_re_enqueueing_until_done(world):
    w, book, pc = world
    record = _bought(w, book, pc)
    _accept_later(pc, 2)
    pc.accepted_retry_after = 3
    order = _change_order(book, record, ChangeKind.UPDATE, "quantity 10 → 15", quantity=15)

    delays = _deliver_all(book, pc, order)

    assert delays == [3, 1, 1]  # the 202's Retry-After, then the policy's poll interval
    assert pc.calls.count("change_subscription") == 1 and pc.calls.count("change_progress") == 3
    done = _order(book, order)
    assert done.status is S.COMPLETED and done.change and done.change.accepted_location
    assert len(pc.changes) == 1
    _agrees_with_partner_center(_record(book, record.id), pc)
    assert _record(book, record.id).quantity == 15


def test_a_change_accepted_for_later_that_fails_ends_failed_and_frees_the_subscription(world):
    w, book, pc = world
    record = _bought(w, book, pc)
    _accept_later(pc, 1)
    pc.accepted_failure = ("800090", "Subscription quantity cannot be decreased.")
    order = _change_order(book, record, ChangeKind.UPDATE, "quantity 10 → 8", quantity=8)
    _deliver_all(book, pc, order)
    failed = _order(book, order)
    assert failed.status is S.FAILED and failed.failure is not None
    assert failed.failure.kind is FailureKind.REFUSED
    assert failed.failure.reason == refusal_sentence("800090", None)
    assert _record(book, record.id).pending_change is None


def test_a_change_whose_operation_partner_center_reports_failed_ends_failed_not_completed(world):
    # What the REST adapter makes of a failed operation resource, given to the step as is.
    w, book, pc = world
    record = _bought(w, book, pc)
    _accept_later(pc, 1)
    operation = {"status": "failed", "error": {"code": 800090, "description": "No decrease."}}
    pc.change_progress = lambda *a, **k: wire.progress(operation, None)  # type: ignore[method-assign]
    order = _change_order(book, record, ChangeKind.UPDATE, "quantity 10 → 8", quantity=8)
    _deliver_all(book, pc, order)
    failed = _order(book, order)
    assert failed.status is S.FAILED and failed.failure is not None
    assert failed.failure.reason == refusal_sentence("800090", None)
    assert _record(book, record.id).quantity == 10
    assert _record(book, record.id).pending_change is None


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("800090", "7-day window"),
        ("900213", "cancellation window has closed"),
        ("800091", "suspended"),
        ("800073", "qualification"),
        ("10001", "not an eligible upgrade"),
        ("123456", "Partner Center refused the change: The moon is full (code 123456)"),
    ],
)
def test_a_refusal_fails_the_order_with_a_sentence_and_frees_the_subscription(world, code, words):
    w, book, pc = world
    record = _bought(w, book, pc)
    order = _change_order(book, record, ChangeKind.UPDATE, "cancel", status="Cancelled")
    pc.fail_next = [UpstreamRejected("The moon is full.", code=code, status=400)]

    _deliver_all(book, pc, order)

    failed = _order(book, order)
    assert failed.status is S.FAILED and failed.failure is not None
    assert failed.failure.kind is FailureKind.REFUSED
    assert words in failed.failure.reason and failed.failure.detail == "The moon is full."
    after = _record(book, record.id)
    assert after.pending_change is None and after.status == "Active"
    (email,) = _emails(book)
    assert "failed" in email.email.subject and words in email.email.text


def test_every_documented_refusal_code_has_its_own_sentence():
    for code in ("800090", "900213", "800091", "800082", "900278", "800073", "800075"):
        assert code in SENTENCES
        assert refusal_sentence(code, "x").endswith(f"(Partner Center code {code}).")


@pytest.mark.parametrize(
    "not_now",
    [
        UpstreamUnavailable("The subscription renewal is in progress.", retry_after=20),
        UpstreamRejected("Another operation is pending.", code="900278", status=409),
        UpstreamRejected("Rate limit is exceeded.", code="429", status=429),
    ],
)
def test_not_ready_800082_900278_or_throttled_waits_then_applies(world, not_now):
    w, book, pc = world
    record = _bought(w, book, pc)
    order = _change_order(book, record, ChangeKind.UPDATE, "quantity 10 → 11", quantity=11)
    pc.fail_next = [not_now, not_now]

    delays = _deliver_all(book, pc, order)

    expected = 20 if isinstance(not_now, UpstreamUnavailable) else 1
    assert delays == [expected, expected]
    assert _order(book, order).status is S.COMPLETED and len(pc.changes) == 1
    assert _record(book, record.id).quantity == 11


def test_waits_stop_after_max_polls_and_the_watchdog_then_fails_the_order_and_frees_it(world):
    w, book, pc = world
    record = _bought(w, book, pc)
    order = _change_order(book, record, ChangeKind.UPDATE, "quantity 10 → 11", quantity=11)
    pc.fail_next = [UpstreamUnavailable("renewal in progress")] * 100

    _deliver_all(book, pc, order)

    assert pc.calls.count("change_subscription") == book.policy.max_polls + 1
    waiting = _order(book, order)
    assert waiting.status is S.SUBMITTED  # nothing re-enqueued: the watchdog's now
    source = orders.InFlightOrders(book)
    w.clock.advance(minutes=31)
    watchdog.watch([source], w.clock.now())
    w.clock.advance(minutes=31)
    report = watchdog.watch([source], w.clock.now())
    assert [i.id for i in report.failed] == [order.id]
    failed = _order(book, order)
    assert failed.status is S.FAILED and failed.failure is not None
    assert failed.failure.kind is FailureKind.TRANSIENT
    assert _record(book, record.id).pending_change is None


def test_partner_center_etag_race_is_sent_again_at_once_under_a_new_request_id(world):
    w, book, pc = world
    record = _bought(w, book, pc)
    order = _change_order(book, record, ChangeKind.UPDATE, "auto-renew off", auto_renew=False)
    pc.refuse_next_change = [("412", "the subscription changed since it was read")] * 2

    assert _deliver_all(book, pc, order) == []  # sent again at once, not re-enqueued

    assert pc.calls.count("change_subscription") == 3
    done = _order(book, order)
    assert done.status is S.COMPLETED and len(pc.changes) == 1
    # A 412 is kept for its request id by Partner Center: each resend is a new request.
    assert done.change and order.change and done.change.request_id != order.change.request_id
    assert _record(book, record.id).auto_renew is False


def test_an_upgrade_moves_the_seats_to_a_new_subscription_record_priced_at_the_new_offer(world):
    w, book, pc = world
    record = _bought(w, book, pc)
    target = _offer(w, book, COMMERCIAL_ONLY)["catalogItemId"]
    _upgradable(pc, record, target)
    order = _change_order(
        book,
        record,
        ChangeKind.UPGRADE,
        "upgrade to Visio",
        to_catalog_item_id=target,
        quantity=record.quantity,
    )

    _deliver_all(book, pc, order)

    done = _order(book, order)
    assert done.status is S.COMPLETED
    new_id = done.lines[0].result.subscription_id  # type: ignore[union-attr]
    assert new_id and new_id != record.id and len(pc.changes) == 1
    old, new = _record(book, record.id), _record(book, new_id)
    _agrees_with_partner_center(old, pc)
    _agrees_with_partner_center(new, pc)
    assert old.status == "Cancelled" and old.pending_change is None
    assert new.catalog_item_id == target and new.order_id == order.id
    assert new.priced is not None and new.priced.quantity == record.quantity
    assert new.priced.price_sheet.product_id.upper() == target.split(":")[0].upper()
    assert new.priced.price_sheet != (record.priced.price_sheet if record.priced else None)


def test_a_scheduled_change_is_recorded_as_the_next_term_and_its_removal_clears_it(world):
    w, book, pc = world
    record = _bought(w, book, pc)
    order = _change_order(book, record, ChangeKind.SCHEDULE, "20 seats at renewal", quantity=20)
    _deliver_all(book, pc, order)
    after = _record(book, record.id)
    # Partner Center keeps the whole next term: what the change left out is the current one.
    kept = NextTerm(record.catalog_item_id, 20, record.term_duration, record.billing_cycle)
    assert after.next_term == kept and after.quantity == 10
    assert after.priced == record.priced
    again = _change_order(book, after, ChangeKind.UNSCHEDULE, "no change at renewal")
    _deliver_all(book, pc, again)
    assert _record(book, record.id).next_term is None
    assert _order(book, again).status is S.COMPLETED


def test_a_change_order_that_gives_up_after_its_tries_frees_the_subscription(world):
    w, book, pc = world
    record = _bought(w, book, pc)
    order = _change_order(book, record, ChangeKind.UPDATE, "quantity 10 → 12", quantity=12)
    pc.fail_next = [RuntimeError("connection reset")]
    body = json.dumps({"reseller": "demo", "orderId": order.id}).encode()
    with pytest.raises(RuntimeError):
        run_step(
            QueueMessage(id="m5", body=body, dequeue_count=5),
            ProvisionOrderMessage,
            lambda m: orders.provision(book, pc, m),
            lambda m, failure: orders.give_up(book, m, failure),
        )
    failed = _order(book, order)
    assert failed.status is S.FAILED and failed.failure is not None
    assert failed.failure.kind is FailureKind.TRANSIENT
    assert "ask for the change again" in failed.failure.reason
    assert _record(book, record.id).pending_change is None


def test_a_change_partner_center_made_is_not_failed_when_its_step_runs_out_of_tries(world):
    w, book, pc = world
    record = _bought(w, book, pc)
    order = _change_order(book, record, ChangeKind.UPDATE, "quantity 10 → 12", quantity=12)
    read = pc.subscription

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("storage hiccup after the change was made")

    pc.subscription = broken  # type: ignore[method-assign]
    body = json.dumps({"reseller": "demo", "orderId": order.id}).encode()
    for tries in range(1, 6):
        with pytest.raises(RuntimeError):
            run_step(
                QueueMessage(id="m", body=body, dequeue_count=tries),
                ProvisionOrderMessage,
                lambda m: orders.provision(book, pc, m),
                lambda m, failure: orders.give_up(book, m, failure),
            )
    held = _order(book, order)
    assert pc.subscriptions[record.id].quantity == 12
    assert held.status is S.PROVISIONING and held.change is not None and held.change.applied
    assert _record(book, record.id).pending_change is not None

    # The watchdog only ever sends it on again, and then it ends as Partner Center has it.
    pc.subscription = read  # type: ignore[method-assign]
    w.clock.advance(hours=2)
    report = watchdog.watch([orders.InFlightOrders(book)], w.clock.now())
    assert report.failed == [] and [i.id for i in report.nudged] == [order.id]
    _deliver_all(book, pc, order)
    assert _order(book, order).status is S.COMPLETED
    _agrees_with_partner_center(_record(book, record.id), pc)


def test_a_change_partner_center_accepted_is_not_failed_when_its_polls_run_out_of_tries(world):
    w, book, pc = world
    record = _bought(w, book, pc)
    _accept_later(pc, 1)
    order = _change_order(book, record, ChangeKind.UPDATE, "quantity 10 → 12", quantity=12)
    orders.provision(book, pc, ProvisionOrderMessage(reseller="demo", order_id=order.id))
    orders.give_up(
        book,
        ProvisionOrderMessage(reseller="demo", order_id=order.id),
        Failure(kind=FailureKind.TRANSIENT, reason="connection reset"),
    )
    assert _order(book, order).status is S.PROVISIONING
    assert _record(book, record.id).pending_change is not None


def test_a_refused_change_retried_is_sent_as_a_new_request(world):
    w, book, pc = world
    record = _bought(w, book, pc)
    order = _change_order(book, record, ChangeKind.UPDATE, "quantity 10 → 12", quantity=12)
    pc.fail_next = [UpstreamRejected("Not now.", code="800091", status=400)]
    _deliver_all(book, pc, order)
    failed = _order(book, order)
    again = orders.retry(book, AM, "demo", CUST_B, order.id, failed.etag)
    assert again.change is not None and failed.change is not None
    assert again.change.request_id != failed.change.request_id


def test_a_change_partner_center_accepted_is_never_failed_by_the_watchdog(world):
    w, book, pc = world
    record = _bought(w, book, pc)
    _accept_later(pc, 10**6)
    order = _change_order(book, record, ChangeKind.UPDATE, "quantity 10 → 12", quantity=12)
    orders.provision(book, pc, ProvisionOrderMessage(reseller="demo", order_id=order.id))
    source = orders.InFlightOrders(book)
    for _ in range(4):
        w.clock.advance(minutes=31)
        report = watchdog.watch([source], w.clock.now())
        assert report.failed == []
    assert _order(book, order).status is S.PROVISIONING


# --- a crash at every step boundary --------------------------------------------------------


def _crash_at(book: OrderBook, boundary: str) -> None:
    def crash(step: str) -> None:
        if step == boundary:
            book.after_step = None
            raise Crash(step)

    book.after_step = crash


@pytest.mark.parametrize(
    ("boundary", "running_reads"),
    [
        ("applied", None),
        ("record", None),
        ("completed", None),
        ("accepted", 1),
        ("poll", 1),
        ("record", 1),
        ("completed", 1),
    ],
)
def test_a_crash_at_each_step_boundary_still_changes_partner_center_once(
    world, boundary, running_reads
):
    w, book, pc = world
    record = _bought(w, book, pc)
    if running_reads is not None:
        _accept_later(pc, running_reads)
    order = _change_order(book, record, ChangeKind.UPDATE, "quantity 10 → 13", quantity=13)
    _crash_at(book, boundary)
    with pytest.raises(Crash):
        _deliver_all(book, pc, order)
    assert book.after_step is None  # it did crash there

    _deliver_all(book, pc, order)  # the message comes again

    done = _order(book, order)
    assert done.status is S.COMPLETED and len(pc.changes) == 1
    after = _record(book, record.id)
    _agrees_with_partner_center(after, pc)
    assert after.pending_change is None and after.priced and after.priced.quantity == 13
    assert len([e for e in _emails(book) if "is done" in e.email.subject]) == 1


@pytest.mark.parametrize(
    ("boundary", "started"),
    [
        ("applied", False),
        ("record", False),
        ("completed", False),
        # Partner Center answers the transition "started" and finishes it on the 2nd read.
        ("transition-started", True),
        ("poll", True),
        ("applied", True),
    ],
)
def test_a_crash_at_each_step_boundary_of_an_upgrade_still_upgrades_once(world, boundary, started):
    w, book, pc = world
    record = _bought(w, book, pc)
    target = _offer(w, book, COMMERCIAL_ONLY)["catalogItemId"]
    _upgradable(pc, record, target)
    if started:
        pc.start_next_transitions, pc.transition_polls = 1, 2
    order = _change_order(
        book, record, ChangeKind.UPGRADE, "upgrade", to_catalog_item_id=target, quantity=4
    )
    _crash_at(book, boundary)
    with pytest.raises(Crash):
        _deliver_all(book, pc, order)
    _deliver_all(book, pc, order)
    done = _order(book, order)
    assert done.status is S.COMPLETED and len(pc.changes) == 1
    assert len(pc.subscriptions) == 2 and len(book.subscriptions.list(CUST_B).items) == 2
    for rec in book.subscriptions.list(CUST_B).items:
        _agrees_with_partner_center(rec, pc)
    assert _record(book, record.id).quantity == 6


def test_a_change_made_whose_answer_was_lost_is_replayed_not_made_twice(world):
    w, book, pc = world
    record = _bought(w, book, pc)
    order = _change_order(book, record, ChangeKind.UPDATE, "quantity 10 → 12", quantity=12)
    assert order.change is not None
    from shared.domain.subscriptions import SubscriptionChange

    pc.change_subscription(  # it happened; the answer never came back
        TENANT, record.id, SubscriptionChange(quantity=12), request_id=order.change.request_id
    )
    _deliver_all(book, pc, order)
    assert _order(book, order).status is S.COMPLETED and len(pc.changes) == 1


def test_a_crash_between_the_failed_order_and_its_subscription_is_mended_on_redelivery(world):
    w, book, pc = world
    record = _bought(w, book, pc)
    order = _change_order(book, record, ChangeKind.UPDATE, "cancel", status="Cancelled")
    pc.fail_next = [UpstreamRejected("Too late.", code="900213", status=400)]
    _crash_at(book, "failed")
    with pytest.raises(Crash):
        _deliver_all(book, pc, order)
    assert _order(book, order).status is S.FAILED
    assert _record(book, record.id).pending_change is not None
    _deliver_all(book, pc, order)
    assert _record(book, record.id).pending_change is None
    assert pc.changes == []


def test_prices_are_decimal_with_currency_after_a_change(world):
    w, book, pc = world
    record = _bought(w, book, pc)
    order = _change_order(book, record, ChangeKind.UPDATE, "quantity 10 → 12", quantity=12)
    _deliver_all(book, pc, order)
    priced = _record(book, record.id).priced
    assert priced is not None and isinstance(priced.extended.customer_price.amount, Decimal)
    assert priced.extended.customer_price.currency == priced.currency


def _started_upgrade(
    w: World, book: OrderBook, pc: FakeOrderPartnerCenter, reads: int
) -> tuple[Subscription, Order, str]:
    """A subscription and its upgrade order, Partner Center answering the transition
    "started" and ending it on the `reads`-th read."""
    record = _bought(w, book, pc)
    target = _offer(w, book, COMMERCIAL_ONLY)["catalogItemId"]
    _upgradable(pc, record, target)
    pc.start_next_transitions, pc.transition_polls = 1, reads
    order = _change_order(
        book, record, ChangeKind.UPGRADE, "upgrade", to_catalog_item_id=target, quantity=4
    )
    return record, order, target


def test_an_upgrade_answered_started_is_polled_and_completes_only_once_the_seats_moved(world):
    w, book, pc = world
    record, order, target = _started_upgrade(w, book, pc, reads=3)
    _crash_at(book, "poll")  # stop at the first look again, to see the order in between
    with pytest.raises(Crash):
        _deliver_all(book, pc, order)
    between = _order(book, order)
    assert between.status is S.PROVISIONING and between.change is not None
    assert between.change.transition_id and not between.change.applied
    assert _record(book, record.id).pending_change is not None
    assert len(book.subscriptions.list(CUST_B).items) == 1  # nothing moved yet
    assert len(pc.subscriptions) == 1 and _record(book, record.id).quantity == 10

    delays = _deliver_all(book, pc, order)

    assert delays and all(d > 0 for d in delays)  # waited by re-enqueueing, never in the call
    done = _order(book, order)
    assert done.status is S.COMPLETED
    new_id = done.lines[0].result.subscription_id  # type: ignore[union-attr]
    assert new_id and new_id != record.id
    assert pc.calls.count("transition") == 1 and pc.calls.count("transition_progress") == 3
    assert len(pc.changes) == 1
    new = _record(book, new_id)
    assert new.catalog_item_id == target and new.quantity == 4
    old = _record(book, record.id)
    assert old.quantity == 6 and old.pending_change is None
    for rec in (old, new):
        _agrees_with_partner_center(rec, pc)


def test_a_started_transition_partner_center_does_not_list_yet_is_read_again_later(
    world, monkeypatch
):
    w, book, pc = world
    _record_before, order, _ = _started_upgrade(w, book, pc, reads=2)
    real = pc.transition_progress
    unlisted = [True]

    def lagging(*args: Any, **kwargs: Any) -> Any:
        if unlisted.pop() if unlisted else False:
            raise NotFound("transition not found")  # listed a moment after it started
        return real(*args, **kwargs)

    monkeypatch.setattr(pc, "transition_progress", lagging)

    _deliver_all(book, pc, order)

    assert _order(book, order).status is S.COMPLETED
    assert len(pc.changes) == 1


def test_a_started_upgrade_that_partner_center_fails_fails_the_order_with_its_reason(world):
    w, book, pc = world
    record, order, _ = _started_upgrade(w, book, pc, reads=2)
    pc.transition_failure = "The target offer is no longer available."

    _deliver_all(book, pc, order)

    done = _order(book, order)
    assert done.status is S.FAILED and done.failure is not None
    assert "no longer available" in done.failure.reason
    after = _record(book, record.id)
    assert after.pending_change is None and after.quantity == 10  # freed, nothing moved
    assert len(pc.subscriptions) == 1 and len(book.subscriptions.list(CUST_B).items) == 1
    assert [e for e in _emails(book) if "is done" in e.email.subject] == []


def test_a_started_transition_is_never_given_up_while_partner_center_runs_it(world):
    w, book, pc = world
    _, order, _ = _started_upgrade(w, book, pc, reads=2)
    _crash_at(book, "transition-started")
    with pytest.raises(Crash):
        _deliver_all(book, pc, order)

    message = ProvisionOrderMessage(reseller="demo", order_id=order.id)
    orders.give_up(book, message, Failure(FailureKind.TRANSIENT, "kept crashing"))

    assert _order(book, order).status is S.PROVISIONING  # left for the watchdog
