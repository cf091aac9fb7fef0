"""Partner Center's cart, order and subscription shapes mapped to ours (and back).

Only this module knows how a cart body looks or where Microsoft hides a field (`model_extra`);
the orders service speaks `CartLineRequest`, `CheckoutResult`, `PlacedOrder`.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.adapters.partner_center import wire as pc
from shared.domain.orders import (
    CartLineRequest,
    CartRef,
    CheckoutResult,
    OrderGroupError,
    OrderProvisioning,
    PlacedOrder,
    PlacedOrderLine,
)

_DONE = frozenset({"fulfilled", "completed", "succeeded", "provisioned"})


def cart_body(lines: Sequence[CartLineRequest]) -> pc.Cart:
    """The cart Partner Center expects: one line item per line, the reseller as participant."""
    return pc.Cart(
        line_items=[
            pc.CartLineItem(
                id=i,
                catalog_item_id=line.catalog_item_id,
                quantity=line.quantity,
                term_duration=line.term_duration,
                billing_cycle=line.billing_cycle,
                friendly_name=line.friendly_name,
                order_group=line.order_group,
                participants=[
                    pc.CartLineItemParticipant(
                        type=pc.ParticipantType.TRANSACTION_RESELLER.value,
                        partner_id=line.reseller_mpn_id,
                    )
                ],
            )
            for i, line in enumerate(lines)
        ]
    )


def cart_ref(cart: pc.Cart) -> CartRef:
    """A created cart: its id and the lines Partner Center flagged."""
    errors = {
        (item.id if item.id is not None else i): (
            item.error.error_description or str(item.error.error_code)
        )
        for i, item in enumerate(cart.line_items)
        if item.error is not None
    }
    return CartRef(id=cart.id or "", line_errors=errors)


def placed_order(order: pc.Order) -> PlacedOrder:
    """A Partner Center order as ours."""
    return PlacedOrder(
        id=order.id or "",
        created_at=order.creation_date,
        lines=tuple(
            PlacedOrderLine(
                number=item.line_item_number if item.line_item_number is not None else i,
                catalog_item_id=(item.offer_id or "").upper(),
                quantity=item.quantity or 0,
                subscription_id=item.subscription_id,
            )
            for i, item in enumerate(order.line_items)
        ),
    )


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def checkout_result(result: pc.CartCheckoutResult) -> CheckoutResult:
    """Placed orders and the refused order groups (with the seats still free, when given)."""
    return CheckoutResult(
        orders=tuple(placed_order(o) for o in result.orders),
        errors=tuple(
            OrderGroupError(
                order_group=str(e.order_group_id or "0"),
                code=str(e.code or ""),
                description=e.description or "",
                available_quantity=_int((e.model_extra or {}).get("availableQuantity")),
            )
            for e in result.order_errors
        ),
    )


def provisioning(
    order_id: str, lines: Sequence[pc.OrderLineItemProvisioningStatus]
) -> OrderProvisioning:
    """Whether every line of the order is provisioned."""
    pending = sum(1 for line in lines if (line.status or "").lower() not in _DONE)
    return OrderProvisioning(order_id=order_id, done=pending == 0, pending_lines=pending)
