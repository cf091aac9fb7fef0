"""Drafts: preview (priced, not stored), create, edit and delete while an order is a Draft."""

from __future__ import annotations

from collections.abc import Sequence

from shared.domain.errors import Conflict, FieldError, Forbidden, ValidationFailed
from shared.domain.identity import Principal, Reseller, Role
from shared.domain.model import expected_version
from shared.domain.orders import (
    HistoryEntry,
    Order,
    OrderCreate,
    OrderLine,
    OrderLineInput,
    OrderStatus,
)
from shared.services import access, resellers
from shared.services.orders.book import OrderBook, customer_of, ensure_orderable, get
from shared.services.orders.lines import build_lines
from shared.services.orders.views import OrderPreviewPublic, OrderPreviewStaff, lines_view


def may_order(book: OrderBook, principal: Principal, reseller: Reseller) -> None:
    """Refuse a customer's user unless the reseller lets its customers order."""
    if principal.is_customer_user and not (
        principal.role is Role.CUSTOMER_ADMIN and reseller.settings.customer_ordering_enabled
    ):
        raise Forbidden("this reseller does not let its customers place orders")


def command_of(order: Order) -> OrderCreate:
    """The lines of a stored order as they were asked for (to validate and price them again)."""
    return lines_command(order.lines)


def lines_command(lines: Sequence[OrderLine]) -> OrderCreate:
    """Stored lines (an order's, a quote's) as they were asked for, to validate and price again."""
    return OrderCreate(
        lines=[
            OrderLineInput(
                catalog_item_id=line.catalog_item_id,
                # A Change order's line is priced as the whole subscription after it.
                quantity=line.subscription_quantity or line.quantity,
                term_duration=line.term_duration,
                billing_cycle=line.billing_cycle,
                markup_percent=line.markup_percent,
                unit_price=line.unit_price,
                parent_line=line.parent_line,
                parent_subscription_id=line.parent_subscription_id,
                friendly_name=line.friendly_name,
            )
            for line in lines
        ]
    )


def still_as_priced(book: OrderBook, principal: Principal, order: Order) -> None:
    """Before an order goes to Partner Center: the customer, the tenant's limits and the prices
    are checked again, as a draft may be days old. A changed price or currency is a 409 that
    says which lines; editing the draft (PATCH with its lines) prices it anew."""
    reseller = resellers.get(book.resellers, order.reseller)
    if reseller.currency != order.currency:
        raise Conflict(
            f"the order is priced in {order.currency} but the reseller now sells in "
            f"{reseller.currency}: edit the draft to price it anew"
        )
    customer = customer_of(book, principal, order.reseller, order.customer_id)
    ensure_orderable(customer)  # before the Change order's early return (build_lines checks too)
    if order.change is not None:
        # A Change order is never a draft to edit: its line is the subscription's price
        # snapshot as the change was asked (price-neutral changes whatever the catalog says
        # today), and the new-commerce rules are checked again when it is taken up
        # (`subscriptions.pending.retake`).
        return
    fresh = build_lines(book, reseller, customer, command_of(order))
    changed = [
        f"lines[{i}]"
        for i, (old, new) in enumerate(zip(order.lines, fresh, strict=True))
        if old.priced.extended.customer_price != new.priced.extended.customer_price
        or old.priced.extended.reseller_cost != new.priced.extended.reseller_cost
    ]
    if changed:
        raise Conflict(
            f"prices changed since the draft was priced ({', '.join(changed)}): edit the draft "
            "(PATCH with its lines) to see and keep the new prices, then submit again"
        )


def no_prices_by_customers(principal: Principal, command: OrderCreate) -> None:
    """A customer's user buys at the reseller's prices: a mark-up or a price on a line would
    reveal the reseller's cost (a 0 % mark-up) or set its own price (400 naming each)."""
    if not principal.is_customer_user:
        return
    errors = [
        FieldError(f"lines[{i}].{field}", "is set by the reseller, not by its customers")
        for i, line in enumerate(command.lines)
        for field, value in (("markupPercent", line.markup_percent), ("unitPrice", line.unit_price))
        if value is not None
    ]
    if errors:
        raise ValidationFailed(errors)


def preview(
    book: OrderBook,
    principal: Principal,
    reseller_slug: str,
    customer_id: str,
    command: OrderCreate,
) -> OrderPreviewStaff | OrderPreviewPublic:
    """Price lines without storing anything."""
    reseller = resellers.get(book.resellers, reseller_slug)
    may_order(book, principal, reseller)
    no_prices_by_customers(principal, command)
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
    no_prices_by_customers(principal, command)
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
    no_prices_by_customers(principal, command)
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
