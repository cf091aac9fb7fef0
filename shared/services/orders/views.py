"""What a caller sees of an order (staff: every price layer; customers: their price only), and
the lists of them. Subscriptions have their own views (shared/services/subscriptions/views.py)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from pydantic import AwareDatetime, Field

from shared.domain.failures import FailureKind
from shared.domain.identity import Principal
from shared.domain.model import Page, WireModel
from shared.domain.money import Money
from shared.domain.orders import (
    ChangeKind,
    HistoryEntry,
    LineResult,
    Order,
    OrderKind,
    OrderLine,
    OrderStatus,
)
from shared.domain.pricing import PricedLine
from shared.services import access, resellers
from shared.services.attribution import Names, names_for
from shared.services.orders.book import OrderBook, customer_of
from shared.services.pricing import (
    LINE_VIEWS,
    LinePriceDistributor,
    LinePricePublic,
    LinePriceStaff,
    render_price,
)


class OrderLineStaff(WireModel):
    """A line as reseller staff see it: every price layer."""

    catalog_item_id: str
    product_id: str
    sku_id: str
    name: str
    quantity: int = Field(
        description="Seats; on a Change order, the seats the change adds (negative: removes, "
        "0: no price moves), or every seat when the offer, term or billing cycle changes."
    )
    subscription_quantity: int | None = Field(
        None, description="Change orders only: the subscription's seats after the change."
    )
    term_duration: str
    billing_cycle: str
    markup_percent: Decimal | None
    unit_price: Money | None
    parent_line: int | None
    parent_subscription_id: str | None
    friendly_name: str | None
    is_trial: bool
    priced: LinePriceStaff | LinePriceDistributor = Field(
        description="Every layer reseller staff see; Microsoft's cost for distributor admins only."
    )
    result: LineResult | None


class OrderLinePublic(WireModel):
    """A line as the customer's users see it: their price only."""

    catalog_item_id: str
    product_id: str
    sku_id: str
    name: str
    quantity: int = Field(
        description="Seats; on a Change order, the seats the change adds (negative: removes, "
        "0: no price moves), or every seat when the offer, term or billing cycle changes."
    )
    subscription_quantity: int | None = Field(
        None, description="Change orders only: the subscription's seats after the change."
    )
    term_duration: str
    billing_cycle: str
    parent_line: int | None
    parent_subscription_id: str | None
    friendly_name: str | None
    is_trial: bool
    priced: LinePricePublic
    result: LineResult | None


class FailureView(WireModel):
    """Why an order failed."""

    kind: FailureKind
    reason: str


class FailureStaff(FailureView):
    """Why an order failed, with Partner Center's words."""

    detail: str | None


class ChangeView(WireModel):
    """The one subscription change a Change order carries (only what it changes is set)."""

    kind: ChangeKind
    subscription_id: str
    summary: str
    quantity: int | None
    billing_cycle: str | None
    term_duration: str | None
    auto_renew: bool | None
    status: str | None
    to_catalog_item_id: str | None
    previous_quantity: int | None
    warnings: list[str] = Field(
        description="What else the change does, e.g. a scheduled change removed."
    )


class OrderStaff(WireModel):
    """An order as reseller staff see it."""

    id: str
    reseller: str
    customer_id: str
    kind: OrderKind
    change: ChangeView | None
    status: OrderStatus
    currency: str
    lines: list[OrderLineStaff]
    total: Money
    total_cost: Money
    margin: Money
    history: list[HistoryEntry]
    failure: FailureStaff | None
    warnings: list[str] = Field(description="What to weigh before approving (staff only).")
    created_by: str
    cart_id: str | None
    partner_center_order_ids: list[str]
    created_at: AwareDatetime
    updated_at: AwareDatetime


class OrderPublic(WireModel):
    """An order as the customer's users see it (no cost, margin or mark-up)."""

    id: str
    reseller: str
    customer_id: str
    kind: OrderKind
    change: ChangeView | None
    status: OrderStatus
    currency: str
    lines: list[OrderLinePublic]
    total: Money
    history: list[HistoryEntry]
    failure: FailureView | None
    created_at: AwareDatetime
    updated_at: AwareDatetime


class OrderPreviewStaff(WireModel):
    """Priced lines, not stored."""

    customer_id: str
    currency: str
    lines: list[OrderLineStaff]
    total: Money
    total_cost: Money
    margin: Money


class OrderPreviewPublic(WireModel):
    """Priced lines at the customer's prices, not stored."""

    customer_id: str
    currency: str
    lines: list[OrderLinePublic]
    total: Money


def _sum(amounts: Sequence[Money], currency: str) -> Money:
    return sum(amounts, Money.zero(currency))


def price_view(principal: Principal | None, priced: PricedLine, quantity: int | None = None) -> Any:
    """A price snapshot as the caller's audience sees it (the one place that decides), for
    `quantity` units when given (a Change order's line: what the change is worth)."""
    return render_price(priced, access.audience(principal), LINE_VIEWS, quantity=quantity)


def lines_view(
    principal: Principal | None, lines: Sequence[OrderLine], currency: str
) -> dict[str, Any]:
    """The lines and totals the caller may see."""
    total = _sum([li.amounts.customer_price for li in lines], currency)
    if access.sees_cost(principal):
        cost = _sum([li.amounts.reseller_cost for li in lines], currency)
        return {
            "lines": [
                OrderLineStaff(
                    **li.model_dump(exclude={"priced", "result"}),
                    priced=price_view(principal, li.priced, li.quantity),
                    result=li.result,
                )
                for li in lines
            ],
            "total": total,
            "total_cost": cost,
            "margin": total - cost,
        }
    return {
        "lines": [
            OrderLinePublic(
                **li.model_dump(exclude={"priced", "result"}),
                priced=price_view(principal, li.priced, li.quantity),
                result=li.result,
            )
            for li in lines
        ],
        "total": total,
    }


def present(principal: Principal | None, order: Order, names: Names) -> OrderStaff | OrderPublic:
    """The view of an order the caller may see (`names`: from `names_for` the caller)."""
    common = order.model_dump(
        include={"id", "reseller", "customer_id", "kind", "status", "currency"}
        | {"created_at", "updated_at"}
    )
    common["history"] = [e.model_copy(update={"by": names(e.by)}) for e in order.history]
    priced = lines_view(principal, order.lines, order.currency)
    common["change"] = (
        ChangeView(
            **order.change.model_dump(
                exclude={"request_id", "accepted_location", "transition_id", "applied"}
            )
        )
        if order.change is not None
        else None
    )
    if access.sees_cost(principal):
        return OrderStaff(
            **common,
            **priced,
            failure=order.failure.model_dump() if order.failure else None,
            warnings=order.warnings,
            created_by=order.created_by,
            cart_id=order.cart_id,
            partner_center_order_ids=order.partner_center_order_ids,
        )
    return OrderPublic(
        **common,
        **priced,
        failure=order.failure.model_dump(exclude={"detail"}) if order.failure else None,
    )


def list_orders(
    book: OrderBook,
    principal: Principal,
    reseller: str,
    customer_id: str | None,
    *,
    status: OrderStatus | None = None,
    page_size: int = 50,
    continuation_token: str | None = None,
) -> Page[OrderStaff | OrderPublic]:
    """A page of orders, newest first: one customer's, or (staff) the whole reseller's."""
    resellers.get(book.resellers, reseller)
    if principal.is_customer_user:
        customer_id = principal.customer_id
    if customer_id is not None:
        customer_of(book, principal, reseller, customer_id)
    equals: dict[str, Any] = {}
    if customer_id is not None:
        equals["customer_id"] = customer_id
    if status is not None:
        equals["status"] = status
    page = book.orders.list(
        reseller,
        equals=equals or None,
        page_size=page_size,
        continuation_token=continuation_token,
    )
    names = names_for(book, principal, reseller, customer_id)
    return Page[OrderStaff | OrderPublic](
        items=[present(principal, o, names) for o in page.items],
        continuation_token=page.continuation_token,
    )
