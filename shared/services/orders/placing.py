"""Placing an order in Partner Center: the cart's lines, checkout (and its recovery when the
replay of a checkout was lost), and what each line got."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from shared.domain.errors import UpstreamRejected
from shared.domain.failures import FailureKind
from shared.domain.orders import (
    CartLineRequest,
    CheckoutResult,
    LineResult,
    Order,
    OrderFailure,
    OrderLine,
    OrderStatus,
    PlacedOrder,
)
from shared.ports import PartnerCenter
from shared.services.orders.book import SYSTEM, OrderBook

log = logging.getLogger(__name__)

# Partner Center: the cart was submitted already (a repeated checkout whose replay is lost);
# 800065 is Microsoft's documented code (REFERENCE.md, checkout).
_CART_ALREADY_ORDERED = "800065"
_SEAT_LIMIT = "10015"
# How far Partner Center's clock may be behind ours when matching orders to a submit.
_SKEW = timedelta(minutes=5)


def cart_lines(order: Order, mpn_id: str) -> list[CartLineRequest]:
    """One order group per base line with its add-ons: a refused group fails only its lines."""
    return [
        CartLineRequest(
            catalog_item_id=line.catalog_item_id,
            quantity=line.quantity,
            term_duration=line.term_duration,
            billing_cycle=line.billing_cycle,
            reseller_mpn_id=mpn_id,
            order_group=str(group_of(order, i)),
            friendly_name=line.friendly_name,
        )
        for i, line in enumerate(order.lines)
    ]


def group_of(order: Order, i: int) -> int:
    """The order group of line `i`: its own index, or its base line's."""
    parent = order.lines[i].parent_line
    return i if parent is None else parent


def check_out_cart(
    book: OrderBook, partner_center: PartnerCenter, order: Order, tenant: str
) -> CheckoutResult:
    """Check the stored cart out; a cart Partner Center says is ordered already is recovered."""
    assert order.cart_id is not None and order.checkout_request_id is not None
    try:
        return partner_center.check_out(tenant, order.cart_id, request_id=order.checkout_request_id)
    except UpstreamRejected as exc:
        if exc.code != _CART_ALREADY_ORDERED:
            raise
    log.warning(
        "cart %s of order %s was checked out already; recovering its orders",
        order.cart_id,
        order.id,
    )
    return CheckoutResult(orders=tuple(_recover_orders(book, partner_center, order, tenant)))


class PlacementUnclear(Exception):
    """Partner Center says the cart was checked out, but which of its orders are ours cannot
    be told for sure: a person must look (the order stays retryable with the same requests)."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason)
        self.detail = detail


def _recover_orders(
    book: OrderBook, partner_center: PartnerCenter, order: Order, tenant: str
) -> list[PlacedOrder]:
    """The Partner Center orders our checkout placed: per order group, the one order of
    exactly the group's lines (offer and quantity), created since this attempt's cart, and
    not claimed by another order of ours. Nothing found, or two candidates for a group, is
    a `PlacementUnclear`: never a guess, never a refusal (a retry would buy again)."""
    claimed = _claimed_elsewhere(book, order)
    since = _cart_since(order)
    candidates = [
        placed
        for placed in partner_center.placed_orders(tenant)
        if placed.id not in claimed
        and placed.lines
        and not (since is not None and placed.created_at is not None and placed.created_at < since)
    ]
    groups: dict[int, list[tuple[str, int]]] = {}
    for i, line in enumerate(order.lines):
        groups.setdefault(group_of(order, i), []).append(
            (line.catalog_item_id.upper(), line.quantity)
        )
    by_shape: dict[tuple[tuple[str, int], ...], int] = {}
    for lines in groups.values():
        shape = tuple(sorted(lines))
        by_shape[shape] = by_shape.get(shape, 0) + 1
    found: list[PlacedOrder] = []
    where = f"cart {order.cart_id} of order {order.id}"
    for shape, wanted in by_shape.items():
        matches = [
            p
            for p in candidates
            if tuple(sorted((pl.catalog_item_id, pl.quantity) for pl in p.lines)) == shape
        ]
        if len(matches) > wanted:
            raise PlacementUnclear(
                f"Partner Center says {where} was checked out, and more than one of the "
                "customer's Partner Center orders since then has the same lines "
                f"({', '.join(p.id for p in matches)}); check in Partner Center which is this "
                "order's before retrying it",
                detail=f"candidates: {', '.join(p.id for p in matches)}",
            )
        found.extend(matches)
    if not found:
        raise PlacementUnclear(
            f"Partner Center says {where} was checked out, but none of the customer's orders "
            "in Partner Center matches its lines; check the customer's orders in Partner "
            "Center before retrying (a retry repeats the same checkout, it does not buy again)"
        )
    return found


def _claimed_elsewhere(book: OrderBook, order: Order) -> set[str]:
    """Partner Center order ids recorded on the customer's other orders."""
    claimed: set[str] = set()
    token: str | None = None
    while True:
        page = book.orders.list(
            order.reseller,
            equals={"customer_id": order.customer_id},
            page_size=1000,
            continuation_token=token,
        )
        claimed |= {
            pid for o in page.items if o.id != order.id for pid in o.partner_center_order_ids
        }
        token = page.continuation_token
        if token is None:
            return claimed


def _cart_since(order: Order) -> datetime | None:
    """The earliest a Partner Center order of this attempt's cart can have been created."""
    if order.cart_created_at is not None:
        return order.cart_created_at - _SKEW
    # An order recorded before the cart's time was kept: its first submit (wider, still safe).
    first = next((h.at for h in order.history if h.status is OrderStatus.SUBMITTED), None)
    return None if first is None else first - _SKEW


def record_checkout(order: Order, result: CheckoutResult) -> None:
    """Partner Center's order ids, and per line its order or the sentence saying why not."""
    order.partner_center_order_ids = [o.id for o in result.orders]
    taken: set[tuple[str, int]] = set()
    for line in order.lines:
        for placed in result.orders:
            match = next(
                (
                    pl
                    for pl in placed.lines
                    if (placed.id, pl.number) not in taken
                    and pl.catalog_item_id == line.catalog_item_id.upper()
                    and pl.quantity == line.quantity
                ),
                None,
            )
            if match is not None:
                taken.add((placed.id, match.number))
                line.result = LineResult(
                    partner_center_order_id=placed.id, subscription_id=match.subscription_id
                )
                break
    for error in result.errors:
        for i, line in enumerate(order.lines):
            if str(group_of(order, i)) == error.order_group and line.result is None:
                line.result = LineResult(
                    error=_line_error(line, error.code, error.description, error.available_quantity)
                )


def fill_subscription_ids(partner_center: PartnerCenter, order: Order, tenant: str) -> None:
    """Read again each Partner Center order with a line still without its subscription id
    (checkout may answer before provisioning); a line left with neither a subscription nor an
    error then says so, so the order can never end Completed without it."""
    waiting = sorted(
        {
            li.result.partner_center_order_id
            for li in order.lines
            if li.result and li.result.partner_center_order_id and not li.result.subscription_id
        }
    )
    for pid in waiting:
        placed = partner_center.placed_order(tenant, pid)
        known = {
            li.result.subscription_id.lower()
            for li in order.lines
            if li.result and li.result.subscription_id
        }
        free = [
            pl
            for pl in placed.lines
            if pl.subscription_id and pl.subscription_id.lower() not in known
        ]
        for line in order.lines:
            result = line.result
            if result is None or result.partner_center_order_id != pid or result.subscription_id:
                continue
            match = next(
                (
                    pl
                    for pl in free
                    if pl.catalog_item_id == line.catalog_item_id.upper()
                    and pl.quantity == line.quantity
                ),
                None,
            )
            if match is not None:
                free.remove(match)
                result.subscription_id = match.subscription_id
    for line in order.lines:
        result = line.result
        if result is not None and (result.subscription_id or result.error):
            continue
        placed_in = result.partner_center_order_id if result is not None else None
        line.result = LineResult(
            partner_center_order_id=placed_in,
            error=(
                f"Partner Center reported no subscription for {line.name}"
                + (f" in its order {placed_in}" if placed_in else "")
                + "; check the customer's subscriptions in Partner Center"
            ),
        )


def _line_error(line: OrderLine, code: str, description: str, available: int | None) -> str:
    """A sentence a person can act on, from Partner Center's refusal of a line."""
    if code == _SEAT_LIMIT:
        if available is not None:
            return f"at most {available} more licences of {line.name} for this tenant"
        return f"the quantity of {line.name} is outside what this tenant may buy ({description})"
    return f"Partner Center refused {line.name}: {description} (code {code})"


def record_cart_refused(book: OrderBook, order: Order, line_errors: dict[int, str]) -> None:
    """Partner Center flagged lines of the new cart: each says why, and the order is Failed
    before any checkout (refused: a retry, once the lines are fixed, builds a new cart)."""
    for i, line in enumerate(order.lines):
        if i in line_errors:
            line.result = LineResult(error=f"Partner Center refused {line.name}: {line_errors[i]}")
    reasons = [li.result.error for li in order.lines if li.result and li.result.error]
    reason = "; ".join(reasons) or "Partner Center refused the cart"
    detail = "; ".join(f"line {i}: {e}" for i, e in sorted(line_errors.items()))
    order.failure = OrderFailure(kind=FailureKind.REFUSED, reason=reason[:1000], detail=detail)
    order.move(OrderStatus.FAILED, book.clock.now(), SYSTEM, reason[:500])


def record_nothing_placed(book: OrderBook, order: Order, result: CheckoutResult) -> None:
    """Partner Center placed none of the lines: Failed, saying why."""
    reasons = [li.result.error for li in order.lines if li.result and li.result.error]
    reason = "; ".join(dict.fromkeys(reasons)) or "Partner Center placed none of the lines"
    detail = "; ".join(f"{e.code}: {e.description}" for e in result.errors) or None
    order.failure = OrderFailure(kind=FailureKind.REFUSED, reason=reason[:1000], detail=detail)
    order.move(OrderStatus.FAILED, book.clock.now(), SYSTEM, reason[:500])
