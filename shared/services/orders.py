"""Orders: preview, drafts, submit / approve / reject / retry, and the `provision-order` step.

Placing an order in Partner Center exactly once, whatever crashes:

- submit stores both MS-RequestIds (cart, checkout) on the order *with* its status and its
  `provision-order` outbox row, in one transaction;
- the step creates the cart with the stored cart request id (a repeat gives back the same cart)
  and records the cart id; checks it out with the stored checkout request id (a repeat gives
  the first result; a checkout refused as "already ordered" — the answer of a Partner Center
  that lost the replay — is recovered by reading the customer's orders) and records Partner
  Center's order ids; waits for provisioning by re-enqueueing itself with a delay; writes one
  Subscription record per line; queues the e-mail under a fixed id; and ends Completed,
  CompletedWithErrors or Failed. Each sub-step is recorded (with the order's ETag) before the
  next starts, so a redelivered message picks up where the last one stopped.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from pydantic import AwareDatetime

from shared.domain.catalog import CatalogEntry, MicrosoftSegment, Product, ProductSku, Term
from shared.domain.customers import Customer, CustomerStatus, Qualification
from shared.domain.errors import (
    ConcurrencyConflict,
    Conflict,
    FieldError,
    Forbidden,
    NotFound,
    PreconditionFailed,
    UpstreamRejected,
    ValidationFailed,
)
from shared.domain.identity import NotificationEvent, Principal, Reseller, Role, User
from shared.domain.model import Page, WireModel
from shared.domain.notifications import Notification
from shared.domain.orders import (
    SMALL_BUSINESS_SEAT_CAP,
    Amount,
    CartLineRequest,
    CheckoutResult,
    Failure,
    FailureKind,
    HistoryEntry,
    LinePrice,
    LinePricePublic,
    LineResult,
    Order,
    OrderCreate,
    OrderDecision,
    OrderKind,
    OrderLine,
    OrderLineInput,
    OrderStatus,
    PlacedOrder,
    ProvisionOrderMessage,
    order_row_key,
    public_price,
)
from shared.domain.outbox import OutboxMessage, Queue
from shared.domain.pricing import PriceBreakdown, breakdown, round_money
from shared.domain.subscriptions import Subscription, SubscriptionFacts, SubscriptionOrigin
from shared.ports import Clock, PartnerCenter, Repository, StepScheduler
from shared.services import access, notifications, resellers
from shared.services.catalog import CatalogReader, CatalogSnapshot, Listing, _Offer, price_offer

log = logging.getLogger(__name__)

SYSTEM = "system"
# Partner Center: the cart was checked out already (a repeated checkout whose replay is lost).
_CART_ALREADY_ORDERED = "800121"
_SEAT_LIMIT = "10015"
_DISCOUNTED = frozenset(
    {MicrosoftSegment.EDUCATION, MicrosoftSegment.GOVERNMENT, MicrosoftSegment.NONPROFIT}
)
# How far Partner Center's clock may be behind ours when matching orders to a submit.
_SKEW = timedelta(minutes=5)
_BLOCKING_CUSTOMER_STATUSES = frozenset({"Blocked", CustomerStatus.FAILED.value})


@dataclass
class OrderPolicy:
    """How the step waits (from the settings)."""

    poll_seconds: float = 10.0
    customer_wait_seconds: float = 30.0
    max_polls: int = 60


@dataclass
class OrderBook:
    """The records and helpers the order services work on."""

    orders: Repository[Order]
    subscriptions: Repository[Subscription]
    customers: Repository[Customer]
    resellers: Repository[Reseller]
    catalog: CatalogReader
    clock: Clock
    scheduler: StepScheduler
    notifications: Repository[Notification] | None = None
    users: Repository[User] | None = None
    policy: OrderPolicy = field(default_factory=OrderPolicy)
    # Called after each recorded sub-step of the provisioning (tests stop the process there).
    after_step: Callable[[str], None] | None = None


# --- views -------------------------------------------------------------------------------------


class OrderLineStaff(WireModel):
    """A line as reseller staff see it: every price layer."""

    catalog_item_id: str
    product_id: str
    sku_id: str
    name: str
    quantity: int
    term_duration: str
    billing_cycle: str
    markup_percent: Decimal | None
    unit_price: Amount | None
    parent_line: int | None
    parent_subscription_id: str | None
    friendly_name: str | None
    is_trial: bool
    priced: LinePrice
    result: LineResult | None


class OrderLinePublic(WireModel):
    """A line as the customer's users see it: their price only."""

    catalog_item_id: str
    product_id: str
    sku_id: str
    name: str
    quantity: int
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


class OrderStaff(WireModel):
    """An order as reseller staff see it."""

    id: str
    reseller: str
    customer_id: str
    kind: OrderKind
    status: OrderStatus
    currency: str
    lines: list[OrderLineStaff]
    total: Amount
    total_cost: Amount
    margin: Amount
    history: list[HistoryEntry]
    failure: FailureStaff | None
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
    status: OrderStatus
    currency: str
    lines: list[OrderLinePublic]
    total: Amount
    history: list[HistoryEntry]
    failure: FailureView | None
    created_at: AwareDatetime
    updated_at: AwareDatetime


class OrderPreviewStaff(WireModel):
    """Priced lines, not stored."""

    customer_id: str
    currency: str
    lines: list[OrderLineStaff]
    total: Amount
    total_cost: Amount
    margin: Amount


class OrderPreviewPublic(WireModel):
    """Priced lines at the customer's prices, not stored."""

    customer_id: str
    currency: str
    lines: list[OrderLinePublic]
    total: Amount


class SubscriptionStaff(WireModel):
    """A subscription with its price snapshot."""

    id: str
    customer_id: str
    catalog_item_id: str | None
    name: str
    quantity: int
    term_duration: str | None
    billing_cycle: str | None
    status: str
    start_date: AwareDatetime | None
    commitment_end_date: AwareDatetime | None
    cancellation_allowed_until: AwareDatetime | None
    auto_renew: bool
    is_trial: bool
    parent_subscription_id: str | None
    origin: SubscriptionOrigin
    order_id: str | None
    priced: LinePrice | None


class SubscriptionPublic(WireModel):
    """A subscription at the customer's price."""

    id: str
    customer_id: str
    catalog_item_id: str | None
    name: str
    quantity: int
    term_duration: str | None
    billing_cycle: str | None
    status: str
    start_date: AwareDatetime | None
    commitment_end_date: AwareDatetime | None
    cancellation_allowed_until: AwareDatetime | None
    auto_renew: bool
    is_trial: bool
    parent_subscription_id: str | None
    origin: SubscriptionOrigin
    order_id: str | None
    priced: LinePricePublic | None


def _sum(amounts: Sequence[Amount], currency: str) -> Amount:
    return Amount(amount=sum((a.amount for a in amounts), Decimal(0)), currency=currency)


def _lines_view(
    principal: Principal | None, lines: Sequence[OrderLine], currency: str
) -> dict[str, Any]:
    """The one place that decides what of a line's price a caller sees."""
    total = _sum([li.priced.extended_customer_price for li in lines], currency)
    if access.sees_cost(principal):
        cost = _sum([li.priced.extended_cost for li in lines], currency)
        return {
            "lines": [OrderLineStaff.model_validate(li, from_attributes=True) for li in lines],
            "total": total,
            "total_cost": cost,
            "margin": Amount(amount=total.amount - cost.amount, currency=currency),
        }
    return {
        "lines": [
            OrderLinePublic(
                **li.model_dump(exclude={"priced", "result"}),
                priced=public_price(li.priced),
                result=li.result,
            )
            for li in lines
        ],
        "total": total,
    }


def present(principal: Principal | None, order: Order) -> OrderStaff | OrderPublic:
    """The view of an order the caller may see."""
    common = order.model_dump(
        include={"id", "reseller", "customer_id", "kind", "status", "currency", "history"}
        | {"created_at", "updated_at"}
    )
    priced = _lines_view(principal, order.lines, order.currency)
    if access.sees_cost(principal):
        return OrderStaff(
            **common,
            **priced,
            failure=order.failure.model_dump() if order.failure else None,
            created_by=order.created_by,
            cart_id=order.cart_id,
            partner_center_order_ids=order.partner_center_order_ids,
        )
    return OrderPublic(
        **common,
        **priced,
        failure=order.failure.model_dump(exclude={"detail"}) if order.failure else None,
    )


def present_subscription(
    principal: Principal | None, sub: Subscription
) -> SubscriptionStaff | SubscriptionPublic:
    """The view of a subscription the caller may see."""
    data = sub.model_dump(exclude={"priced", "reseller", "created_at", "updated_at"})
    data.pop("partner_center_order_id", None)
    if access.sees_cost(principal):
        return SubscriptionStaff(**data, priced=sub.priced)
    return SubscriptionPublic(
        **data, priced=public_price(sub.priced) if sub.priced is not None else None
    )


# --- reading -----------------------------------------------------------------------------------


def _customer(book: OrderBook, principal: Principal, reseller: str, customer_id: str) -> Customer:
    access.ensure_visible(principal, reseller, customer_id)
    found = book.customers.find(reseller, customer_id) if len(customer_id) <= 64 else None
    if found is None:
        raise NotFound("customer not found")
    return found


def get(
    book: OrderBook, principal: Principal, reseller: str, customer_id: str, order_id: str
) -> Order:
    """One order of the customer inside the caller's world (NotFound otherwise)."""
    _customer(book, principal, reseller, customer_id)
    found = _find(book, reseller, order_id)
    if found is None or found.customer_id != customer_id:
        raise NotFound("order not found")
    return found


def _find(book: OrderBook, reseller: str, order_id: str) -> Order | None:
    try:
        row = order_row_key(order_id)
    except Exception:  # pragma: no cover - translate never raises on str
        return None
    if len(order_id) != 26:
        return None
    return book.orders.find(reseller, row)


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
        _customer(book, principal, reseller, customer_id)
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
    return Page[OrderStaff | OrderPublic](
        items=[present(principal, o) for o in page.items],
        continuation_token=page.continuation_token,
    )


def list_subscriptions(
    book: OrderBook,
    principal: Principal,
    reseller: str,
    customer_id: str,
    *,
    page_size: int = 100,
    continuation_token: str | None = None,
) -> Page[SubscriptionStaff | SubscriptionPublic]:
    """The customer's subscriptions as the platform records them."""
    resellers.get(book.resellers, reseller)
    _customer(book, principal, reseller, customer_id)
    page = book.subscriptions.list(
        customer_id, page_size=page_size, continuation_token=continuation_token
    )
    return Page[SubscriptionStaff | SubscriptionPublic](
        items=[present_subscription(principal, s) for s in page.items if s.reseller == reseller],
        continuation_token=page.continuation_token,
    )


# --- validating and pricing ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Resolved:
    """A line's offer, found in the reseller's catalog."""

    listing: Listing
    offer: _Offer


def _listing(snap: CatalogSnapshot, product: Product) -> Listing:
    found = snap.by_id.get(product.id)
    if found is not None:
        return found
    # Offered by Microsoft but not curated by the reseller: priced with its defaults.
    return Listing(
        entry=CatalogEntry(reseller=snap.reseller.slug, product_id=product.id),
        product=product,
        name=product.title,
        description=product.description,
        features=(),
        search="",
        segments=frozenset(),
        categories=(),
    )


def _base_segment(snap: CatalogSnapshot, customer: Customer) -> MicrosoftSegment:
    segment = snap.settings.segment(customer.segment) or snap.settings.segment("commercial")
    return segment.base if segment is not None else MicrosoftSegment.COMMERCIAL


def _resolve(
    snap: CatalogSnapshot,
    products: dict[str, Product],
    customer: Customer,
    i: int,
    line: OrderLineInput,
    errors: list[FieldError],
) -> _Resolved | None:
    at = f"lines[{i}]"
    product_id, sku_id, _availability = line.catalog_item_id.upper().split(":")
    product = products.get(product_id)
    sku = (
        next((s for s in product.skus if s.id.upper() == sku_id), None)
        if product is not None and not product.withdrawn
        else None
    )
    if product is None or sku is None:
        errors.append(FieldError(f"{at}.catalogItemId", "is not an offer of the catalog"))
        return None
    availability = next(
        (
            a
            for a in sku.availabilities
            if a.catalog_item_id.upper() == line.catalog_item_id.upper()
        ),
        None,
    )
    if availability is None:
        errors.append(FieldError(f"{at}.catalogItemId", "is not an offer of the catalog"))
        return None
    base = _base_segment(snap, customer)
    if availability.segment != base.value:
        errors.append(
            FieldError(
                f"{at}.catalogItemId",
                f"is sold in the {availability.segment} segment; this customer buys in "
                f"{base.value}",
            )
        )
        return None
    if base in _DISCOUNTED and customer.qualification is not Qualification.APPROVED:
        errors.append(
            FieldError(
                f"{at}.catalogItemId",
                f"{base.value} offers need the customer's {base.value} qualification approved "
                f"by Microsoft (it is {customer.qualification.value})",
            )
        )
        return None
    term = Term(duration=line.term_duration, billing_cycle=line.billing_cycle)
    if term not in availability.terms:
        pairs = ", ".join(f"{t.duration}/{t.billing_cycle}" for t in availability.terms)
        errors.append(
            FieldError(
                f"{at}.billingCycle",
                f"{line.term_duration} with {line.billing_cycle} billing is not offered; "
                f"choose one of {pairs}",
            )
        )
        return None
    price = sku.price(base.value, term.duration, term.billing_cycle, snap.currency)
    if price is None:
        errors.append(
            FieldError(f"{at}.termDuration", f"has no price in {snap.currency} in the price sheet")
        )
        return None
    if not sku.minimum_quantity <= line.quantity <= (sku.maximum_quantity or 10**6):
        errors.append(
            FieldError(
                f"{at}.quantity",
                f"must be between {sku.minimum_quantity} and {sku.maximum_quantity} for "
                f"{sku.title}",
            )
        )
    if line.unit_price is not None and line.unit_price.currency != snap.currency:
        errors.append(
            FieldError(f"{at}.unitPrice.currency", f"must be the reseller's {snap.currency}")
        )
    return _Resolved(_listing(snap, product), _Offer(sku, availability, term, price))


def _price_lines(
    snap: CatalogSnapshot, lines: Sequence[tuple[OrderLineInput, _Resolved]]
) -> list[LinePrice]:
    """Every price layer of each line: the one place orders price anything.

    Today's catalog pricing (`price_offer`: cost, recommended price, the catalog's or the
    reseller's default mark-up); a line's own mark-up or pinned unit price wins.
    """
    currency = snap.currency
    out: list[LinePrice] = []
    for line, found in lines:
        catalog = price_offer(found.listing, found.offer, snap.reseller, currency)
        if line.markup_percent is not None:
            b = breakdown(
                found.offer.price.cost, catalog.recommended_price, currency, line.markup_percent
            )
        else:
            b = catalog
        unit_price = (
            round_money(line.unit_price.amount, currency)
            if line.unit_price is not None
            else b.customer_price
        )
        pinned = PriceBreakdown(
            currency=currency,
            cost=b.cost,
            recommended_price=b.recommended_price,
            customer_price=unit_price,
        )
        q = Decimal(line.quantity)

        def money(value: Decimal) -> Amount:
            return Amount(amount=round_money(value, currency), currency=currency)

        out.append(
            LinePrice(
                unit_cost=money(pinned.cost),
                extended_cost=money(pinned.cost * q),
                unit_recommended_price=money(pinned.recommended_price),
                extended_recommended_price=money(pinned.recommended_price * q),
                unit_customer_price=money(pinned.customer_price),
                extended_customer_price=money(pinned.customer_price * q),
                markup_percent=pinned.markup_percent,
                margin_percent=pinned.margin_percent,
                margin=money(pinned.margin * q),
                pinned=line.unit_price is not None,
                below_cost=pinned.customer_price < pinned.cost,
                price_sheet_effective_date=None,
            )
        )
    return out


def _existing_subscriptions(book: OrderBook, customer: Customer) -> list[Subscription]:
    return [
        s
        for s in book.subscriptions.list(customer.id, page_size=1000).items
        if s.reseller == customer.reseller
    ]


def _check_tenant_rules(
    lines: Sequence[OrderLineInput],
    resolved: Sequence[_Resolved | None],
    existing: Sequence[Subscription],
    errors: list[FieldError],
) -> None:
    """Seat caps across the tenant, one trial per product, add-ons with their base."""
    live = [s for s in existing if s.live]
    seats: dict[str, int] = {}
    for s in live:
        if s.product_id:
            seats[s.product_id] = seats.get(s.product_id, 0) + s.quantity
    trials = {s.product_id for s in existing if s.is_trial}
    for i, (line, found) in enumerate(zip(lines, resolved, strict=True)):
        if found is None:
            continue
        sku, product_id = found.offer.sku, found.listing.product.id
        at = f"lines[{i}]"
        if sku.small_business:
            cap = sku.maximum_quantity or SMALL_BUSINESS_SEAT_CAP
            used = seats.get(product_id, 0)
            if used + line.quantity > cap:
                errors.append(
                    FieldError(
                        f"{at}.quantity",
                        f"at most {max(cap - used, 0)} more licences of {sku.title} for this "
                        f"tenant (it has {used} of {cap})",
                    )
                )
            seats[product_id] = used + line.quantity
        if sku.is_trial:
            if product_id in trials:
                errors.append(
                    FieldError(
                        f"{at}.catalogItemId", f"the customer already had a trial of {sku.title}"
                    )
                )
            trials.add(product_id)
        _check_base(i, line, sku, lines, resolved, live, errors)


def _check_base(
    i: int,
    line: OrderLineInput,
    sku: ProductSku,
    lines: Sequence[OrderLineInput],
    resolved: Sequence[_Resolved | None],
    live: Sequence[Subscription],
    errors: list[FieldError],
) -> None:
    at = f"lines[{i}]"
    needs = {p.upper() for p in sku.prerequisites}
    if line.parent_line is not None:
        parent = resolved[line.parent_line] if line.parent_line < len(lines) else None
        if line.parent_line == i or line.parent_line >= len(lines):
            errors.append(FieldError(f"{at}.parentLine", "must be the index of another line"))
        elif parent is not None and needs:
            key = f"{parent.listing.product.id}:{parent.offer.sku.id}".upper()
            if key not in needs:
                errors.append(
                    FieldError(f"{at}.parentLine", f"line {line.parent_line} is not its base")
                )
        elif lines[line.parent_line].parent_line is not None:
            errors.append(FieldError(f"{at}.parentLine", "an add-on cannot be a base"))
        return
    if line.parent_subscription_id is not None:
        base = next((s for s in live if s.id.lower() == line.parent_subscription_id.lower()), None)
        if base is None:
            errors.append(
                FieldError(
                    f"{at}.parentSubscriptionId", "is not a live subscription of this customer"
                )
            )
        return
    if sku.is_addon or needs:
        on_tenant = any(
            s.catalog_item_id and ":".join(s.catalog_item_id.split(":")[:2]).upper() in needs
            for s in live
        )
        if not on_tenant:
            errors.append(
                FieldError(
                    f"{at}.parentLine",
                    f"{sku.title} is an add-on: name its base line (parentLine) or an "
                    "existing subscription (parentSubscriptionId)",
                )
            )


def _build_lines(
    book: OrderBook, reseller: Reseller, customer: Customer, command: OrderCreate
) -> list[OrderLine]:
    """Validate every line (all errors in one answer) and price them; nothing is stored."""
    if customer.status.value in _BLOCKING_CUSTOMER_STATUSES:
        raise Conflict(
            f"the customer is {customer.status.value}: no order can be placed for it"
            + (f" ({customer.failure_reason})" if customer.failure_reason else "")
        )
    snap = book.catalog.snapshot(reseller.slug)
    products = book.catalog.market_products(
        reseller.country, book.catalog.import_id(reseller.country)
    )
    errors: list[FieldError] = []
    resolved = [
        _resolve(snap, products, customer, i, line, errors) for i, line in enumerate(command.lines)
    ]
    _check_tenant_rules(command.lines, resolved, _existing_subscriptions(book, customer), errors)
    if errors:
        raise ValidationFailed(errors)
    pairs = [(line, found) for line, found in zip(command.lines, resolved, strict=True) if found]
    prices = _price_lines(snap, pairs)
    return [
        OrderLine(
            catalog_item_id=line.catalog_item_id.upper(),
            product_id=found.listing.product.id,
            sku_id=found.offer.sku.id,
            name=f"{found.listing.name} — {found.offer.sku.title}"
            if found.offer.sku.title != found.listing.name
            else found.listing.name,
            quantity=line.quantity,
            term_duration=line.term_duration,
            billing_cycle=line.billing_cycle,
            markup_percent=line.markup_percent,
            unit_price=line.unit_price,
            parent_line=line.parent_line,
            parent_subscription_id=line.parent_subscription_id,
            friendly_name=line.friendly_name,
            is_trial=found.offer.sku.is_trial,
            priced=price,
        )
        for (line, found), price in zip(pairs, prices, strict=True)
    ]


def _may_order(book: OrderBook, principal: Principal, reseller: Reseller) -> None:
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
    customer = _customer(book, principal, reseller.slug, customer_id)
    lines = _build_lines(book, reseller, customer, command)
    priced = _lines_view(principal, lines, reseller.currency)
    model = OrderPreviewStaff if access.sees_cost(principal) else OrderPreviewPublic
    return model(customer_id=customer.id, currency=reseller.currency, **priced)


# --- drafts ---------------------------------------------------------------------------------------


def create(
    book: OrderBook,
    principal: Principal,
    reseller_slug: str,
    customer_id: str,
    command: OrderCreate,
) -> Order:
    """Store a Draft (validated and priced)."""
    reseller = resellers.get(book.resellers, reseller_slug)
    _may_order(book, principal, reseller)
    customer = _customer(book, principal, reseller.slug, customer_id)
    lines = _build_lines(book, reseller, customer, command)
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
        _may_order(book, principal, reseller)
    order.etag = etag
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
    customer = _customer(book, principal, reseller_slug, customer_id)
    order.lines = _build_lines(book, reseller, customer, command)
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


# --- submit, approve, reject, retry ---------------------------------------------------------------


def _provision_message(order: Order) -> OutboxMessage:
    return OutboxMessage(
        queue=Queue.PROVISION_ORDER, body={"reseller": order.reseller, "orderId": order.id}
    )


def _save_with_etag(book: OrderBook, order: Order, etag: str | None) -> None:
    if etag is not None and order.etag != etag:
        raise PreconditionFailed("the order has changed since it was read; read it again")


def submit(
    book: OrderBook,
    principal: Principal,
    reseller_slug: str,
    customer_id: str,
    order_id: str,
    etag: str,
) -> Order:
    """Place a Draft: Submitted (with its message, in one transaction) or PendingApproval."""
    order = get(book, principal, reseller_slug, customer_id, order_id)
    _save_with_etag(book, order, etag)
    reseller = resellers.get(book.resellers, reseller_slug)
    _may_order(book, principal, reseller)
    if order.status is not OrderStatus.DRAFT:
        raise Conflict(f"only a Draft can be submitted; this order is {order.status.value}")
    now = book.clock.now()
    if principal.is_customer_user or reseller.settings.orders_require_approval:
        order.move(OrderStatus.PENDING_APPROVAL, now, principal.email)
        return book.orders.update(order)
    return _place(book, order, principal.email)


def _place(book: OrderBook, order: Order, by: str, reason: str | None = None) -> Order:
    order.move(OrderStatus.SUBMITTED, book.clock.now(), by, reason)
    order.start_attempt()
    return book.orders.update(order, messages=[_provision_message(order)])


def approve(
    book: OrderBook,
    principal: Principal,
    reseller_slug: str,
    customer_id: str,
    order_id: str,
    etag: str,
    decision: OrderDecision,
) -> Order:
    """An Account Manager approves a PendingApproval order: Submitted, provisioning starts."""
    order = get(book, principal, reseller_slug, customer_id, order_id)
    _save_with_etag(book, order, etag)
    if order.status is not OrderStatus.PENDING_APPROVAL:
        raise Conflict(
            f"only a PendingApproval order can be approved; this one is {order.status.value}"
        )
    return _place(book, order, principal.email, decision.reason)


def reject(
    book: OrderBook,
    principal: Principal,
    reseller_slug: str,
    customer_id: str,
    order_id: str,
    etag: str,
    decision: OrderDecision,
) -> Order:
    """An Account Manager rejects a PendingApproval order: Cancelled, with the reason."""
    order = get(book, principal, reseller_slug, customer_id, order_id)
    _save_with_etag(book, order, etag)
    if order.status is not OrderStatus.PENDING_APPROVAL:
        raise Conflict(
            f"only a PendingApproval order can be rejected; this one is {order.status.value}"
        )
    order.move(OrderStatus.CANCELLED, book.clock.now(), principal.email, decision.reason)
    return book.orders.update(order)


def retry(
    book: OrderBook,
    principal: Principal,
    reseller_slug: str,
    customer_id: str,
    order_id: str,
    etag: str | None,
) -> Order:
    """Place a Failed order again (new MS-RequestIds: nothing of the last attempt was placed)."""
    order = get(book, principal, reseller_slug, customer_id, order_id)
    _save_with_etag(book, order, etag)
    if principal.is_customer_user:
        raise Forbidden("a customer's user cannot retry an order")
    if order.status is not OrderStatus.FAILED:
        raise Conflict(f"only a Failed order can be retried; this one is {order.status.value}")
    if order.partner_center_order_ids:
        raise Conflict("Partner Center placed part of this order already; place a new one")
    return _place(book, order, principal.email, "retried")


# --- the provision-order step ---------------------------------------------------------------------


def _mpn_id(reseller: Reseller) -> str:
    """The reseller's MPN id, the cart lines' transaction_reseller participant."""
    # until resellers carry their MPN id
    return getattr(reseller, "mpn_id", None) or reseller.partner_center_id


def _cart_lines(order: Order, mpn_id: str) -> list[CartLineRequest]:
    """One order group per base line with its add-ons: a refused group fails only its lines."""
    return [
        CartLineRequest(
            catalog_item_id=line.catalog_item_id,
            quantity=line.quantity,
            term_duration=line.term_duration,
            billing_cycle=line.billing_cycle,
            reseller_mpn_id=mpn_id,
            order_group=str(_group_of(order, i)),
            friendly_name=line.friendly_name,
        )
        for i, line in enumerate(order.lines)
    ]


def _group_of(order: Order, i: int) -> int:
    parent = order.lines[i].parent_line
    return i if parent is None else parent


class _Saver:
    """Saves the order after each sub-step, keeping its ETag, and marks the boundary."""

    def __init__(self, book: OrderBook, order: Order) -> None:
        self.book, self.order = book, order

    def save(self, step: str) -> None:
        self.order.updated_at = self.book.clock.now()
        self.order = self.book.orders.update(self.order)
        if self.book.after_step is not None:
            self.book.after_step(step)


def provision(
    book: OrderBook, partner_center: PartnerCenter, message: ProvisionOrderMessage
) -> None:
    """The `provision-order` step (see the module docstring)."""
    order = _find(book, message.reseller, message.order_id)
    if order is None:
        log.warning("order %s/%s no longer exists", message.reseller, message.order_id)
        return
    if order.status not in (OrderStatus.SUBMITTED, OrderStatus.PROVISIONING):
        return  # redelivered after the step finished
    customer = book.customers.get(order.reseller, order.customer_id)
    if customer.status is CustomerStatus.PROVISIONING or not customer.tenant_id:
        if customer.status.value in _BLOCKING_CUSTOMER_STATUSES:
            _fail(book, order, FailureKind.REFUSED, _customer_failed(customer), None)
            return
        book.scheduler.send_later(
            Queue.PROVISION_ORDER, _body(order, message.poll), book.policy.customer_wait_seconds
        )
        return
    if customer.status.value in _BLOCKING_CUSTOMER_STATUSES:
        _fail(book, order, FailureKind.REFUSED, _customer_failed(customer), None)
        return
    tenant = customer.tenant_id
    reseller = book.resellers.get("reseller", order.reseller)
    saver = _Saver(book, order)

    # (a) the cart, with the MS-RequestId stored at submit
    if order.cart_id is None:
        assert order.cart_request_id is not None
        cart = partner_center.place_cart(
            tenant, _cart_lines(order, _mpn_id(reseller)), request_id=order.cart_request_id
        )
        if order.status is OrderStatus.SUBMITTED:
            order.move(OrderStatus.PROVISIONING, book.clock.now(), SYSTEM)
        order.cart_id = cart.id
        saver.save("cart")
        order = saver.order

    # (b) checkout, with its stored MS-RequestId; (c) Partner Center's order ids
    if not order.checked_out:
        assert order.cart_id is not None and order.checkout_request_id is not None
        result = _check_out(book, partner_center, order, tenant)
        _record_checkout(order, result)
        order.checked_out = True
        if not order.partner_center_order_ids:
            _record_nothing_placed(book, order, result)
            saver.save("checkout")
            _notify(book, reseller, saver.order)
            return
        saver.save("checkout")
        order = saver.order

    # (d) wait until Partner Center has provisioned every order
    for pc_order_id in order.partner_center_order_ids:
        state = partner_center.order_provisioning(tenant, pc_order_id)
        if not state.done:
            if message.poll >= book.policy.max_polls:
                raise UpstreamRejected(
                    f"Partner Center has not provisioned order {pc_order_id} after "
                    f"{message.poll} checks; ask Microsoft support about it"
                )
            book.scheduler.send_later(
                Queue.PROVISION_ORDER, _body(order, message.poll + 1), book.policy.poll_seconds
            )
            if book.after_step is not None:
                book.after_step("poll")
            return

    # (e) one Subscription record per placed line
    if not order.subscriptions_recorded:
        _record_subscriptions(book, partner_center, order, tenant)
        order.subscriptions_recorded = True
        saver.save("subscriptions")
        order = saver.order

    # (f) done: e-mail first (a fixed id makes it once), then the final status
    failed = [li for li in order.lines if li.result is not None and li.result.error]
    final = OrderStatus.COMPLETED_WITH_ERRORS if failed else OrderStatus.COMPLETED
    order.move(final, book.clock.now(), SYSTEM)
    _notify(book, reseller, order)
    saver.save("completed")


def _body(order: Order, poll: int) -> dict[str, Any]:
    return {"reseller": order.reseller, "orderId": order.id, "poll": poll}


def _customer_failed(customer: Customer) -> str:
    return f"the customer is {customer.status.value}" + (
        f": {customer.failure_reason}" if customer.failure_reason else ""
    )


def _check_out(
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


def _recover_orders(
    book: OrderBook, partner_center: PartnerCenter, order: Order, tenant: str
) -> list[PlacedOrder]:
    """The Partner Center orders our checkout placed: same offers and quantities, created
    since the order was submitted, and not claimed by another order of ours."""
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
            break
    submitted = next(
        (h.at for h in reversed(order.history) if h.status is OrderStatus.SUBMITTED), None
    )
    wanted = {(li.catalog_item_id.upper(), li.quantity) for li in order.lines}
    found: list[PlacedOrder] = []
    for placed in partner_center.placed_orders(tenant):
        if placed.id in claimed:
            continue
        if (
            submitted is not None
            and placed.created_at is not None
            and placed.created_at < submitted - _SKEW
        ):
            continue
        if placed.lines and all((pl.catalog_item_id, pl.quantity) in wanted for pl in placed.lines):
            found.append(placed)
    return found


def _record_checkout(order: Order, result: CheckoutResult) -> None:
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
            if str(_group_of(order, i)) == error.order_group and line.result is None:
                line.result = LineResult(
                    error=_line_error(line, error.code, error.description, error.available_quantity)
                )


def _line_error(line: OrderLine, code: str, description: str, available: int | None) -> str:
    """A sentence a person can act on, from Partner Center's refusal of a line."""
    if code == _SEAT_LIMIT:
        if available is not None:
            return f"at most {available} more licences of {line.name} for this tenant"
        return f"the quantity of {line.name} is outside what this tenant may buy ({description})"
    return f"Partner Center refused {line.name}: {description} (code {code})"


def _record_nothing_placed(book: OrderBook, order: Order, result: CheckoutResult) -> None:
    reasons = [li.result.error for li in order.lines if li.result and li.result.error]
    reason = "; ".join(dict.fromkeys(reasons)) or "Partner Center placed none of the lines"
    detail = "; ".join(f"{e.code}: {e.description}" for e in result.errors) or None
    order.failure = Failure(kind=FailureKind.REFUSED, reason=reason[:1000], detail=detail)
    order.move(OrderStatus.FAILED, book.clock.now(), SYSTEM, reason[:500])


def _record_subscriptions(
    book: OrderBook, partner_center: PartnerCenter, order: Order, tenant: str
) -> None:
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


def notification_id(order: Order) -> str:
    """The fixed id of an order's final e-mail (queued once)."""
    return f"order-{order.id}-{order.status.value.lower()}"


def _notify(book: OrderBook, reseller: Reseller, order: Order) -> None:
    """Queue the order's completed / failed e-mail to whom the reseller's settings name."""
    if book.notifications is None:
        return
    if book.notifications.find(reseller.slug, notification_id(order)) is not None:
        return
    failed = order.status is OrderStatus.FAILED
    event = NotificationEvent.ORDER_FAILED if failed else NotificationEvent.ORDER_COMPLETED
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
    email = notifications.email_to(
        reseller,
        event,
        f"Order {order.id[-8:]} {headline}",
        text,
        interested=[order.created_by],
        users=book.users,
    )
    if email is None:
        return
    with contextlib.suppress(Conflict):  # queued by an earlier delivery of this step
        notifications.queue_email(
            book.notifications, reseller.slug, email, notification_id=notification_id(order)
        )


def _fail(
    book: OrderBook, order: Order, kind: FailureKind, reason: str, detail: str | None
) -> None:
    """Mark an order still in flight Failed with a reason (re-read on a lost race)."""
    current: Order | None = order
    for _ in range(5):
        if current is None or current.status not in (
            OrderStatus.SUBMITTED,
            OrderStatus.PROVISIONING,
        ):
            return
        if current.partner_center_order_ids and current.checked_out:
            # Partner Center placed it: the failure is in the waiting, not the order.
            kind = FailureKind.TRANSIENT
        current.failure = Failure(kind=kind, reason=reason[:1000], detail=detail)
        current.move(OrderStatus.FAILED, book.clock.now(), SYSTEM, reason[:500])
        try:
            saved = book.orders.update(current)
        except ConcurrencyConflict:
            current = _find(book, order.reseller, order.id)
            continue
        reseller = book.resellers.find("reseller", order.reseller)
        if reseller is not None:
            _notify(book, reseller, saved)
        return


def give_up(book: OrderBook, message: ProvisionOrderMessage, reason: str) -> None:
    """The step was refused for good or ran out of tries: Failed, with the reason."""
    order = _find(book, message.reseller, message.order_id)
    if order is None:
        return
    transient = reason.startswith("gave up after")
    _fail(
        book,
        order,
        FailureKind.TRANSIENT if transient else FailureKind.REFUSED,
        (
            "Partner Center could not be reached; retry the order later"
            if transient
            else f"Partner Center refused the order: {reason}"
        ),
        reason,
    )
