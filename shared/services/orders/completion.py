"""The end of provisioning: one Subscription record per placed line, and the order's e-mail."""

from __future__ import annotations

import contextlib
from typing import Any

from shared.domain.errors import Conflict
from shared.domain.identity import NotificationEvent, Reseller
from shared.domain.orders import Order, OrderKind, OrderLine, OrderStatus
from shared.domain.subscriptions import Subscription, SubscriptionFacts, SubscriptionOrigin
from shared.ports import PartnerCenter
from shared.services import notifications
from shared.services.orders.book import OrderBook


def record_subscriptions(
    book: OrderBook, partner_center: PartnerCenter, order: Order, tenant: str
) -> None:
    """One Subscription record per placed line, with Partner Center's facts (each once)."""
    facts = {f.id.lower(): f for f in partner_center.subscription_facts(tenant)}
    now = book.clock.now()
    records: list[Subscription] = []
    for line in order.lines:
        if line.result is None or not line.result.subscription_id:
            continue
        sid = line.result.subscription_id
        f = facts.get(sid.lower())
        records.append(_subscription_record(order, line, sid, f, now))
    missing = [
        r for r in records if book.subscriptions.find(order.customer_id, r.id.lower()) is None
    ]
    for chunk in range(0, len(missing), 100):
        book.subscriptions.save_all(order.customer_id, adds=missing[chunk : chunk + 100])


def _subscription_record(
    order: Order, line: OrderLine, sid: str, f: SubscriptionFacts | None, now: Any
) -> Subscription:
    return Subscription(
        reseller=order.reseller,
        customer_id=order.customer_id,
        id=sid,
        catalog_item_id=(f.catalog_item_id if f and f.catalog_item_id else line.catalog_item_id),
        name=(f.name if f else line.friendly_name or line.name),
        quantity=(f.quantity if f else line.quantity),
        term_duration=(f.term_duration if f else line.term_duration),
        billing_cycle=(f.billing_cycle if f else line.billing_cycle),
        status=(f.status if f else "pending"),
        start_date=f.start_date if f else None,
        commitment_end_date=f.commitment_end_date if f else None,
        cancellation_allowed_until=f.cancellation_allowed_until if f else None,
        auto_renew=f.auto_renew if f else False,
        is_trial=f.is_trial if f else line.is_trial,
        parent_subscription_id=(f.parent_subscription_id if f else line.parent_subscription_id),
        priced=line.priced,
        origin=SubscriptionOrigin.ORDERED_HERE,
        order_id=order.id,
        partner_center_order_id=line.result.partner_center_order_id if line.result else None,
        created_at=now,
        updated_at=now,
    )


def notification_id(order: Order, audience: str = "") -> str:
    """The fixed id of an order's final e-mail (queued once per audience)."""
    base = f"order-{order.id}-{order.status.value.lower()}"
    return f"{base}-{audience}" if audience else base


def notify(book: OrderBook, reseller: Reseller, order: Order) -> None:
    """Queue the order's completed / failed e-mails to whom the reseller's settings name: one
    to the reseller's staff and, when a customer's user placed it, one to that user (staff
    addresses are never shown to a customer). Neither names a cost or a margin."""
    if book.notifications is None:
        return
    failed = order.status is OrderStatus.FAILED
    event = NotificationEvent.ORDER_FAILED if failed else NotificationEvent.ORDER_COMPLETED
    if order.kind is OrderKind.CHANGE:
        event = NotificationEvent.SUBSCRIPTION_CHANGED
    by_customer = notifications.is_customer_user(book.users, reseller.slug, order.created_by)
    audiences = [("", not by_customer)]
    if by_customer:
        audiences.append(("customer", True))
    subject, text = _order_email(order)
    for audience, with_creator in audiences:
        nid = notification_id(order, audience)
        if book.notifications.find(reseller.slug, nid) is not None:
            continue
        email = notifications.email_to(
            reseller,
            event,
            subject,
            text,
            interested=[order.created_by] if with_creator else [],
            users=book.users,
            staff=audience != "customer",
        )
        if email is None:
            continue
        with contextlib.suppress(Conflict):  # queued by an earlier delivery of this step
            notifications.queue_email(book.notifications, reseller.slug, email, notification_id=nid)


def _order_email(order: Order) -> tuple[str, str]:
    """Subject and text of an order's final e-mail: lines and outcomes, no price."""
    if order.kind is OrderKind.CHANGE and order.change is not None:
        return _change_email(order)
    lines = "\n".join(
        f"- {li.quantity} × {li.name}: "
        + (
            f"subscription {li.result.subscription_id}"
            if li.result and li.result.subscription_id
            else (li.result.error if li.result and li.result.error else "not placed")
        )
        for li in order.lines
    )
    headline = {
        OrderStatus.COMPLETED: "is complete",
        OrderStatus.COMPLETED_WITH_ERRORS: "is complete, with errors",
        OrderStatus.FAILED: "failed",
    }.get(order.status, order.status.value)
    text = f"Order {order.id} of customer {order.customer_id} {headline}.\n\n{lines}\n"
    if order.failure is not None:
        text += f"\nWhy: {order.failure.reason}\n"
    return f"Order {order.id[-8:]} {headline}", text


def _change_email(order: Order) -> tuple[str, str]:
    """Subject and text of a Change order's final e-mail: what changed (or why not), no price."""
    assert order.change is not None
    change = order.change
    failed = order.status is OrderStatus.FAILED
    headline = "failed" if failed else "is done"
    result = order.lines[0].result if order.lines else None
    moved_to = result.subscription_id if result is not None and not failed else None
    text = (
        f"The change of subscription {change.subscription_id} of customer {order.customer_id} "
        f"{headline}: {change.summary}.\n"
    )
    if moved_to and moved_to.lower() != change.subscription_id.lower():
        text += f"The seats are now in subscription {moved_to}.\n"
    for warning in change.warnings:
        text += f"Note: {warning}\n"
    if order.failure is not None:
        text += f"\nWhy: {order.failure.reason}\n"
    return f"Subscription change {headline}: {change.summary}", text
