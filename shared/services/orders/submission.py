"""Submit, approve, reject and retry: the moves that hand an order to `provision-order`."""

from __future__ import annotations

from shared.domain import nce
from shared.domain.errors import ConcurrencyConflict, Conflict, Forbidden, RuleBroken
from shared.domain.failures import FailureKind
from shared.domain.identity import Principal
from shared.domain.model import expected_version
from shared.domain.orders import Order, OrderDecision, OrderKind, OrderStatus
from shared.domain.outbox import OutboxMessage, Queue
from shared.services import resellers
from shared.services.orders.book import OrderBook, get
from shared.services.orders.drafts import may_order, still_as_priced
from shared.services.subscriptions.pending import release, retake


def provision_message(order: Order) -> OutboxMessage:
    """The `provision-order` message of an order (ids only; the record holds the rest)."""
    return OutboxMessage(
        queue=Queue.PROVISION_ORDER, body={"reseller": order.reseller, "orderId": order.id}
    )


def _expect(order: Order, etag: str | None) -> None:
    """The write that follows must still find the version `If-Match` names (`*`: the one
    just read), else it is a 412: a concurrent change is never overwritten."""
    order.etag = expected_version(order.etag, etag)


def submit(
    book: OrderBook,
    principal: Principal,
    reseller_slug: str,
    customer_id: str,
    order_id: str,
    etag: str,
) -> Order:
    """Place a Draft: Submitted (with its message, in one transaction) or PendingApproval."""
    order = get(book, principal, reseller_slug, customer_id, order_id)
    _expect(order, etag)
    reseller = resellers.get(book.resellers, reseller_slug)
    may_order(book, principal, reseller)
    if order.status is not OrderStatus.DRAFT:
        raise Conflict(f"only a Draft can be submitted; this order is {order.status.value}")
    still_as_priced(book, principal, order)
    now = book.clock.now()
    if principal.is_customer_user or reseller.settings.orders_require_approval:
        order.move(OrderStatus.PENDING_APPROVAL, now, principal.email)
        return book.orders.update(order)
    return _place(book, order, principal.email)


def _place(
    book: OrderBook, order: Order, by: str, reason: str | None = None, *, fresh: bool = True
) -> Order:
    order.move(OrderStatus.SUBMITTED, book.clock.now(), by, reason)
    if fresh:
        order.start_attempt()
    else:
        order.resume_attempt()
    return book.orders.update(order, messages=[provision_message(order)])


def _pending(
    book: OrderBook,
    principal: Principal,
    reseller_slug: str,
    customer_id: str,
    order_id: str,
    etag: str,
    verb: str,
) -> Order:
    """The order waiting for a decision, at the version `If-Match` names (Conflict otherwise)."""
    order = get(book, principal, reseller_slug, customer_id, order_id)
    _expect(order, etag)
    if order.status is not OrderStatus.PENDING_APPROVAL:
        raise Conflict(
            f"only a PendingApproval order can be {verb}; this one is {order.status.value}"
        )
    return order


def approve(
    book: OrderBook,
    principal: Principal,
    reseller_slug: str,
    customer_id: str,
    order_id: str,
    etag: str,
    decision: OrderDecision,
) -> Order:
    """An Account Manager approves a PendingApproval order: Submitted, provisioning starts.

    A Change order meets the new-commerce rules again (its window may have closed while it
    waited): a rule it now breaks rejects it (Cancelled, the rule's words as the reason, the
    subscription freed) and the answer is the 409 naming the rule. Another change holding
    the subscription is a 409 `change-in-progress` that leaves the order waiting.
    """
    order = _pending(book, principal, reseller_slug, customer_id, order_id, etag, "approved")
    still_as_priced(book, principal, order)
    if order.kind is OrderKind.CHANGE:
        try:
            retake(book, order, principal.email, recheck=True)
        except RuleBroken as broken:
            if broken.rule == nce.CHANGE_IN_PROGRESS:
                raise
            reason = f"{broken.rule}: {broken.detail}"
            order.move(OrderStatus.CANCELLED, book.clock.now(), principal.email, reason[:500])
            release(book, book.orders.update(order))
            raise RuleBroken(
                broken.rule, f"{broken.detail}; the change order is rejected (Cancelled)"
            ) from broken
    return _submit_again(book, order, principal.email, decision.reason)


def reject(
    book: OrderBook,
    principal: Principal,
    reseller_slug: str,
    customer_id: str,
    order_id: str,
    etag: str,
    decision: OrderDecision,
) -> Order:
    """An Account Manager rejects a PendingApproval order: Cancelled, with the reason."""
    order = _pending(book, principal, reseller_slug, customer_id, order_id, etag, "rejected")
    order.move(OrderStatus.CANCELLED, book.clock.now(), principal.email, decision.reason)
    order = book.orders.update(order)
    release(book, order)  # a rejected Change order: the subscription may be changed again
    return order


def retry(
    book: OrderBook,
    principal: Principal,
    reseller_slug: str,
    customer_id: str,
    order_id: str,
    etag: str | None,
) -> Order:
    """Provision a Failed order again.

    After a refusal, as a new request (new MS-RequestIds, no stored cart: the same request would
    be refused again); after a transient failure, with the stored ids and cart, so a cart or
    checkout that may have happened is replayed by Partner Center instead of made twice.

    A Change order takes its subscription again as a request does (409 `change-in-progress`
    while another change holds it); after a refusal it meets the new-commerce rules again
    (409 naming the rule, the order left Failed). After a transient failure the rules are
    not checked again: the change may have been made, and its request id replays it.
    """
    order = get(book, principal, reseller_slug, customer_id, order_id)
    _expect(order, etag)
    if principal.is_customer_user:
        raise Forbidden("a customer's user cannot retry an order")
    if order.status is not OrderStatus.FAILED:
        raise Conflict(f"only a Failed order can be retried; this one is {order.status.value}")
    refused = order.failure is None or order.failure.kind is FailureKind.REFUSED
    if refused and order.partner_center_order_ids:
        raise Conflict("Partner Center placed part of this order already; place a new one")
    if order.kind is OrderKind.CHANGE:
        retake(book, order, principal.email, recheck=refused)
    return _submit_again(book, order, principal.email, "retried", fresh=refused)


def _submit_again(
    book: OrderBook, order: Order, by: str, reason: str | None, *, fresh: bool = True
) -> Order:
    """Submitted again; a Change order whose subscription was just taken frees it when the
    order was not written (a lost race: the caller reads it again). A write whose outcome is
    unknown leaves it to the watchdog (`PendingChanges` frees a final order's change)."""
    try:
        return _place(book, order, by, reason, fresh=fresh)
    except ConcurrencyConflict:
        release(book, order)
        raise
