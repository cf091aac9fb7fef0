"""The `provision-order` step: an order placed in Partner Center exactly once, whatever crashes.

- submit stores both MS-RequestIds (cart, checkout) on the order *with* its status and its
  `provision-order` outbox row, in one transaction;
- the step creates the cart with the stored cart request id (a repeat gives back the same cart)
  and records the cart id; checks it out with the stored checkout request id (a repeat gives
  the first result; a checkout refused as "already ordered" — the answer of a Partner Center
  that lost the replay — is recovered by reading the customer's orders) and records Partner
  Center's order ids; waits for provisioning by re-enqueueing itself with a delay; writes one
  Subscription record per line; queues the e-mail under a fixed id; and ends Completed,
  CompletedWithErrors or Failed. What each Partner Center call brought is recorded (with the
  order's ETag) before the next call, so a redelivered message picks up where the last stopped.

A Change order (one change of one subscription) passes the same customer checks, then goes to
`shared/services/subscriptions/applying.py`.
"""

from __future__ import annotations

import logging
from typing import Any

from shared.domain.customers import Customer, CustomerStatus
from shared.domain.failures import Failure, FailureKind
from shared.domain.orders import Order, OrderKind, OrderStatus, ProvisionOrderMessage
from shared.domain.outbox import Queue
from shared.ports import PartnerCenter
from shared.services.orders.book import BLOCKING_CUSTOMER_STATUSES, SYSTEM, OrderBook, find_order
from shared.services.orders.completion import notify, record_subscriptions
from shared.services.orders.placing import (
    PlacementUnclear,
    cart_lines,
    check_out_cart,
    fill_subscription_ids,
    record_cart_refused,
    record_checkout,
    record_nothing_placed,
)
from shared.services.orders.steps import (
    Saver,
    boundary,
    fail,
    poll_again,
    step_body,
    superseded,
)
from shared.services.subscriptions import applying
from shared.services.subscriptions.pending import release

log = logging.getLogger(__name__)

__all__ = ["fail", "give_up", "provision", "slow_poll_body"]


def provision(
    book: OrderBook, partner_center: PartnerCenter, message: ProvisionOrderMessage
) -> None:
    """The `provision-order` step (see the module docstring)."""
    order = find_order(book, message.reseller, message.order_id)
    if order is None:
        log.warning("order %s/%s no longer exists", message.reseller, message.order_id)
        return
    if order.status not in (OrderStatus.SUBMITTED, OrderStatus.PROVISIONING):
        # Redelivered after the step finished (a Change order's subscription is freed if a
        # crash came between the order's last write and the record's).
        release(book, order)
        return
    customer = book.customers.get(order.reseller, order.customer_id)
    if customer.status is CustomerStatus.PROVISIONING or not customer.tenant_id:
        if customer.status.value in BLOCKING_CUSTOMER_STATUSES:
            fail(book, order, FailureKind.REFUSED, _customer_failed(customer), None)
            return
        book.scheduler.send_later(
            Queue.PROVISION_ORDER, step_body(order, message.poll), book.policy.customer_wait_seconds
        )
        return
    if customer.status.value in BLOCKING_CUSTOMER_STATUSES:
        fail(book, order, FailureKind.REFUSED, _customer_failed(customer), None)
        return
    tenant = customer.tenant_id
    if order.kind is OrderKind.CHANGE:
        applying.apply(book, partner_center, order, message, tenant)
        return
    reseller = book.resellers.get("reseller", order.reseller)
    saver = Saver(book, order)

    # Writes of the order record, and what each protects (a Partner Center call sits between
    # any two of them, so none can be merged with the next):
    # - submit (not here): both MS-RequestIds with the status and this message, in one
    #   transaction, so every later call of this step is a replay Partner Center recognises;
    # - after the cart: its id, so a redelivery checks out that cart instead of asking again;
    # - after checkout: Partner Center's order ids and each line's result, so a redelivery never
    #   checks out twice and the wait knows what to poll;
    # - the end: the final status (with `subscriptions_recorded`). The Subscription records
    #   (another table, so another transaction) go first; a crash between the two re-runs the
    #   end, which adds only the records still missing and finds the e-mail queued.

    # (a) the cart, with the MS-RequestId stored at submit
    if order.cart_id is None:
        assert order.cart_request_id is not None
        asked_at = book.clock.now()
        cart = partner_center.place_cart(
            tenant, cart_lines(order, reseller.require_mpn_id()), request_id=order.cart_request_id
        )
        if cart.line_errors:
            # Never checked out: its id is not kept, so the failure stays a refusal.
            record_cart_refused(book, order, cart.line_errors)
            saver.save("cart")
            notify(book, reseller, saver.order)
            return
        if order.status is OrderStatus.SUBMITTED:
            order.move(OrderStatus.PROVISIONING, book.clock.now(), SYSTEM)
        order.cart_id = cart.id
        order.cart_created_at = order.cart_created_at or asked_at
        saver.save("cart")
        order = saver.order
    elif order.status is OrderStatus.SUBMITTED:
        # A retry after a transient failure resumes past its cart: saved with the next step.
        order.move(OrderStatus.PROVISIONING, book.clock.now(), SYSTEM)

    # (b) checkout, with its stored MS-RequestId; (c) Partner Center's order ids
    if not order.checked_out:
        assert order.cart_id is not None and order.checkout_request_id is not None
        try:
            result = check_out_cart(book, partner_center, order, tenant)
        except PlacementUnclear as unclear:
            fail(book, order, FailureKind.TRANSIENT, str(unclear), unclear.detail)
            return
        record_checkout(order, result)
        order.checked_out = True
        if not order.partner_center_order_ids:
            record_nothing_placed(book, order, result)
            saver.save("checkout")
            notify(book, reseller, saver.order)
            return
        saver.save("checkout")
        order = saver.order

    # (d) wait until Partner Center has provisioned every order. An order Partner Center
    # placed is never Failed for taking long: past `max_polls` it is checked less often, by one
    # chain of messages (a watchdog nudge meeting a live chain: the older one stops here).
    if superseded(book, order, message):
        return
    for pc_order_id in order.partner_center_order_ids:
        state = partner_center.order_provisioning(tenant, pc_order_id)
        if not state.done:
            what = f"provisioning order {pc_order_id}"
            poll_again(book, saver, message, what, book.policy.poll_seconds)
            return

    # (e) one Subscription record per placed line (each written once, however often this runs),
    # with the subscription ids checkout did not have yet read from Partner Center's orders
    if not order.subscriptions_recorded:
        fill_subscription_ids(partner_center, order, tenant)
        record_subscriptions(book, partner_center, order, tenant)
        order.subscriptions_recorded = True
        boundary(book, "subscriptions")

    # (f) done: e-mail first (a fixed id makes it once), then the final status, saved with the
    # record of (e) in one write: nothing between them needs Partner Center.
    failed = [li for li in order.lines if li.result is not None and li.result.error]
    final = OrderStatus.COMPLETED_WITH_ERRORS if failed else OrderStatus.COMPLETED
    order.move(final, book.clock.now(), SYSTEM)
    notify(book, reseller, order)
    saver.save("completed")


def slow_poll_body(book: OrderBook, order: Order) -> dict[str, Any]:
    """The message that resumes the slow checks of a placed order (after a watchdog nudge)."""
    return step_body(order, max(order.polls, book.policy.max_polls))


def _customer_failed(customer: Customer) -> str:
    return f"the customer is {customer.status.value}" + (
        f": {customer.failure_reason}" if customer.failure_reason else ""
    )


def give_up(book: OrderBook, message: ProvisionOrderMessage, failure: Failure) -> None:
    """The step was refused for good or ran out of tries: Failed, with its kind and reason."""
    order = find_order(book, message.reseller, message.order_id)
    if order is None:
        return
    if order.kind is OrderKind.CHANGE:
        applying.give_up(book, order, failure)
        return
    reason = (
        f"the order was refused: {failure.reason}"
        if failure.kind is FailureKind.REFUSED
        else "Partner Center could not be reached; retry the order later"
    )
    fail(book, order, failure.kind, reason, failure.reason)
