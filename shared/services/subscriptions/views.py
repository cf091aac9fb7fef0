"""What a caller sees of a subscription: staff every price layer (cost and margin), customer
users their price only (a different response model, not a filtered dict)."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import AwareDatetime, Field

from shared.domain.identity import Principal
from shared.domain.model import WireModel
from shared.domain.money import Money
from shared.domain.subscriptions import Subscription, SubscriptionOrigin
from shared.services import access
from shared.services.attribution import Names
from shared.services.orders.views import price_view
from shared.services.pricing import LinePriceDistributor, LinePricePublic, LinePriceStaff


class RefundableDetail(WireModel):
    """Seats that can still be removed for a refund, until when."""

    quantity: int
    allowed_until: AwareDatetime


class RefundableQuantity(WireModel):
    """The seats that can be removed now (each batch has its own 7-day window)."""

    total: int
    details: list[RefundableDetail]


class NextTermView(WireModel):
    """The change Partner Center applies at renewal."""

    catalog_item_id: str | None
    quantity: int | None
    term_duration: str | None
    billing_cycle: str | None


class PendingChangeView(WireModel):
    """The change asked for and not yet applied or failed, and its Change order."""

    order_id: str
    order: str = Field(description="The Change order (a link to GET).")
    summary: str
    requested_at: AwareDatetime
    requested_by: str


class _SubscriptionFields(WireModel):
    """What every reader of a subscription sees, whatever the price view."""

    id: str
    customer_id: str
    catalog_item_id: str | None
    product_id: str | None
    name: str
    quantity: int
    assigned_licences: int | None = Field(
        description="Licences of this SKU assigned to users (Partner Center's subscribedskus)."
    )
    term_duration: str | None
    billing_cycle: str | None
    status: str
    start_date: AwareDatetime | None
    commitment_end_date: AwareDatetime | None
    renews_on: date | None = Field(description="The anniversary: the day after the term ends.")
    cancellation_allowed_until: AwareDatetime | None
    refundable_quantity: RefundableQuantity
    next_term: NextTermView | None
    auto_renew: bool
    is_trial: bool
    trial_ends_on: date | None
    parent_subscription_id: str | None
    origin: SubscriptionOrigin
    order_id: str | None
    pending_change: PendingChangeView | None
    refreshed_at: AwareDatetime | None = Field(
        description="When the facts were last read from Partner Center."
    )
    currency: str | None
    unit_price: Money | None = Field(description="The customer's price per seat, as sold.")
    total_price: Money | None = Field(description="Unit price × the current quantity.")


class SubscriptionStaff(_SubscriptionFields):
    """A subscription as reseller staff see it: cost and margin too."""

    note: str | None = Field(
        None,
        description="What the platform could not work out about it, or why the sync ended it "
        "(e.g. no price: its offer is not in the catalog; moved to another reseller).",
    )
    unit_cost: Money | None
    total_cost: Money | None
    margin: Money | None = Field(description="Total price − total cost.")
    priced: LinePriceStaff | LinePriceDistributor | None = Field(
        description="The price snapshot as sold (Microsoft's cost for distributor admins only)."
    )


class SubscriptionPublic(_SubscriptionFields):
    """A subscription at the customer's price."""

    priced: LinePricePublic | None


def _order_link(sub: Subscription, order_id: str) -> str:
    return f"/api/resellers/{sub.reseller}/customers/{sub.customer_id}/orders/{order_id}"


def _common(sub: Subscription, names: Names) -> dict[str, Any]:
    open_seats = [r for r in sub.refundable if r.quantity > 0]
    pending = sub.pending_change
    unit = sub.priced.unit.customer_price if sub.priced is not None else None
    return {
        **sub.model_dump(
            include={
                "id",
                "customer_id",
                "catalog_item_id",
                "name",
                "quantity",
                "assigned_licences",
                "term_duration",
                "billing_cycle",
                "status",
                "start_date",
                "commitment_end_date",
                "cancellation_allowed_until",
                "auto_renew",
                "is_trial",
                "parent_subscription_id",
                "origin",
                "order_id",
                "refreshed_at",
            }
        ),
        "product_id": sub.product_id,
        "renews_on": sub.renews_on,
        "refundable_quantity": RefundableQuantity(
            total=sum(r.quantity for r in open_seats),
            details=[
                RefundableDetail(quantity=r.quantity, allowed_until=r.until) for r in open_seats
            ],
        ),
        "next_term": NextTermView(**vars(sub.next_term)) if sub.next_term else None,
        "trial_ends_on": sub.trial_ends.date() if sub.trial_ends and sub.is_trial else None,
        "pending_change": (
            PendingChangeView(
                order_id=pending.order_id,
                order=_order_link(sub, pending.order_id),
                summary=pending.summary,
                requested_at=pending.requested_at,
                requested_by=names(pending.requested_by),
            )
            if pending is not None
            else None
        ),
        "currency": sub.priced.currency if sub.priced is not None else None,
        "unit_price": unit,
        "total_price": unit * sub.quantity if unit is not None else None,
    }


def present_subscription(
    principal: Principal | None, sub: Subscription, names: Names
) -> SubscriptionStaff | SubscriptionPublic:
    """The view of a subscription the caller may see (`names`: from `names_for` the caller)."""
    data = _common(sub, names)
    priced = price_view(principal, sub.priced) if sub.priced is not None else None
    if not access.sees_cost(principal):
        return SubscriptionPublic(**data, priced=priced)
    cost = sub.priced.unit.reseller_cost if sub.priced is not None else None
    total_cost = cost * sub.quantity if cost is not None else None
    total = data["total_price"]
    return SubscriptionStaff(
        **data,
        note=sub.note,
        unit_cost=cost,
        total_cost=total_cost,
        margin=total - total_cost if total is not None and total_cost is not None else None,
        priced=priced,
    )
