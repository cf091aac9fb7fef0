"""Orders with in-memory fakes: the state machine, validation, pricing views and the step."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from azure.functions.queue import QueueMessage

from functions._queue import run_step
from shared.domain.customers import CustomerStatus, Qualification
from shared.domain.errors import (
    ConcurrencyConflict,
    Conflict,
    Forbidden,
    NotFound,
    UpstreamRejected,
    UpstreamUnavailable,
    ValidationFailed,
)
from shared.domain.failures import FailureKind
from shared.domain.identity import DISTRIBUTOR, NotificationEvent, Principal, Role, SignInKind
from shared.domain.money import Money
from shared.domain.orders import (
    TRANSITIONS,
    Order,
    OrderCreate,
    OrderStatus,
    ProvisionOrderMessage,
    can_move,
    order_row_key,
)
from shared.domain.outbox import Queue
from shared.domain.pricing import PriceSource
from shared.services import orders, watchdog
from shared.services.attribution import names_for
from shared.services.orders import OrderBook, placing
from tests.catalog_fakes import BOTH, cost_fields, install_catalog
from tests.functions.world import CUST_A, CUST_B, World, add_customers, build_world
from tests.order_fakes import FakeOrderPartnerCenter, install_orders, offer_line

S = OrderStatus
AM = Principal("u1", "demo", None, Role.ACCOUNT_MANAGER, "owner@demo.example", SignInKind.PLATFORM)
CADMIN = Principal(
    "u2", "demo", CUST_A, Role.CUSTOMER_ADMIN, "cadmin@a.example", SignInKind.PLATFORM
)
DADMIN = Principal(
    "u9", DISTRIBUTOR, None, Role.DISTRIBUTOR_ADMIN, "d@dist.example", SignInKind.PLATFORM
)
TENANT = "11111111-2222-3333-4444-555555555555"


@pytest.fixture
def world() -> Iterator[tuple[World, OrderBook, FakeOrderPartnerCenter]]:
    w = build_world()
    install_catalog(w.container, w.clock, {})
    add_customers(w)
    book = install_orders(w.container)
    for cid in (CUST_A, CUST_B):
        customer = book.customers.get("demo", cid)
        customer.tenant_id = TENANT
        customer.qualification = Qualification.APPROVED
        book.customers.update(customer)
    yield w, book, w.container.partner_center


def _line(w: World, book: OrderBook, customer_id: str = CUST_B, **extra: Any) -> dict[str, Any]:
    products: Any = w.container.catalog_reader
    reseller = book.resellers.get("reseller", "demo")
    market = products.market_products(reseller.country, products.import_id(reseller.country))
    world_pc: Any = w.container.partner_center.fallback
    product = market[world_pc.product_id(BOTH)]
    return offer_line(products, book.customers.get("demo", customer_id), product, **extra)


def _draft(w: World, book: OrderBook, *lines: dict[str, Any], who: Principal = AM) -> Order:
    body = OrderCreate.model_validate({"lines": list(lines) or [_line(w, book)]})
    return orders.create(book, who, "demo", CUST_B if who is AM else CUST_A, body)


def _run(book: OrderBook, pc: FakeOrderPartnerCenter, order: Order) -> Order:
    """Deliver provision-order, and every delayed message it schedules, until nothing is left."""
    sched: Any = book.scheduler
    messages = [ProvisionOrderMessage(reseller=order.reseller, order_id=order.id)]
    for _ in range(20):
        if not messages:
            break
        orders.provision(book, pc, messages.pop(0))
        while sched.sent:
            _, body, _ = sched.sent.pop(0)
            messages.append(ProvisionOrderMessage.model_validate(body))
    return orders.get(book, AM, "demo", order.customer_id, order.id)


# --- the state machine --------------------------------------------------------------------


def test_order_transition_table_allows_exactly_the_designed_moves():
    allowed = {(a, b) for a in S for b in S if can_move(a, b)}
    assert allowed == {
        (S.DRAFT, S.PENDING_APPROVAL),
        (S.DRAFT, S.SUBMITTED),
        (S.DRAFT, S.CANCELLED),
        (S.PENDING_APPROVAL, S.SUBMITTED),
        (S.PENDING_APPROVAL, S.CANCELLED),
        (S.SUBMITTED, S.PROVISIONING),
        (S.SUBMITTED, S.FAILED),
        (S.PROVISIONING, S.COMPLETED),
        (S.PROVISIONING, S.COMPLETED_WITH_ERRORS),
        (S.PROVISIONING, S.FAILED),
        (S.FAILED, S.SUBMITTED),
    }
    assert set(TRANSITIONS) == set(S)


def test_a_move_outside_the_table_is_a_conflict_and_leaves_the_order_as_it_was(world):
    w, book, _ = world
    order = _draft(w, book)
    with pytest.raises(Conflict):
        order.move(S.COMPLETED, w.clock.now(), "x")
    assert order.status is S.DRAFT and len(order.history) == 1


def test_order_row_keys_sort_newest_first():
    older, newer = "01JCX0000000000000000000AA", "01JCX0000000000000000000AB"
    assert order_row_key(newer) < order_row_key(older)


# --- drafts, validation, views


def test_draft_is_priced_with_every_layer_in_the_resellers_currency(world):
    w, book, _ = world
    order = _draft(w, book, _line(w, book, markupPercent="20"))
    priced = order.lines[0].priced
    unit = priced.unit
    assert unit.reseller_cost.currency == "CZK" == unit.customer_price.currency
    assert unit.customer_price == (unit.reseller_cost * Decimal("1.2")).rounded()
    assert priced.markup_percent == 20 and priced.source is PriceSource.LINE_MARKUP
    assert priced.extended.customer_price == unit.customer_price * priced.quantity


def test_pinned_unit_price_is_kept_as_a_price(world):
    w, book, _ = world
    order = _draft(w, book, _line(w, book, unitPrice={"amount": "150.00", "currency": "CZK"}))
    assert order.lines[0].priced.unit.customer_price == Money.of("150.00", "CZK")
    assert order.lines[0].priced.pinned


def test_a_unit_price_in_another_currency_is_refused_naming_the_line(world):
    w, book, _ = world
    line = _line(w, book, unitPrice={"amount": "6.00", "currency": "EUR"})
    with pytest.raises(ValidationFailed) as exc:
        _draft(w, book, _line(w, book), line)
    assert [e.field for e in exc.value.errors] == ["lines[1].unitPrice"]
    assert not book.orders.rows  # type: ignore[attr-defined]


def _view(book: Any, principal: Principal, order: Any) -> dict[str, Any]:
    names = names_for(book, principal, order.reseller, order.customer_id)
    return orders.present(principal, order, names).model_dump(mode="json", by_alias=True)


def test_staff_never_see_microsofts_cost_and_distributor_admins_do(world):
    w, book, _ = world
    order = _draft(w, book)
    staff = orders.present(
        AM, order, names_for(book, AM, order.reseller, order.customer_id)
    ).model_dump(mode="json", by_alias=True)
    admin = orders.present(
        DADMIN, order, names_for(book, DADMIN, order.reseller, order.customer_id)
    ).model_dump(mode="json", by_alias=True)
    assert "resellerCost" in _keys(staff) and "microsoftCost" not in _keys(staff)
    assert "microsoftCost" in _keys(admin)
    assert "distributorMarkupPercent" not in _keys(staff)


def test_bad_lines_are_refused_naming_each_line_and_field(world):
    w, book, _ = world
    good = _line(w, book)
    bad_term = {**good, "termDuration": "P3M"}
    unknown = {**good, "catalogItemId": "NOPE:0001:NOPE"}
    too_many = {**good, "quantity": 99999}
    with pytest.raises(ValidationFailed) as exc:
        _draft(w, book, good, bad_term, unknown, too_many)
    fields = {e.field for e in exc.value.errors}
    assert fields == {"lines[1].billingCycle", "lines[2].catalogItemId", "lines[3].quantity"}
    assert not book.orders.rows  # type: ignore[attr-defined]


def test_an_education_offer_needs_an_approved_qualification(world):
    w, book, _ = world
    customer = book.customers.get("demo", CUST_A)
    customer.segment, customer.qualification = "education", Qualification.PENDING
    book.customers.update(customer)
    line = _line(w, book, CUST_A, segment="education")
    with pytest.raises(ValidationFailed) as exc:
        orders.create(book, AM, "demo", CUST_A, OrderCreate.model_validate({"lines": [line]}))
    assert exc.value.errors[0].field == "lines[0].catalogItemId"
    assert "qualification" in exc.value.errors[0].message


def test_a_failed_customer_takes_no_orders(world):
    w, book, _ = world
    customer = book.customers.get("demo", CUST_B)
    customer.status, customer.failure_reason = CustomerStatus.FAILED, "domain taken"
    book.customers.update(customer)
    with pytest.raises(Conflict):
        _draft(w, book)


def test_a_customer_users_view_of_an_order_has_no_cost_margin_or_markup(world):
    w, book, _ = world
    order = _draft(w, book, _line(w, book, markupPercent="15"))
    reader = Principal(
        "u3", "demo", CUST_B, Role.CUSTOMER_READER, "r@b.example", SignInKind.PLATFORM
    )
    public = orders.present(
        reader, order, names_for(book, reader, order.reseller, order.customer_id)
    ).model_dump(mode="json", by_alias=True)
    staff = orders.present(
        AM, order, names_for(book, AM, order.reseller, order.customer_id)
    ).model_dump(mode="json", by_alias=True)
    assert cost_fields(public) == []
    assert not [k for k in _keys(public) if "markup" in k.lower() or "margin" in k.lower()]
    assert cost_fields(staff)  # the scan does find them where they are


def _keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [*value, *(k for v in value.values() for k in _keys(v))]
    if isinstance(value, list):
        return [k for v in value for k in _keys(v)]
    return []


def test_customer_admin_orders_only_where_allowed_and_always_wait_for_approval(world):
    w, book, _ = world
    with pytest.raises(Forbidden):
        _draft(w, book, _line(w, book, CUST_A), who=CADMIN)
    reseller = book.resellers.get("reseller", "demo")
    reseller.settings.customer_ordering_enabled = True
    book.resellers.update(reseller)
    order = _draft(w, book, _line(w, book, CUST_A), who=CADMIN)
    submitted = orders.submit(book, CADMIN, "demo", CUST_A, order.id, order.etag or "")
    assert submitted.status is S.PENDING_APPROVAL
    assert not book.orders.sent  # type: ignore[attr-defined]


def test_patch_and_delete_only_a_draft(world):
    w, book, _ = world
    order = _draft(w, book)
    placed = orders.submit(book, AM, "demo", CUST_B, order.id, order.etag or "")
    body = OrderCreate.model_validate({"lines": [_line(w, book)]})
    with pytest.raises(Conflict, match="only a Draft"):
        orders.update(book, AM, "demo", CUST_B, order.id, placed.etag or "", body)
    with pytest.raises(Conflict, match="only a Draft"):
        orders.delete(book, AM, "demo", CUST_B, order.id, placed.etag or "")


# --- the provision-order step -----------------------------------------------------------------


def test_submitted_draft_completes_with_one_partner_center_order_and_a_subscription_record(world):
    w, book, pc = world
    pc.provisioning_polls = 2
    order = _draft(w, book)
    order = orders.submit(book, AM, "demo", CUST_B, order.id, order.etag or "")
    assert order.status is S.SUBMITTED and order.cart_request_id and order.checkout_request_id
    assert [m.queue.value for m in book.orders.sent] == ["provision-order"]  # type: ignore[attr-defined]
    done = _run(book, pc, order)
    assert done.status is S.COMPLETED
    assert len(pc.orders) == 1
    subs = book.subscriptions.list(CUST_B).items
    assert [s.id for s in subs] == [done.lines[0].result.subscription_id]  # type: ignore[union-attr]
    assert subs[0].priced == done.lines[0].priced and subs[0].cancellation_allowed_until
    assert pc.calls.count("order_provisioning") == 3  # two waits, re-enqueued with a delay


@pytest.mark.parametrize("boundary", ["cart", "checkout", "subscriptions", "completed"])
def test_a_crash_at_each_step_boundary_still_places_exactly_one_order(world, boundary):
    w, book, pc = world

    class Crash(Exception):
        pass

    def crash(step: str) -> None:
        if step == boundary:
            book.after_step = None
            raise Crash(step)

    book.after_step = crash
    order = _draft(w, book)
    order = orders.submit(book, AM, "demo", CUST_B, order.id, order.etag or "")
    with pytest.raises(Crash):
        orders.provision(book, pc, ProvisionOrderMessage(reseller="demo", order_id=order.id))
    done = _run(book, pc, order)  # the message is delivered again
    assert done.status is S.COMPLETED
    assert len(pc.orders) == 1 and len(book.subscriptions.list(CUST_B).items) == 1


def test_provisioning_writes_the_order_three_times_cart_checkout_and_the_end(world):
    w, book, pc = world
    order = _draft(w, book)
    order = orders.submit(book, AM, "demo", CUST_B, order.id, order.etag or "")
    saved: list[str] = []
    update = book.orders.update

    def counted(item: Order, **kwargs: Any) -> Order:
        saved.append(item.status.value)
        return update(item, **kwargs)

    book.orders.update = counted  # type: ignore[method-assign]
    done = _run(book, pc, order)
    assert done.status is S.COMPLETED and done.subscriptions_recorded
    assert saved == ["Provisioning", "Provisioning", "Completed"]
    assert len(book.subscriptions.list(CUST_B).items) == 1


def test_a_crash_after_the_subscription_records_adds_none_twice_and_completes(world):
    w, book, pc = world
    book.after_step = lambda step: (
        (_ for _ in ()).throw(RuntimeError(step)) if step == "subscriptions" else None
    )
    order = _draft(w, book)
    order = orders.submit(book, AM, "demo", CUST_B, order.id, order.etag or "")
    with pytest.raises(RuntimeError):
        orders.provision(book, pc, ProvisionOrderMessage(reseller="demo", order_id=order.id))
    book.after_step = None
    assert orders.get(book, AM, "demo", CUST_B, order.id).status is S.PROVISIONING
    done = _run(book, pc, order)
    assert done.status is S.COMPLETED and len(book.subscriptions.list(CUST_B).items) == 1
    assert len(pc.orders) == 1


def test_a_crash_between_cart_and_its_record_reuses_the_same_cart(world):
    w, book, pc = world
    order = _draft(w, book)
    order = orders.submit(book, AM, "demo", CUST_B, order.id, order.etag or "")
    reseller = book.resellers.get("reseller", "demo")
    lines = placing.cart_lines(order, reseller.require_mpn_id())
    pc.place_cart(TENANT, lines, request_id=order.cart_request_id or "")  # happened, answer lost
    done = _run(book, pc, order)
    assert done.status is S.COMPLETED and len(pc.carts) == 1 and len(pc.orders) == 1


def test_a_repeated_checkout_refused_as_already_ordered_recovers_the_orders(world):
    w, book, pc = world
    order = _draft(w, book)
    order = orders.submit(book, AM, "demo", CUST_B, order.id, order.etag or "")
    first = orders.provision  # run the cart step, then check out behind the step's back
    book.after_step = lambda step: (
        (_ for _ in ()).throw(RuntimeError(step)) if step == "cart" else None
    )
    with pytest.raises(RuntimeError):
        first(book, pc, ProvisionOrderMessage(reseller="demo", order_id=order.id))
    book.after_step = None
    stored = orders.get(book, AM, "demo", CUST_B, order.id)
    pc.check_out(TENANT, stored.cart_id or "", request_id="another-id")  # placed; replay lost
    done = _run(book, pc, order)
    assert done.status is S.COMPLETED
    assert done.partner_center_order_ids == list(pc.orders) and len(pc.orders) == 1


def test_a_refused_order_group_completes_with_errors_saying_how_many_seats_are_left(world):
    w, book, pc = world
    good, capped = _line(w, book, quantity=2), _line(w, book, quantity=5)
    pc.seat_caps = {}
    order = _draft(w, book, good, capped)
    order = orders.submit(book, AM, "demo", CUST_B, order.id, order.etag or "")
    pc.seat_caps = {capped["catalogItemId"].upper(): 3}
    # Only the group holding the 5-seat line goes over the cap (2 ≤ 3).
    done = _run(book, pc, order)
    assert done.status is S.COMPLETED_WITH_ERRORS
    assert done.lines[0].result.subscription_id  # type: ignore[union-attr]
    assert done.lines[1].result.error.startswith("at most 3 more licences of")  # type: ignore[union-attr]


def test_nothing_placed_fails_the_order_with_an_actionable_reason_and_allows_retry(world):
    w, book, pc = world
    order = _draft(w, book, _line(w, book, quantity=5))
    order = orders.submit(book, AM, "demo", CUST_B, order.id, order.etag or "")
    pc.seat_caps = {order.lines[0].catalog_item_id: 1}
    done = _run(book, pc, order)
    assert done.status is S.FAILED and done.failure is not None
    assert done.failure.reason.startswith("at most 1 more licences")
    assert done.failure.kind is FailureKind.REFUSED


def test_an_order_for_a_customer_still_provisioning_waits_with_a_delay(world):
    w, book, pc = world
    order = _draft(w, book)
    order = orders.submit(book, AM, "demo", CUST_B, order.id, order.etag or "")
    customer = book.customers.get("demo", CUST_B)
    customer.status, customer.tenant_id = CustomerStatus.PROVISIONING, None
    book.customers.update(customer)
    orders.provision(book, pc, ProvisionOrderMessage(reseller="demo", order_id=order.id))
    sched: Any = book.scheduler
    assert [(q.value, d) for q, _, d in sched.sent] == [("provision-order", 2)]
    assert pc.calls == []


def test_order_emails_go_to_whom_the_resellers_notification_settings_name(world):
    w, book, pc = world
    reseller = book.resellers.get("reseller", "demo")
    reseller.settings.notifications.extra_recipients = ["billing@demo.example"]
    book.resellers.update(reseller)
    order = _draft(w, book)
    order = orders.submit(book, AM, "demo", CUST_B, order.id, order.etag or "")
    _run(book, pc, order)
    sent = book.notifications.get("demo", f"order-{order.id}-completed")  # type: ignore[union-attr]
    everyone = {*sent.email.to, *sent.email.cc}
    assert {"owner@demo.example", "billing@demo.example"} <= everyone

    reseller = book.resellers.get("reseller", "demo")
    reseller.settings.notifications.events[NotificationEvent.ORDER_COMPLETED] = False
    book.resellers.update(reseller)
    second = _draft(w, book)
    second = orders.submit(book, AM, "demo", CUST_B, second.id, second.etag or "")
    _run(book, pc, second)
    assert book.notifications.find("demo", f"order-{second.id}-completed") is None  # type: ignore[union-attr]


# --- failure kinds and retry -------------------------------------------------------------


def _deliver(book: OrderBook, pc: FakeOrderPartnerCenter, order: Order, tries: int = 1) -> None:
    """One delivery of provision-order through the queue edge (as the host runs it)."""
    body = json.dumps({"reseller": order.reseller, "orderId": order.id}).encode()
    run_step(
        QueueMessage(id=f"m{tries}", body=body, dequeue_count=tries),
        ProvisionOrderMessage,
        lambda m: orders.provision(book, pc, m),
        lambda m, failure: orders.give_up(book, m, failure),
    )


def test_a_reseller_without_its_mpn_id_fails_the_order_at_once_as_refused(world):
    w, book, pc = world
    order = _draft(w, book)
    order = orders.submit(book, AM, "demo", CUST_B, order.id, order.etag or "")
    reseller = book.resellers.get("reseller", "demo")
    reseller.mpn_id = None
    book.resellers.update(reseller)
    _deliver(book, pc, order)  # refused for good: recorded on the first try, not retried
    failed = orders.get(book, AM, "demo", CUST_B, order.id)
    assert failed.status is S.FAILED and failed.failure is not None
    assert failed.failure.kind is FailureKind.REFUSED
    assert "MPN id" in failed.failure.reason and "mpnId" in failed.failure.reason
    assert pc.calls == []


def test_cart_lines_carry_the_resellers_mpn_id(world):
    w, book, pc = world
    order = _draft(w, book)
    order = orders.submit(book, AM, "demo", CUST_B, order.id, order.etag or "")
    _run(book, pc, order)
    (cart,) = pc.carts.values()
    reseller = book.resellers.get("reseller", "demo")
    assert reseller.mpn_id and {li.reseller_mpn_id for li in cart.lines} == {reseller.mpn_id}


def test_retry_after_a_refusal_sends_new_request_ids_and_no_stored_cart(world):
    w, book, pc = world
    order = _draft(w, book)
    order = orders.submit(book, AM, "demo", CUST_B, order.id, order.etag or "")
    pc.fail_next = [UpstreamRejected("Invalid cart", code="400000", status=400)]
    _deliver(book, pc, order)
    failed = orders.get(book, AM, "demo", CUST_B, order.id)
    assert failed.failure is not None and failed.failure.kind is FailureKind.REFUSED
    again = orders.retry(book, AM, "demo", CUST_B, order.id, failed.etag)
    assert again.cart_request_id != failed.cart_request_id
    assert again.checkout_request_id != failed.checkout_request_id
    assert again.cart_id is None
    assert _run(book, pc, again).status is S.COMPLETED and len(pc.orders) == 1


def test_retry_after_a_transient_failure_replays_the_same_cart_and_checkout(world):
    w, book, pc = world
    order = _draft(w, book)
    order = orders.submit(book, AM, "demo", CUST_B, order.id, order.etag or "")
    book.after_step = lambda step: (
        (_ for _ in ()).throw(UpstreamUnavailable("lost")) if step == "cart" else None
    )
    with pytest.raises(UpstreamUnavailable):
        _deliver(book, pc, order, tries=5)  # the cart was made; the last try gave up
    book.after_step = None
    failed = orders.get(book, AM, "demo", CUST_B, order.id)
    assert failed.failure is not None and failed.failure.kind is FailureKind.TRANSIENT
    assert failed.cart_id is not None
    again = orders.retry(book, AM, "demo", CUST_B, order.id, failed.etag)
    assert (again.cart_request_id, again.checkout_request_id, again.cart_id) == (
        failed.cart_request_id,
        failed.checkout_request_id,
        failed.cart_id,
    )
    done = _run(book, pc, again)
    assert done.status is S.COMPLETED and len(pc.carts) == 1 and len(pc.orders) == 1


# --- the watchdog --------------------------------------------------------------------------


def test_a_stale_order_is_re_enqueued_once_then_failed_as_transient_with_the_same_ids(world):
    w, book, pc = world
    order = _draft(w, book)
    order = orders.submit(book, AM, "demo", CUST_B, order.id, order.etag or "")
    source = orders.InFlightOrders(book)
    repo: Any = book.orders
    sent = len(repo.sent)

    w.clock.advance(minutes=10)
    report = watchdog.watch([source], w.clock.now())
    assert report.in_flight == {"order": 1} and report.nudged == []

    w.clock.advance(minutes=25)  # past the 30-minute deadline
    report = watchdog.watch([source], w.clock.now())
    assert [i.id for i in report.nudged] == [order.id]
    [message] = repo.sent[sent:]
    assert message.queue is Queue.PROVISION_ORDER
    nudged = orders.get(book, AM, "demo", CUST_B, order.id)
    assert nudged.status is S.SUBMITTED and nudged.cart_request_id == order.cart_request_id

    w.clock.advance(minutes=10)
    assert watchdog.watch([source], w.clock.now()).failed == []  # once, then a deadline
    assert len(repo.sent) == sent + 1

    w.clock.advance(minutes=25)
    report = watchdog.watch([source], w.clock.now())
    assert [i.id for i in report.failed] == [order.id]
    failed = orders.get(book, AM, "demo", CUST_B, order.id)
    assert failed.status is S.FAILED and failed.failure is not None
    assert failed.failure.kind is FailureKind.TRANSIENT
    assert failed.failure.reason == watchdog.stale_reason(report.failed[0], source.deadline)
    again = orders.retry(book, AM, "demo", CUST_B, order.id, failed.etag)
    assert again.cart_request_id == order.cart_request_id  # the same request, repeated
    assert _run(book, pc, again).status is S.COMPLETED and len(pc.orders) == 1


def test_the_watchdog_reads_only_orders_in_flight(world):
    w, book, _ = world
    _draft(w, book)  # a Draft is at rest
    report = watchdog.watch([orders.InFlightOrders(book)], w.clock.now())
    assert report.in_flight == {"order": 0}
    assert any(isinstance(s, orders.InFlightOrders) for s in w.container.transient_records())


# --- If-Match ------------------------------------------------------------------------------


def _someone_writes_after_each_read(book: OrderBook) -> None:
    """Every read of an order is followed by another writer's change of it (a lost race)."""
    repo: Any = book.orders
    real_find = repo.find

    def find(partition: str, row: str) -> Any:
        found = real_find(partition, row)
        if found is not None:
            other = real_find(partition, row)
            other.updated_at = book.clock.now()
            repo.update(other)
        return found

    repo.find = find


@pytest.mark.parametrize("action", ["update", "delete", "submit"])
def test_if_match_star_still_loses_a_race_with_a_concurrent_write(world, action):
    w, book, _ = world
    order = _draft(w, book)
    body = OrderCreate.model_validate({"lines": [_line(w, book)]})
    _someone_writes_after_each_read(book)
    with pytest.raises(ConcurrencyConflict):
        if action == "update":
            orders.update(book, AM, "demo", CUST_B, order.id, "*", body)
        elif action == "delete":
            orders.delete(book, AM, "demo", CUST_B, order.id, "*")
        else:
            orders.submit(book, AM, "demo", CUST_B, order.id, "*")


def test_if_match_star_submits_the_version_just_read(world):
    w, book, _ = world
    order = _draft(w, book)
    assert orders.submit(book, AM, "demo", CUST_B, order.id, "*").status is S.SUBMITTED


# --- review findings: customers don't price, drafts are checked again, odd ids --------------


def test_a_customer_user_cannot_price_a_line_nor_preview_where_ordering_is_off(world):
    w, book, _ = world
    body = OrderCreate.model_validate({"lines": [_line(w, book, CUST_A)]})
    with pytest.raises(Forbidden):  # the reseller has not let its customers order
        orders.preview(book, CADMIN, "demo", CUST_A, body)
    reseller = book.resellers.get("reseller", "demo")
    reseller.settings.customer_ordering_enabled = True
    book.resellers.update(reseller)
    zero = _line(w, book, CUST_A, markupPercent="0")  # would show the reseller's cost
    own = _line(w, book, CUST_A, unitPrice={"amount": "0.01", "currency": "CZK"})
    for action in (orders.preview, orders.create):
        with pytest.raises(ValidationFailed) as err:
            action(book, CADMIN, "demo", CUST_A, OrderCreate.model_validate({"lines": [zero, own]}))
        assert [e.field for e in err.value.errors] == [
            "lines[0].markupPercent",
            "lines[1].unitPrice",
        ]


def test_submit_refuses_a_draft_whose_prices_moved_since_it_was_priced(world):
    w, book, _ = world
    draft = _draft(w, book)
    reseller = book.resellers.get("reseller", "demo")
    reseller.distributor_markup_percent = Decimal(5)  # the reseller's cost goes up
    book.resellers.update(reseller)
    w.clock.advance(seconds=600)  # past the catalog's cached reseller profile
    with pytest.raises(Conflict, match=r"prices changed .*lines\[0\]"):
        orders.submit(book, AM, "demo", CUST_B, draft.id, draft.etag or "")
    assert orders.get(book, AM, "demo", CUST_B, draft.id).status is S.DRAFT
    assert not book.orders.sent  # type: ignore[attr-defined]


def test_submit_refuses_a_draft_whose_customer_failed_since(world):
    w, book, _ = world
    draft = _draft(w, book)
    customer = book.customers.get("demo", CUST_B)
    customer.status = CustomerStatus.FAILED
    book.customers.update(customer)
    with pytest.raises(Conflict, match="Failed"):
        orders.submit(book, AM, "demo", CUST_B, draft.id, draft.etag or "")


@pytest.mark.parametrize("odd", ["0" * 25 + "\\", "0" * 25 + "#", "../" + "0" * 23, "0" * 26 + "x"])
def test_an_order_id_that_is_no_ulid_is_not_found(world, odd):
    _, book, _ = world
    with pytest.raises(NotFound):
        orders.get(book, AM, "demo", CUST_B, odd)


def test_a_trial_is_ordered_free_though_the_price_sheet_lists_no_trials(world):
    w, book, _ = world
    products: Any = w.container.catalog_reader
    market = products.market_products("CZ", products.import_id("CZ"))
    product = next(p for p in market.values() if p.title == "Microsoft 365 E3")
    trial = next(s for s in product.skus if s.is_trial)
    availability = trial.availability("commercial")
    assert trial.prices == () and availability is not None  # Microsoft prices no trial
    line = {
        "catalogItemId": availability.catalog_item_id,
        "quantity": trial.minimum_quantity,
        "termDuration": "P1M",
        "billingCycle": "none",
    }
    order = _draft(w, book, line)
    unit = order.lines[0].priced.unit
    assert unit.customer_price == Money(amount=Decimal(0), currency="CZK")
    assert unit.reseller_cost == Money(amount=Decimal(0), currency="CZK")
