"""Requesting a change of a subscription: body → new-commerce rules → write 1 → write 2.

Write 1 stores the change in flight on the Subscription record, conditional on its ETag (this
decides the winner of concurrent requests; the others get 412). Write 2 (`open_change_order`)
adds the Change order, priced by the orders' own line pricing, with its `provision-order`
message in one transaction, under the order id chosen in write 1. A crash between the two
leaves a pending change without its order: the watchdog (`PendingChanges`) calls the same
`open_change_order` (or forgets the change when its order has ended).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Literal

from pydantic import Field, model_validator

from shared.domain import nce
from shared.domain.customers import Customer
from shared.domain.errors import (
    ClaimTaken,
    Conflict,
    FieldError,
    Forbidden,
    PreconditionFailed,
    UpstreamUnavailable,
    ValidationFailed,
)
from shared.domain.failures import Failure
from shared.domain.identity import Principal, Reseller, Role
from shared.domain.model import ANY_VERSION, WireModel, expected_version, new_id
from shared.domain.orders import (
    CATALOG_ITEM_PATTERN,
    FINAL,
    TERM_PATTERN,
    ChangeKind,
    HistoryEntry,
    Order,
    OrderCreate,
    OrderKind,
    OrderLine,
    OrderLineInput,
    OrderStatus,
    SubscriptionChangeOrder,
)
from shared.domain.pricing import PricedLine
from shared.domain.subscriptions import NextTerm, PendingChange, Subscription
from shared.ports import PartnerCenter
from shared.services import resellers
from shared.services.orders.book import OrderBook, ensure_orderable, find_order
from shared.services.orders.lines import build_lines
from shared.services.orders.submission import provision_message
from shared.services.subscriptions.pending import free
from shared.services.subscriptions.pricing import Terms, changes_offer, price_after, terms_after
from shared.services.subscriptions.reading import find_subscription, licence_count_of
from shared.services.watchdog import InFlight

_CYCLE = r"^[a-z]{3,20}$"


# --- bodies ---------------------------------------------------------------------------------


class SubscriptionPatch(WireModel):
    """A change of the subscription now (at least one field; a status change comes alone)."""

    model_config = WireModel.model_config | {"extra": "forbid"}

    quantity: int | None = Field(None, ge=1, le=100000, description="Licences.")
    billing_cycle: str | None = Field(None, pattern=_CYCLE, description="monthly, annual, …")
    term_duration: str | None = Field(None, pattern=TERM_PATTERN, description="Only longer.")
    auto_renew: bool | None = None
    status: Literal["Active", "Suspended", "Cancelled"] | None = Field(
        None, description="Suspended, Active (reactivate) or Cancelled."
    )

    @model_validator(mode="after")
    def _something(self) -> SubscriptionPatch:
        named = [k for k, v in self.model_dump().items() if v is not None]
        if not named:
            raise ValueError(
                "name at least one of quantity, billingCycle, termDuration, autoRenew, status"
            )
        if self.status is not None and len(named) > 1:
            raise ValueError("a status change comes alone (no other field beside status)")
        return self


class ConvertRequest(WireModel):
    """Trial → paid (every field optional: the one eligible paid offer, the trial's seats)."""

    model_config = WireModel.model_config | {"extra": "forbid"}

    to_catalog_item_id: str | None = Field(None, pattern=CATALOG_ITEM_PATTERN)
    quantity: int | None = Field(None, ge=1, le=100000)
    term_duration: str | None = Field(None, pattern=TERM_PATTERN)
    billing_cycle: str | None = Field(None, pattern=_CYCLE)


class UpgradeRequest(WireModel):
    """Move seats to another SKU among the subscription's upgrade targets."""

    model_config = WireModel.model_config | {"extra": "forbid"}

    to_catalog_item_id: str = Field(pattern=CATALOG_ITEM_PATTERN)
    quantity: int = Field(ge=1, le=100000)


class NextTermRequest(WireModel):
    """The change applied at renewal (at least one field)."""

    model_config = WireModel.model_config | {"extra": "forbid"}

    catalog_item_id: str | None = Field(None, pattern=CATALOG_ITEM_PATTERN)
    quantity: int | None = Field(None, ge=1, le=100000)
    term_duration: str | None = Field(None, pattern=TERM_PATTERN)
    billing_cycle: str | None = Field(None, pattern=_CYCLE)

    @model_validator(mode="after")
    def _something(self) -> NextTermRequest:
        if all(v is None for v in self.model_dump().values()):
            raise ValueError(
                "name at least one of catalogItemId, quantity, termDuration, billingCycle"
            )
        return self


# --- who may ----------------------------------------------------------------------------------


def may_change(principal: Principal, reseller: Reseller) -> None:
    """A customer's user changes subscriptions only as its admin, where the reseller allows."""
    if principal.is_customer_user and not (
        principal.role is Role.CUSTOMER_ADMIN
        and reseller.settings.customer_subscription_changes_enabled
    ):
        raise Forbidden("this reseller does not let its customers change subscriptions")


def _needs_approval(principal: Principal, reseller: Reseller) -> bool:
    return principal.is_customer_user or reseller.settings.orders_require_approval


# --- pricing the Change order's line -----------------------------------------------------------

_LINE_FIELD = re.compile(r"^lines\[0\]\.")
_BODY_FIELDS = {"quantity", "billingCycle", "termDuration"}


def _line_input(sub: Subscription, after: Terms) -> OrderLineInput:
    """The subscription after the change, as one order line to validate against the catalog
    and the tenant's limits (the customer's unit price kept as sold unless the offer, term or
    billing cycle changes)."""
    if not after.catalog_item_id:
        raise Conflict(
            "the subscription's offer is not known here; it cannot be changed from the platform"
        )
    kept = sub.priced is not None and not changes_offer(sub, after)
    return OrderLineInput(
        catalog_item_id=after.catalog_item_id,
        quantity=after.quantity,
        term_duration=after.term_duration,
        billing_cycle=after.billing_cycle,
        unit_price=sub.priced.unit.customer_price if kept and sub.priced else None,
        parent_subscription_id=sub.parent_subscription_id,
    )


def _keeps_price(change: SubscriptionChangeOrder) -> bool:
    """A change that moves no price: cancel, suspend, reactivate, auto-renew, unschedule."""
    if change.kind is ChangeKind.UNSCHEDULE:
        return True
    return change.kind is ChangeKind.UPDATE and (
        change.quantity is None and change.billing_cycle is None and change.term_duration is None
    )


def _line_as_sold(sub: Subscription, priced: PricedLine) -> OrderLine:
    """The subscription's line as its price snapshot has it (nothing priced again)."""
    sheet = priced.price_sheet
    return OrderLine(
        catalog_item_id=(sub.catalog_item_id or f"{sheet.product_id}:{sheet.sku_id}").upper(),
        product_id=sheet.product_id,
        sku_id=sheet.sku_id,
        name=sub.name,
        quantity=0,
        subscription_quantity=priced.quantity,
        term_duration=sheet.term,
        billing_cycle=sheet.billing_cycle,
        unit_price=priced.unit.customer_price,
        parent_subscription_id=sub.parent_subscription_id,
        is_trial=sub.is_trial,
        priced=priced,
    )


def change_lines(
    book: OrderBook,
    reseller: Reseller,
    customer: Customer,
    sub: Subscription,
    change: SubscriptionChangeOrder,
) -> list[OrderLine]:
    """The Change order's one line, validated and priced like any order line; what is wrong
    with the body is a 400 naming the body's field, what is wrong with the subscription's
    offer a 409. A change that moves no price copies the record's price snapshot instead: a
    customer may cancel or suspend whatever the catalog says of the offer today (withdrawn,
    capped, found in Partner Center without a catalog item)."""
    ensure_orderable(customer)  # price-neutral changes too (build_lines checks the others)
    if _keeps_price(change) and sub.priced is not None:
        return [_line_as_sold(sub, sub.priced)]
    try:
        after = terms_after(sub, change)
        command = OrderCreate(lines=[_line_input(sub, after)])
        [line] = build_lines(book, reseller, customer, command, replacing=sub.id)
        priced = price_after(book, reseller, customer, sub.priced, after)
    except ValidationFailed as exc:
        named = [FieldError(_LINE_FIELD.sub("", e.field), e.message) for e in exc.errors]
        target = (
            "toCatalogItemId" if change.kind in (ChangeKind.CONVERT, ChangeKind.UPGRADE) else None
        )
        if change.kind is ChangeKind.SCHEDULE:
            target = "catalogItemId"
        body = [
            FieldError(target, e.message) if e.field == "catalogItemId" and target else e
            for e in named
        ]
        if all(e.field in _BODY_FIELDS or e.field == target for e in body):
            raise ValidationFailed(body) from exc
        raise Conflict(
            "the subscription's offer cannot be priced from the catalog ("
            + "; ".join(f"{e.field}: {e.message}" for e in named)
            + ")"
        ) from exc
    # The line says what changed: the seats added (or, negative, removed) at the price kept;
    # on another offer, term or billing cycle, every seat of the subscription on it.
    delta = after.quantity if changes_offer(sub, after) else after.quantity - sub.quantity
    return [
        line.model_copy(
            update={"quantity": delta, "subscription_quantity": after.quantity, "priced": priced}
        )
    ]


# --- write 2 ----------------------------------------------------------------------------------


def open_change_order(book: OrderBook, subscription: Subscription) -> Order:
    """Write 2: the Change order of the subscription's pending change, with its
    `provision-order` message (none while it waits for approval), in one transaction. The
    order that already exists is the answer ("already exists" = done)."""
    pending = subscription.pending_change
    if pending is None or pending.change is None:
        raise Conflict("the subscription has no change waiting for its order")
    existing = find_order(book, subscription.reseller, pending.order_id)
    if existing is not None:
        return existing
    reseller = resellers.get(book.resellers, subscription.reseller)
    customer = book.customers.get(subscription.reseller, subscription.customer_id)
    lines = change_lines(book, reseller, customer, subscription, pending.change)
    now = book.clock.now()
    order = Order(
        reseller=subscription.reseller,
        customer_id=subscription.customer_id,
        id=pending.order_id,
        kind=OrderKind.CHANGE,
        change=pending.change,
        lines=lines,
        currency=reseller.currency,
        created_by=pending.requested_by,
        created_at=pending.requested_at,
        updated_at=now,
        history=[
            HistoryEntry(status=OrderStatus.DRAFT, at=pending.requested_at, by=pending.requested_by)
        ],
    )
    messages = []
    if pending.needs_approval:
        order.move(OrderStatus.PENDING_APPROVAL, now, pending.requested_by)
    else:
        order.move(OrderStatus.SUBMITTED, now, pending.requested_by)
        order.start_attempt()
        messages.append(provision_message(order))
    try:
        return book.orders.add(order, messages=messages)
    except ClaimTaken:
        raise
    except Conflict:
        found = find_order(book, subscription.reseller, pending.order_id)
        if found is None:
            raise
        return found


def _request(
    book: OrderBook,
    principal: Principal,
    reseller: Reseller,
    customer: Customer,
    sub: Subscription,
    change: SubscriptionChangeOrder,
) -> Order:
    """Price the line (nothing stored if it fails), write 1, write 2."""
    change_lines(book, reseller, customer, sub, change)
    now = book.clock.now()
    sub.begin_change(
        PendingChange(
            order_id=new_id(),
            summary=change.summary,
            requested_at=now,
            requested_by=principal.email,
            change=change,
            needs_approval=_needs_approval(principal, reseller),
        )
    )
    sub.updated_at = now
    sub = book.subscriptions.update(sub)  # a lost race: ConcurrencyConflict → 412
    return open_change_order(book, sub)


def _target(
    book: OrderBook,
    principal: Principal,
    reseller_slug: str,
    customer_id: str,
    subscription_id: str,
    etag: str | None,
) -> tuple[Reseller, Customer, Subscription]:
    reseller = resellers.get(book.resellers, reseller_slug)
    customer, sub = find_subscription(book, principal, reseller_slug, customer_id, subscription_id)
    may_change(principal, reseller)
    _order_left_behind(book, sub)
    # If-Match first: a request made on an old version is a 412 whatever else it asks.
    if etag not in (None, ANY_VERSION) and etag != sub.etag:
        raise PreconditionFailed("the subscription changed since it was read; read it again")
    # Write 1 must still find the version just read (a race after this read is a 412 too).
    sub.etag = expected_version(sub.etag, etag)
    return reseller, customer, sub


def _order_left_behind(book: OrderBook, sub: Subscription) -> None:
    """A crash between write 1 and write 2 left a pending change without its order: write it
    now (as the watchdog would later), so the 409 this request gets names an order that
    exists. One that can no longer be written is left to the watchdog, which forgets it."""
    pending = sub.pending_change
    if pending is None or find_order(book, sub.reseller, pending.order_id) is not None:
        return
    with contextlib.suppress(ValidationFailed, Conflict):
        open_change_order(book, sub)


def _tenant(customer: Customer) -> str:
    if not customer.tenant_id:
        raise Conflict("the customer has no Microsoft tenant yet; its subscriptions cannot change")
    return customer.tenant_id


def _check_assigned(
    book: OrderBook,
    partner_center: PartnerCenter,
    customer: Customer,
    sub: Subscription,
    quantity: int,
) -> None:
    """A decrease never goes below the assigned licences (read now; the record's last count
    when Partner Center cannot answer)."""
    assigned, total = sub.assigned_licences, sub.quantity
    try:
        count = licence_count_of(book, sub, partner_center.licence_counts(_tenant(customer)))
        if count is not None:
            assigned, total = count.assigned, count.total
    except UpstreamUnavailable:
        pass
    if assigned is not None:
        nce.check_assigned(sub, quantity, assigned, total)


def _status_change(sub: Subscription, body: SubscriptionPatch) -> str | None:
    """The status the PATCH asks for, None when it is the current one."""
    if body.status is None or body.status.lower() == sub.status.lower():
        return None
    return body.status


def _update_summary(sub: Subscription, body: SubscriptionPatch) -> str:
    parts = []
    if _status_change(sub, body) == nce.ACTIVE:
        parts.append("reactivate")
    elif body.status == nce.SUSPENDED:
        parts.append("suspend")
    elif body.status == nce.CANCELLED:
        parts.append("cancel")
    if body.quantity is not None and body.quantity != sub.quantity:
        parts.append(f"quantity {sub.quantity} → {body.quantity}")
    if body.term_duration is not None and body.term_duration != sub.term_duration:
        parts.append(f"term {sub.term_duration} → {body.term_duration}")
    if body.billing_cycle is not None and body.billing_cycle != sub.billing_cycle:
        parts.append(f"billing {sub.billing_cycle} → {body.billing_cycle}")
    if body.auto_renew is not None and body.auto_renew != sub.auto_renew:
        parts.append("auto-renew " + ("on" if body.auto_renew else "off"))
    return ", ".join(parts)


def request_update(
    book: OrderBook,
    partner_center: PartnerCenter,
    principal: Principal,
    reseller_slug: str,
    customer_id: str,
    subscription_id: str,
    etag: str,
    body: SubscriptionPatch,
) -> Order:
    """PATCH: quantity, billing cycle, term, auto-renew or status, as a Change order."""
    reseller, customer, sub = _target(
        book, principal, reseller_slug, customer_id, subscription_id, etag
    )
    request = nce.UpdateRequest(
        quantity=body.quantity,
        billing_cycle=body.billing_cycle,
        term_duration=body.term_duration,
        auto_renew=body.auto_renew,
        status=body.status,
    )
    warnings = nce.check_update(sub, request, book.clock.now())
    summary = _update_summary(sub, body)
    if not summary:
        raise ValidationFailed(
            [FieldError("body", "changes nothing: every field equals the subscription's")]
        )
    if body.quantity is not None and body.quantity < sub.quantity:
        _check_assigned(book, partner_center, customer, sub, body.quantity)
    change = SubscriptionChangeOrder(
        kind=ChangeKind.UPDATE,
        subscription_id=sub.id,
        summary=summary,
        quantity=body.quantity if body.quantity != sub.quantity else None,
        billing_cycle=body.billing_cycle if body.billing_cycle != sub.billing_cycle else None,
        term_duration=body.term_duration if body.term_duration != sub.term_duration else None,
        auto_renew=body.auto_renew if body.auto_renew != sub.auto_renew else None,
        status=_status_change(sub, body),
        previous_quantity=sub.quantity,
        warnings=warnings,
    )
    return _request(book, principal, reseller, customer, sub, change)


def request_conversion(
    book: OrderBook,
    partner_center: PartnerCenter,
    principal: Principal,
    reseller_slug: str,
    customer_id: str,
    subscription_id: str,
    etag: str | None,
    body: ConvertRequest,
) -> Order:
    """POST …/convert: trial → paid, to an offer Partner Center says is eligible now."""
    reseller, customer, sub = _target(
        book, principal, reseller_slug, customer_id, subscription_id, etag
    )
    warnings = nce.check_convert(sub)
    options = partner_center.transition_options(_tenant(customer), sub.id)
    target = nce.eligible_target(options, body.to_catalog_item_id, "conversion")
    quantity = body.quantity or sub.quantity
    change = SubscriptionChangeOrder(
        kind=ChangeKind.CONVERT,
        subscription_id=sub.id,
        summary=f"trial → paid ({target.title}, {quantity} seats)",
        quantity=quantity,
        term_duration=body.term_duration,
        billing_cycle=body.billing_cycle,
        to_catalog_item_id=target.catalog_item_id,
        previous_quantity=sub.quantity,
        warnings=warnings,
    )
    return _request(book, principal, reseller, customer, sub, change)


def request_upgrade(
    book: OrderBook,
    partner_center: PartnerCenter,
    principal: Principal,
    reseller_slug: str,
    customer_id: str,
    subscription_id: str,
    etag: str | None,
    body: UpgradeRequest,
) -> Order:
    """POST …/upgrade: seats to an upgrade target Partner Center says is eligible now."""
    reseller, customer, sub = _target(
        book, principal, reseller_slug, customer_id, subscription_id, etag
    )
    warnings = nce.check_upgrade(sub, body.quantity)
    options = partner_center.transition_options(_tenant(customer), sub.id)
    target = nce.eligible_target(options, body.to_catalog_item_id, "upgrade")
    change = SubscriptionChangeOrder(
        kind=ChangeKind.UPGRADE,
        subscription_id=sub.id,
        summary=f"upgrade {body.quantity} seats to {target.title}",
        quantity=body.quantity,
        to_catalog_item_id=target.catalog_item_id,
        previous_quantity=sub.quantity,
        warnings=warnings,
    )
    return _request(book, principal, reseller, customer, sub, change)


def request_schedule(
    book: OrderBook,
    partner_center: PartnerCenter,
    principal: Principal,
    reseller_slug: str,
    customer_id: str,
    subscription_id: str,
    etag: str,
    body: NextTermRequest,
) -> Order:
    """PUT …/next-term: a change Partner Center applies at renewal (needs auto-renew on);
    another SKU only among the scheduled-eligible ones."""
    reseller, customer, sub = _target(
        book, principal, reseller_slug, customer_id, subscription_id, etag
    )
    next_term = NextTerm(
        catalog_item_id=body.catalog_item_id,
        quantity=body.quantity,
        term_duration=body.term_duration,
        billing_cycle=body.billing_cycle,
    )
    nce.check_schedule(sub, next_term)
    target = body.catalog_item_id
    if target is not None and target.upper() != (sub.catalog_item_id or "").upper():
        options = partner_center.transition_options(_tenant(customer), sub.id, scheduled=True)
        target = nce.eligible_target(options, target, "renewal").catalog_item_id
    change = SubscriptionChangeOrder(
        kind=ChangeKind.SCHEDULE,
        subscription_id=sub.id,
        summary="at renewal: " + nce.next_term_summary(next_term),
        quantity=body.quantity,
        term_duration=body.term_duration,
        billing_cycle=body.billing_cycle,
        to_catalog_item_id=target,
        previous_quantity=sub.quantity,
    )
    return _request(book, principal, reseller, customer, sub, change)


def request_unschedule(
    book: OrderBook,
    principal: Principal,
    reseller_slug: str,
    customer_id: str,
    subscription_id: str,
    etag: str,
) -> Order:
    """DELETE …/next-term: the subscription renews as it is."""
    reseller, customer, sub = _target(
        book, principal, reseller_slug, customer_id, subscription_id, etag
    )
    nce.check_unschedule(sub)
    change = SubscriptionChangeOrder(
        kind=ChangeKind.UNSCHEDULE,
        subscription_id=sub.id,
        summary="remove the change scheduled for renewal",
        previous_quantity=sub.quantity,
    )
    return _request(book, principal, reseller, customer, sub, change)


# --- the watchdog's part ----------------------------------------------------------------------


class PendingChanges:
    """Subscriptions with a change in flight whose Change order is missing (a crash between
    write 1 and write 2) or has ended without the change being forgotten. Orders in flight
    are the orders' watchdog's (InFlightOrders)."""

    kind = "subscription-change"

    def __init__(self, book: OrderBook) -> None:
        self.book = book

    @property
    def deadline(self) -> timedelta:
        """How long write 2 may lag behind write 1 before the watchdog does it."""
        return self.book.policy.stuck_after

    def in_flight(self) -> Iterator[InFlight]:
        """Every subscription with a change in flight and no live order carrying it."""
        for sub in self.book.subscriptions.iterate(equals={"changing": True}):
            pending = sub.pending_change
            if pending is not None:
                order = find_order(self.book, sub.reseller, pending.order_id)
                if order is not None and order.status not in FINAL:
                    continue
            yield InFlight(
                kind=self.kind,
                partition=sub.customer_id,
                id=sub.id,
                status="ChangeRequested",
                since=pending.requested_at if pending is not None else sub.updated_at,
            )

    def nudge(self, item: InFlight) -> None:
        """Write 2 for a change without its order; forget a change whose order has ended (or
        whose order cannot be written any more: nothing was sent to Partner Center)."""
        sub = self.book.subscriptions.find(item.partition, item.id.lower())
        if sub is None or not sub.changing:
            return
        pending = sub.pending_change
        order = find_order(self.book, sub.reseller, pending.order_id) if pending else None
        if order is not None and order.status not in FINAL:
            return  # a change asked for since the list was read: its order is alive
        if pending is not None and order is None:
            try:
                open_change_order(self.book, sub)
                return
            except (ValidationFailed, Conflict):
                pass  # the change can no longer be priced: nothing reached Partner Center
        # Only this change: one asked for since this read keeps the subscription.
        free(self.book, sub.customer_id, sub.id, pending.order_id if pending else None)

    def fail(self, item: InFlight, failure: Failure) -> None:
        """Nothing is failed here: each pass acts on the record again (nudge)."""
        self.nudge(item)
