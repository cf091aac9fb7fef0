"""Forgetting a subscription's change in flight once its Change order has ended."""

from __future__ import annotations

from shared.domain.orders import Order
from shared.services.orders.book import OrderBook


def release(book: OrderBook, order: Order) -> None:
    """Forget the subscription's pending change of `order` (rejected, failed, completed); a
    no-op when the subscription moved on to another change or has none."""
    if order.change is None:
        return
    sub = book.subscriptions.find(order.customer_id, order.change.subscription_id.lower())
    if sub is not None and sub.end_change(order.id):
        sub.updated_at = book.clock.now()
        book.subscriptions.update(sub)
