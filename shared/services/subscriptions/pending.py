"""The change in flight on a Subscription record (`pending_change`): forgetting it once its
Change order has ended, and taking it again for a Change order that is retried or approved.

One change at a time: a request takes the subscription (write 1 in `requests.py`) before its
Change order exists; a retried order takes it again the same way before it is Submitted again,
so a retry never runs beside another change of the same subscription.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.domain import nce
from shared.domain.errors import ConcurrencyConflict, Conflict
from shared.domain.orders import Order, OrderKind
from shared.domain.subscriptions import PendingChange

if TYPE_CHECKING:
    from shared.services.orders.book import OrderBook

# How often a lost race on the record is re-read and tried again before giving up.
_RACE_TRIES = 5


def release(book: OrderBook, order: Order) -> None:
    """Forget the subscription's pending change of `order` (rejected, failed, completed)."""
    if order.kind is not OrderKind.CHANGE or order.change is None:
        return
    free(book, order.customer_id, order.change.subscription_id, order.id)


def free(book: OrderBook, customer_id: str, subscription_id: str, order_id: str | None) -> None:
    """Forget the change in flight of `order_id` on the subscription (None: a `changing` flag
    left without its change), re-read on a lost race; a no-op when the subscription moved on
    to another change or has none. The one place a subscription is freed, but for the end of
    an applied change, which frees it in the same write as Partner Center's facts."""
    for _ in range(_RACE_TRIES):
        sub = book.subscriptions.find(customer_id, subscription_id.lower())
        if sub is None or not sub.end_change(order_id):
            return
        sub.updated_at = book.clock.now()
        try:
            book.subscriptions.update(sub)
            return
        except ConcurrencyConflict:
            continue
    raise ConcurrencyConflict(f"subscription {subscription_id} kept changing")


def retake(book: OrderBook, order: Order, by: str, *, recheck: bool) -> None:
    """Take the subscription again for `order` (a Change order about to be Submitted again),
    as a request takes it: 409 `change-in-progress` while another change holds it; with
    `recheck`, the new-commerce rules are checked again against the record and the clock (the
    order's warnings follow). A lost race on the record is a 412 (ConcurrencyConflict)."""
    change = order.change
    if order.kind is not OrderKind.CHANGE or change is None:
        return
    sub = book.subscriptions.find(order.customer_id, change.subscription_id.lower())
    if sub is None:
        raise Conflict(
            f"subscription {change.subscription_id} is not recorded here any more; "
            "read the customer's subscriptions again"
        )
    # The record may still carry this order's own change (an approval; or a failure whose
    # record was not freed yet): it holds nothing against the order.
    own = sub.pending_change
    if not sub.end_change(order.id):
        own = None
    now = book.clock.now()
    if recheck:
        change.warnings = nce.check_change(sub, change, now)
    else:
        nce.no_change_in_flight(sub)
    sub.begin_change(
        PendingChange(
            order_id=order.id,
            summary=change.summary,
            requested_at=own.requested_at if own is not None else now,
            requested_by=own.requested_by if own is not None else by,
            change=change,
        )
    )
    sub.updated_at = now
    book.subscriptions.update(sub)
