"""Drafts: preview (priced, not stored), create, edit and delete while an order is a Draft."""

from __future__ import annotations

from shared.domain.errors import Conflict, Forbidden
from shared.domain.identity import Principal, Reseller, Role
from shared.domain.model import expected_version
from shared.domain.orders import HistoryEntry, Order, OrderCreate, OrderStatus
from shared.services import access, resellers
from shared.services.orders.book import OrderBook, customer_of, get
from shared.services.orders.lines import build_lines
from shared.services.orders.views import OrderPreviewPublic, OrderPreviewStaff, lines_view


def may_order(book: OrderBook, principal: Principal, reseller: Reseller) -> None:
    """Refuse a customer's user unless the reseller lets its customers order."""
    if principal.is_customer_user and not (
        principal.role is Role.CUSTOMER_ADMIN and reseller.settings.customer_ordering_enabled
    ):
        raise Forbidden("this reseller does not let its customers place orders")


def preview(
    book: OrderBook,
    principal: Principal,
    reseller_slug: str,
    customer_id: str,
    command: OrderCreate,
) -> OrderPreviewStaff | OrderPreviewPublic:
    """Price lines without storing anything."""
    reseller = resellers.get(book.resellers, reseller_slug)
    customer = customer_of(book, principal, reseller.slug, customer_id)
    lines = build_lines(book, reseller, customer, command)
    priced = lines_view(principal, lines, reseller.currency)
    model = OrderPreviewStaff if access.sees_cost(principal) else OrderPreviewPublic
    return model(customer_id=customer.id, currency=reseller.currency, **priced)


def create(
    book: OrderBook,
    principal: Principal,
    reseller_slug: str,
    customer_id: str,
    command: OrderCreate,
) -> Order:
    """Store a Draft (validated and priced)."""
    reseller = resellers.get(book.resellers, reseller_slug)
    may_order(book, principal, reseller)
    customer = customer_of(book, principal, reseller.slug, customer_id)
    lines = build_lines(book, reseller, customer, command)
    now = book.clock.now()
    order = Order(
        reseller=reseller.slug,
        customer_id=customer.id,
        lines=lines,
        currency=reseller.currency,
        created_by=principal.email,
        created_at=now,
        updated_at=now,
        history=[HistoryEntry(status=OrderStatus.DRAFT, at=now, by=principal.email)],
    )
    return book.orders.add(order)


def _draft(book: OrderBook, principal: Principal, order: Order, etag: str) -> Order:
    if order.status is not OrderStatus.DRAFT:
        raise Conflict(f"only a Draft can be changed; this order is {order.status.value}")
    if principal.is_customer_user:
        reseller = resellers.get(book.resellers, order.reseller)
        may_order(book, principal, reseller)
    order.etag = expected_version(order.etag, etag)  # `*`: the version just read
    return order


def update(
    book: OrderBook,
    principal: Principal,
    reseller_slug: str,
    customer_id: str,
    order_id: str,
    etag: str,
    command: OrderCreate,
) -> Order:
    """Replace a Draft's lines (re-validated and re-priced) if it is still at `etag`."""
    order = _draft(
        book, principal, get(book, principal, reseller_slug, customer_id, order_id), etag
    )
    reseller = resellers.get(book.resellers, reseller_slug)
    customer = customer_of(book, principal, reseller_slug, customer_id)
    order.lines = build_lines(book, reseller, customer, command)
    order.updated_at = book.clock.now()
    return book.orders.update(order)


def delete(
    book: OrderBook,
    principal: Principal,
    reseller_slug: str,
    customer_id: str,
    order_id: str,
    etag: str,
) -> None:
    """Delete a Draft if it is still at `etag`."""
    order = _draft(
        book, principal, get(book, principal, reseller_slug, customer_id, order_id), etag
    )
    book.orders.delete(order)
