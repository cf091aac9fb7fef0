"""Change orders sent again and retried, against `FakeOrderPartnerCenter`, which replays every
answer below 500 for a repeated MS-RequestId as the simulator does: a change Partner Center
refused without applying (412, "not now") goes again under a new request id; a retried or
approved Change order takes its subscription again and meets the new-commerce rules again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from azure.functions.queue import QueueMessage

from functions._queue import run_step
from shared.domain.customers import Qualification
from shared.domain.errors import RuleBroken
from shared.domain.failures import FailureKind
from shared.domain.identity import Principal, Role, SignInKind
from shared.domain.orders import (
    ChangeKind,
    Order,
    OrderCreate,
    OrderDecision,
    OrderKind,
    OrderStatus,
    ProvisionOrderMessage,
    SubscriptionChangeOrder,
)
from shared.domain.outbox import Queue
from shared.domain.subscriptions import PendingChange, Subscription, SubscriptionChange
from shared.services import orders
from shared.services.orders import OrderBook
from shared.services.orders.submission import provision_message
from shared.services.subscriptions.requests import PendingChanges
from tests.catalog_fakes import BOTH, install_catalog
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
    customer = book.customers.get("demo", CUST_B)
    customer.tenant_id = TENANT
    customer.qualification = Qualification.APPROVED
    book.customers.update(customer)
    yield w, book, w.container.partner_center


def _deliver_all(book: OrderBook, pc: FakeOrderPartnerCenter, order: Order) -> list[float]:
    """Deliver provision-order, then each delayed message it schedules; the delays."""
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


def _bought(w: World, book: OrderBook, pc: FakeOrderPartnerCenter) -> Subscription:
    """A subscription of 10 seats bought through an order today."""
    products: Any = w.container.catalog_reader
    reseller = book.resellers.get("reseller", "demo")
    market = products.market_products(reseller.country, products.import_id(reseller.country))
    product = market[pc.fallback.product_id(BOTH)]
    line = offer_line(products, book.customers.get("demo", CUST_B), product, quantity=10)
    draft = orders.create(book, AM, "demo", CUST_B, OrderCreate.model_validate({"lines": [line]}))
    placed = orders.submit(book, AM, "demo", CUST_B, draft.id, draft.etag or "")
    _deliver_all(book, pc, placed)
    (record,) = book.subscriptions.list(CUST_B).items
    return record


def _change_order(
    book: OrderBook,
    record: Subscription,
    summary: str,
    *,
    order_status: S = S.SUBMITTED,
    **fields: Any,
) -> Order:
    """What the request path writes: the record's pending change, then its Change order."""
    purchase = next(o for o in book.orders.list("demo").items if o.kind is OrderKind.PURCHASE)
    line = purchase.lines[0].model_copy(update={"result": None})
    change = SubscriptionChangeOrder(
        kind=ChangeKind.UPDATE,
        subscription_id=record.id,
        summary=summary,
        previous_quantity=record.quantity,
        **fields,
    )
    order = Order(
        reseller="demo",
        customer_id=CUST_B,
        kind=OrderKind.CHANGE,
        change=change,
        lines=[line],
        currency=purchase.currency,
        created_by=AM.email,
    )
    record.begin_change(
        PendingChange(
            order_id=order.id,
            summary=summary,
            requested_at=book.clock.now(),
            requested_by=AM.email,
            change=change,
            needs_approval=order_status is S.PENDING_APPROVAL,
        )
    )
    book.subscriptions.update(record)
    order.move(order_status, book.clock.now(), AM.email)
    messages = [provision_message(order)] if order_status is S.SUBMITTED else []
    return book.orders.add(order, messages=messages)


def _order(book: OrderBook, order: Order) -> Order:
    return orders.get(book, AM, "demo", CUST_B, order.id)


def _record(book: OrderBook, sid: str) -> Subscription:
    return book.subscriptions.get(CUST_B, sid.lower())


def _crash_at(book: OrderBook, boundary: str) -> None:
    def crash(step: str) -> None:
        if step == boundary:
            book.after_step = None
            raise Crash(step)

    book.after_step = crash


# --- 1. a change Partner Center refused without applying goes again under a new request id ----


def test_a_change_that_lost_partner_centers_etag_race_is_sent_again_as_a_new_request(world):
    w, book, pc = world
    record = _bought(w, book, pc)
    order = _change_order(book, record, "quantity 10 → 12", quantity=12)
    assert order.change is not None
    pc.refuse_next_change = [("412", "Etag is no longer valid")]

    assert _deliver_all(book, pc, order) == []  # sent again at once, not re-enqueued

    done = _order(book, order)
    assert done.status is S.COMPLETED, done.failure
    assert done.change is not None and done.change.request_id != order.change.request_id
    assert pc.calls.count("change_subscription") == 2 and len(pc.applied_changes) == 1
    assert pc.subscriptions[record.id].quantity == 12 and _record(book, record.id).quantity == 12


@pytest.mark.parametrize("code", ["800082", "900278"])
def test_a_change_refused_as_not_now_is_sent_after_the_wait_as_a_new_request(world, code):
    w, book, pc = world
    record = _bought(w, book, pc)
    order = _change_order(book, record, "quantity 10 → 11", quantity=11)
    pc.refuse_next_change = [(code, "Try again after sometime")]

    delays = _deliver_all(book, pc, order)

    assert delays == [300]  # Partner Center's Retry-After
    done = _order(book, order)
    assert done.status is S.COMPLETED and len(pc.applied_changes) == 1
    assert pc.subscriptions[record.id].quantity == 11


def test_a_crash_after_the_new_request_id_is_saved_still_changes_partner_center_once(world):
    w, book, pc = world
    record = _bought(w, book, pc)
    order = _change_order(book, record, "quantity 10 → 13", quantity=13)
    pc.refuse_next_change = [("412", "Etag is no longer valid")]
    _crash_at(book, "request-id")
    with pytest.raises(Crash):
        _deliver_all(book, pc, order)

    _deliver_all(book, pc, order)  # the message comes again

    assert _order(book, order).status is S.COMPLETED and len(pc.applied_changes) == 1
    assert _record(book, record.id).quantity == 13


# --- 2. a retried or approved Change order takes its subscription again ----------------------


def _failed(book: OrderBook, pc: FakeOrderPartnerCenter, order: Order, code: str) -> Order:
    pc.refuse_next_change = [(code, "Partner Center refused it")]
    _deliver_all(book, pc, order)
    failed = _order(book, order)
    assert failed.status is S.FAILED and failed.failure is not None
    assert failed.failure.kind is FailureKind.REFUSED
    return failed


def test_a_refused_change_order_retried_takes_its_subscription_again_as_a_new_request(world):
    w, book, pc = world
    record = _bought(w, book, pc)
    order = _change_order(book, record, "quantity 10 → 12", quantity=12)
    failed = _failed(book, pc, order, "800091")
    assert _record(book, record.id).pending_change is None

    again = orders.retry(book, AM, "demo", CUST_B, order.id, failed.etag)

    assert again.status is S.SUBMITTED and again.change and failed.change
    assert again.change.request_id != failed.change.request_id
    taken = _record(book, record.id)
    assert taken.changing and taken.pending_change and taken.pending_change.order_id == order.id
    _deliver_all(book, pc, again)
    assert _order(book, order).status is S.COMPLETED and _record(book, record.id).quantity == 12
    assert _record(book, record.id).pending_change is None


def test_a_change_order_retried_while_another_change_holds_the_subscription_is_409(world):
    w, book, pc = world
    record = _bought(w, book, pc)
    order = _change_order(book, record, "quantity 10 → 12", quantity=12)
    failed = _failed(book, pc, order, "800091")
    other = _change_order(book, _record(book, record.id), "auto-renew off", auto_renew=False)

    with pytest.raises(RuleBroken) as refused:
        orders.retry(book, AM, "demo", CUST_B, order.id, failed.etag)

    assert refused.value.rule == "change-in-progress" and other.id in refused.value.detail
    assert _order(book, order).status is S.FAILED
    held = _record(book, record.id).pending_change
    assert held is not None and held.order_id == other.id


def test_a_refused_decrease_retried_after_its_window_closed_is_409_naming_the_rule(world):
    w, book, pc = world
    record = _bought(w, book, pc)
    order = _change_order(book, record, "quantity 10 → 8", quantity=8)
    failed = _failed(book, pc, order, "800090")
    w.clock.advance(days=8)

    with pytest.raises(RuleBroken) as refused:
        orders.retry(book, AM, "demo", CUST_B, order.id, failed.etag)

    assert refused.value.rule == "reduce-beyond-refundable"
    assert _order(book, order).status is S.FAILED
    assert _record(book, record.id).pending_change is None
    assert pc.applied_changes == []


def test_a_change_order_failed_for_a_transient_cause_resumes_with_its_request_id(world):
    w, book, pc = world
    record = _bought(w, book, pc)
    order = _change_order(book, record, "quantity 10 → 8", quantity=8)
    assert order.change is not None
    pc.change_subscription(  # made in Partner Center; the answer never came back
        TENANT, record.id, SubscriptionChange(quantity=8), request_id=order.change.request_id
    )
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
    assert failed.status is S.FAILED and failed.failure
    assert failed.failure.kind is FailureKind.TRANSIENT
    w.clock.advance(days=8)  # the window closed: the rules would refuse a new decrease

    again = orders.retry(book, AM, "demo", CUST_B, order.id, failed.etag)

    assert again.change and again.change.request_id == order.change.request_id
    assert _record(book, record.id).pending_change is not None
    _deliver_all(book, pc, again)
    assert _order(book, order).status is S.COMPLETED and len(pc.applied_changes) == 1
    assert _record(book, record.id).quantity == 8


def test_approving_a_cancellation_after_its_window_closed_rejects_it_naming_the_rule(world):
    w, book, pc = world
    record = _bought(w, book, pc)
    order = _change_order(
        book, record, "cancel", order_status=S.PENDING_APPROVAL, status="Cancelled"
    )
    w.clock.advance(days=8)

    with pytest.raises(RuleBroken) as refused:
        orders.approve(book, AM, "demo", CUST_B, order.id, order.etag or "", OrderDecision())

    assert refused.value.rule == "cancellation-window-closed"
    rejected = _order(book, order)
    assert rejected.status is S.CANCELLED
    assert "cancellation-window-closed" in (rejected.history[-1].reason or "")
    after = _record(book, record.id)
    assert after.pending_change is None and after.changing is False
    assert pc.applied_changes == [] and book.scheduler.sent == []  # type: ignore[attr-defined]


def test_approving_a_change_still_within_the_rules_submits_it_keeping_who_asked(world):
    w, book, pc = world
    record = _bought(w, book, pc)
    order = _change_order(
        book, record, "quantity 10 → 12", order_status=S.PENDING_APPROVAL, quantity=12
    )
    asked = _record(book, record.id).pending_change
    assert asked is not None
    w.clock.advance(days=1)

    approved = orders.approve(book, AM, "demo", CUST_B, order.id, order.etag or "", OrderDecision())

    assert approved.status is S.SUBMITTED
    held = _record(book, record.id).pending_change
    assert held is not None and held.order_id == order.id and not held.needs_approval
    assert (held.requested_at, held.requested_by) == (asked.requested_at, asked.requested_by)
    _deliver_all(book, pc, approved)
    assert _order(book, order).status is S.COMPLETED and _record(book, record.id).quantity == 12


# --- 5. a change that ended leaves nothing in flight on the record -------------------------------


def test_a_completed_change_leaves_the_subscription_with_nothing_in_flight_for_the_watchdog(world):
    w, book, pc = world
    record = _bought(w, book, pc)
    order = _change_order(book, record, "quantity 10 → 12", quantity=12)
    _deliver_all(book, pc, order)
    assert _order(book, order).status is S.COMPLETED

    after = _record(book, record.id)
    assert after.pending_change is None and after.changing is False
    w.clock.advance(hours=2)
    assert list(PendingChanges(book).in_flight()) == []


def test_a_refused_change_leaves_the_subscription_with_nothing_in_flight_for_the_watchdog(world):
    w, book, pc = world
    record = _bought(w, book, pc)
    order = _change_order(book, record, "cancel", status="Cancelled")
    pc.refuse_next_change = [("900213", "You have passed your 168-hour cancellation window.")]
    _deliver_all(book, pc, order)
    assert _order(book, order).status is S.FAILED

    after = _record(book, record.id)
    assert after.pending_change is None and after.changing is False
    w.clock.advance(hours=2)
    assert list(PendingChanges(book).in_flight()) == []


def test_the_watchdog_never_forgets_a_change_asked_for_after_it_listed_the_subscription(world):
    w, book, pc = world
    record = _bought(w, book, pc)
    ended = _change_order(
        book, record, "quantity 10 → 12", order_status=S.PENDING_APPROVAL, quantity=12
    )
    ended.move(S.CANCELLED, book.clock.now(), AM.email)  # rejected; its record not freed yet
    book.orders.update(ended)
    w.clock.advance(hours=1)
    watchdog = PendingChanges(book)
    (stale,) = watchdog.in_flight()
    # Meanwhile the record is freed and a new change is asked for (a live order).
    sub = _record(book, record.id)
    sub.end_change()
    book.subscriptions.update(sub)
    live = _change_order(book, _record(book, record.id), "auto-renew off", auto_renew=False)

    watchdog.nudge(stale)

    held = _record(book, record.id).pending_change
    assert held is not None and held.order_id == live.id


def test_the_watchdog_freeing_an_ended_change_keeps_a_change_asked_for_during_its_write(world):
    w, book, pc = world
    record = _bought(w, book, pc)
    ended = _change_order(
        book, record, "quantity 10 → 12", order_status=S.PENDING_APPROVAL, quantity=12
    )
    ended.move(S.CANCELLED, book.clock.now(), AM.email)  # rejected; its record not freed yet
    book.orders.update(ended)
    w.clock.advance(hours=1)
    watchdog = PendingChanges(book)
    (stale,) = watchdog.in_flight()
    subscriptions = book.subscriptions
    write = subscriptions.update
    live: list[Order] = []

    def a_request_first(sub: Subscription, **kwargs: Any) -> Subscription:
        # A person frees the record and asks for a new change just before the watchdog writes.
        if subscriptions.update is a_request_first:
            subscriptions.update = write  # type: ignore[method-assign]
            mine = _record(book, record.id)
            mine.end_change()
            write(mine)
            live.append(
                _change_order(book, _record(book, record.id), "auto-renew off", auto_renew=False)
            )
        return write(sub, **kwargs)

    subscriptions.update = a_request_first  # type: ignore[method-assign]

    watchdog.nudge(stale)

    held = _record(book, record.id).pending_change
    assert held is not None and held.order_id == live[0].id
