"""provision-order when Partner Center misbehaves after the cart: concurrent checkouts, lost
replays, recovery, asynchronous subscription ids, long waits and who hears about it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from shared.adapters.partner_center.transport import error_from_response
from shared.domain.errors import UpstreamRejected, UpstreamUnavailable
from shared.domain.failures import FailureKind
from shared.domain.orders import (
    Order,
    OrderDecision,
    PlacedOrder,
    PlacedOrderLine,
    ProvisionOrderMessage,
)
from shared.domain.outbox import Queue
from shared.services import orders, watchdog
from tests.order_fakes import FakeOrderPartnerCenter
from tests.unit.test_orders import (
    AM,
    CADMIN,
    CUST_A,
    CUST_B,
    TENANT,
    S,
    _deliver,
    _draft,
    _line,
    _run,
    world,
)

__all__ = ["world"]


def _submitted(w: Any, book: Any, *lines: dict[str, Any]) -> Order:
    order = _draft(w, book, *lines)
    return orders.submit(book, AM, "demo", CUST_B, order.id, order.etag or "")


def _stop_after(book: Any, boundary: str) -> None:
    def stop(step: str) -> None:
        if step == boundary:
            book.after_step = None
            raise RuntimeError(step)

    book.after_step = stop


def _cart_only(book: Any, pc: FakeOrderPartnerCenter, order: Order) -> Order:
    """Run the step up to its stored cart (then stop, as a crash would)."""
    _stop_after(book, "cart")
    with pytest.raises(RuntimeError):
        orders.provision(book, pc, ProvisionOrderMessage(reseller="demo", order_id=order.id))
    return orders.get(book, AM, "demo", CUST_B, order.id)


# --- 1. nothing from checkout onwards is a refusal ----------------------------------------


def _cart_being_processed() -> Exception:
    """What the adapter raises for Partner Center's 409 800064 on a checkout."""
    request = httpx.Request("POST", "https://api.partnercenter.microsoft.com/v1/carts/x/checkout")
    body = {"code": 800064, "description": "The cart is being processed."}
    return error_from_response(httpx.Response(409, json=body, request=request))


def test_cart_being_processed_is_transient_at_the_transport():
    assert isinstance(_cart_being_processed(), UpstreamUnavailable)


def test_a_concurrent_checkout_refused_as_being_processed_is_retried_with_the_same_cart(world):
    w, book, pc = world
    order = _cart_only(book, pc, _submitted(w, book))
    # Another run checks the same cart out with the same request id; ours gets a 409 800064.
    pc.check_out(TENANT, order.cart_id or "", request_id=order.checkout_request_id or "")
    pc.fail_next = [_cart_being_processed()]
    with pytest.raises(UpstreamUnavailable):
        _deliver(book, pc, order, tries=5)  # the last try records the failure
    failed = orders.get(book, AM, "demo", CUST_B, order.id)
    assert failed.status is S.FAILED and failed.failure is not None
    assert failed.failure.kind is FailureKind.TRANSIENT
    again = orders.retry(book, AM, "demo", CUST_B, order.id, failed.etag)
    assert (again.cart_id, again.checkout_request_id) == (order.cart_id, order.checkout_request_id)
    assert _run(book, pc, again).status is S.COMPLETED
    assert len(pc.carts) == 1 and len(pc.orders) == 1


def test_a_definite_refusal_at_checkout_is_still_transient(world):
    w, book, pc = world
    order = _cart_only(book, pc, _submitted(w, book))
    pc.fail_next = [UpstreamRejected("Line errors", code="800009", status=400)]
    _deliver(book, pc, order)
    failed = orders.get(book, AM, "demo", CUST_B, order.id)
    assert failed.failure is not None and failed.failure.kind is FailureKind.TRANSIENT
    assert failed.cart_id == order.cart_id


# --- 2. Partner Center's "cart already submitted" ------------------------------------------


def test_a_checkout_answered_already_submitted_800065_recovers_the_placed_order(world):
    w, book, pc = world
    order = _cart_only(book, pc, _submitted(w, book))
    pc.check_out(TENANT, order.cart_id or "", request_id="another-id")  # placed; replay lost
    pc.fail_next = [UpstreamRejected("The cart has already been submitted.", code="800065")]
    done = _run(book, pc, order)
    assert done.status is S.COMPLETED
    assert done.partner_center_order_ids == list(pc.orders) and len(pc.orders) == 1


# --- 3./4. recovering a checkout whose replay Partner Center lost ----------------------------


def _checked_out_but_replay_lost(w: Any, book: Any, pc: FakeOrderPartnerCenter) -> Order:
    """Our checkout happened at Partner Center, its answer was lost, and the retry was made a
    day later: Partner Center no longer knows the request id (800065 on the replay)."""
    order = _cart_only(book, pc, _submitted(w, book))
    pc.check_out(TENANT, order.cart_id or "", request_id="the-first-checkout")
    pc.fail_next = [UpstreamUnavailable("timed out")]
    with pytest.raises(UpstreamUnavailable):
        _deliver(book, pc, order, tries=5)
    failed = orders.get(book, AM, "demo", CUST_B, order.id)
    assert failed.status is S.FAILED
    w.clock.advance(hours=24)
    return orders.retry(book, AM, "demo", CUST_B, order.id, failed.etag)


def test_recovery_after_a_retry_still_finds_the_first_attempts_checkout(world):
    w, book, pc = world
    again = _checked_out_but_replay_lost(w, book, pc)
    done = _run(book, pc, again)
    assert done.status is S.COMPLETED
    assert done.partner_center_order_ids == list(pc.orders) and len(pc.orders) == 1


def test_recovery_finding_nothing_leaves_the_order_retryable_with_the_same_checkout(world):
    w, book, pc = world
    again = _checked_out_but_replay_lost(w, book, pc)
    hidden = dict(pc.orders)
    pc.orders.clear()  # Partner Center does not list it (yet)
    failed = _run(book, pc, again)
    assert failed.status is S.FAILED and failed.failure is not None
    assert failed.failure.kind is FailureKind.TRANSIENT
    assert "check the customer's orders in Partner Center" in failed.failure.reason
    pc.orders.update(hidden)
    retried = orders.retry(book, AM, "demo", CUST_B, again.id, failed.etag)
    assert retried.checkout_request_id == again.checkout_request_id
    assert _run(book, pc, retried).status is S.COMPLETED and len(pc.orders) == 1


def _foreign_order(w: Any, pc: FakeOrderPartnerCenter, *lines: tuple[str, int]) -> str:
    """An order made in Partner Center outside the platform (e.g. in its portal)."""
    oid = f"foreign-{len(pc.orders)}"
    placed = tuple(PlacedOrderLine(n, item, qty, None) for n, (item, qty) in enumerate(lines))
    pc.orders[oid] = (TENANT, PlacedOrder(oid, w.clock.now(), placed))
    return oid


def test_recovery_does_not_guess_between_two_orders_of_the_same_lines(world):
    w, book, pc = world
    again = _checked_out_but_replay_lost(w, book, pc)
    line = again.lines[0]
    _foreign_order(w, pc, (line.catalog_item_id.upper(), line.quantity))
    failed = _run(book, pc, again)
    assert failed.status is S.FAILED and failed.failure is not None
    assert failed.failure.kind is FailureKind.TRANSIENT
    assert failed.partner_center_order_ids == []
    assert "more than one" in failed.failure.reason


def test_recovery_takes_only_an_order_of_exactly_its_lines(world):
    w, book, pc = world
    again = _checked_out_but_replay_lost(w, book, pc)
    ours = list(pc.orders)
    line = again.lines[0]
    item = (line.catalog_item_id.upper(), line.quantity)
    _foreign_order(w, pc, item, item)  # our offer and quantity, but not our order
    done = _run(book, pc, again)
    assert done.status is S.COMPLETED and done.partner_center_order_ids == ours


# --- 5. subscription ids that come after the checkout --------------------------------------


def test_subscription_ids_missing_at_checkout_are_read_from_the_order_once_provisioned(world):
    w, book, pc = world
    pc.late_subscription_ids, pc.provisioning_polls = True, 1
    done = _run(book, pc, _submitted(w, book))
    assert done.status is S.COMPLETED
    sid = done.lines[0].result.subscription_id  # type: ignore[union-attr]
    assert sid and [s.id for s in book.subscriptions.list(CUST_B).items] == [sid]


def test_a_line_partner_center_gives_no_subscription_completes_with_errors_saying_so(world):
    w, book, pc = world
    pc.late_subscription_ids = pc.never_subscribed = True
    done = _run(book, pc, _submitted(w, book))
    assert done.status is S.COMPLETED_WITH_ERRORS
    error = done.lines[0].result.error  # type: ignore[union-attr]
    assert error and "no subscription" in error and "Partner Center" in error
    assert book.subscriptions.list(CUST_B).items == []


# --- 6. an order Partner Center placed is never Failed for taking long ---------------------


def test_a_placed_order_slow_to_provision_keeps_polling_past_max_polls_and_completes(world):
    w, book, pc = world
    pc.provisioning_polls = book.policy.max_polls + 3
    order = _submitted(w, book)
    sched: Any = book.scheduler
    delays: list[float] = []
    messages = [ProvisionOrderMessage(reseller="demo", order_id=order.id)]
    while messages:
        orders.provision(book, pc, messages.pop(0))
        while sched.sent:
            _, body, delay = sched.sent.pop(0)
            delays.append(delay)
            messages.append(ProvisionOrderMessage.model_validate(body))
    done = orders.get(book, AM, "demo", CUST_B, order.id)
    assert done.status is S.COMPLETED and len(pc.orders) == 1
    assert delays[-1] > delays[0]  # checked less often past max_polls


def test_the_watchdog_re_enqueues_a_placed_order_stuck_provisioning_and_never_fails_it(world):
    w, book, pc = world
    pc.provisioning_polls = 10_000
    order = _submitted(w, book)
    orders.provision(book, pc, ProvisionOrderMessage(reseller="demo", order_id=order.id))
    placed = orders.get(book, AM, "demo", CUST_B, order.id)
    assert placed.partner_center_order_ids
    source, repo = orders.InFlightOrders(book), book.orders
    sent = len(repo.sent)  # type: ignore[attr-defined]
    for _ in range(4):
        w.clock.advance(minutes=35)
        report = watchdog.watch([source], w.clock.now())
        assert report.failed == [] and report.stale == {"order": 1}
    now = orders.get(book, AM, "demo", CUST_B, order.id)
    assert now.status is S.PROVISIONING and now.failure is None
    nudges = repo.sent[sent:]  # type: ignore[attr-defined]
    assert len(nudges) == 4 and {m.queue for m in nudges} == {Queue.PROVISION_ORDER}
    assert watchdog.watch([source], w.clock.now(), act=False).stale == {"order": 1}
    assert book.notifications.find("demo", f"order-{order.id}-failed") is None  # type: ignore[union-attr]


def test_a_nudge_meeting_a_live_poll_chain_leaves_one_chain(world):
    w, book, pc = world
    pc.provisioning_polls = 10_000
    order = _submitted(w, book)
    sched: Any = book.scheduler
    slow = book.policy.max_polls
    orders.provision(book, pc, ProvisionOrderMessage(reseller="demo", order_id=order.id))
    live = ProvisionOrderMessage(reseller="demo", order_id=order.id, poll=slow + 2)
    orders.provision(book, pc, live)
    nudged = ProvisionOrderMessage(reseller="demo", order_id=order.id, poll=slow)
    sched.sent.clear()
    orders.provision(book, pc, nudged)  # older than the live chain: stops
    assert sched.sent == []


# --- 7. e-mails: one per audience ----------------------------------------------------------


def test_a_customer_users_order_e_mails_the_customer_and_the_staff_separately(world):
    w, book, pc = world
    reseller = book.resellers.get("reseller", "demo")
    reseller.settings.customer_ordering_enabled = True
    reseller.settings.notifications.extra_recipients = ["billing@demo.example"]
    book.resellers.update(reseller)
    order = _draft(w, book, _line(w, book, CUST_A), who=CADMIN)
    order = orders.submit(book, CADMIN, "demo", CUST_A, order.id, order.etag or "")
    order = orders.approve(book, AM, "demo", CUST_A, order.id, order.etag or "", OrderDecision())
    assert _run(book, pc, order).status is S.COMPLETED
    notes: Any = book.notifications
    staff = notes.get("demo", f"order-{order.id}-completed").email
    customer = notes.get("demo", f"order-{order.id}-completed-customer").email
    assert (customer.to, customer.cc) == (["cadmin@a.example"], [])
    assert "billing@demo.example" in {*staff.to, *staff.cc}
    assert "cadmin@a.example" not in {*staff.to, *staff.cc}
    text = customer.text.lower()
    assert not any(word in text for word in ("cost", "margin", "markup", "mark-up"))


# --- errors Partner Center puts on the cart's lines ------------------------------------------


def test_errors_on_the_carts_lines_fail_the_order_before_checkout_each_line_saying_why(world):
    w, book, pc = world
    order = _submitted(w, book, _line(w, book), _line(w, book, quantity=2))
    pc.cart_line_errors = {1: "The availability is no longer purchasable."}
    failed = _run(book, pc, order)
    assert failed.status is S.FAILED and failed.failure is not None
    assert failed.failure.kind is FailureKind.REFUSED and failed.cart_id is None
    assert failed.lines[0].result is None
    assert "no longer purchasable" in (failed.lines[1].result.error or "")  # type: ignore[union-attr]
    assert "check_out" not in pc.calls and pc.orders == {}
    pc.cart_line_errors = {}
    again = orders.retry(book, AM, "demo", CUST_B, order.id, failed.etag)
    assert _run(book, pc, again).status is S.COMPLETED and len(pc.orders) == 2  # two groups
