"""Reading subscriptions: the records (list), and one refreshed from Partner Center when its
facts are older than a short freshness (get)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from shared.domain.catalog import Product
from shared.domain.customers import Customer
from shared.domain.errors import (
    ConcurrencyConflict,
    DomainError,
    NotFound,
    UpstreamRejected,
    UpstreamUnavailable,
)
from shared.domain.identity import Principal
from shared.domain.model import Page
from shared.domain.subscriptions import LicenceCount, Subscription
from shared.ports import PartnerCenter
from shared.services import resellers
from shared.services.attribution import names_for
from shared.services.orders.book import OrderBook, customer_of
from shared.services.subscriptions.pricing import market_product, price_after, priced_as, terms_of
from shared.services.subscriptions.views import (
    SubscriptionPublic,
    SubscriptionStaff,
    present_subscription,
)

log = logging.getLogger(__name__)

# Facts read from Partner Center this recently are served as they are.
FRESH_FOR = timedelta(seconds=60)
_SUBSCRIPTION_ID_MAX = 64


def list_subscriptions(
    book: OrderBook,
    principal: Principal,
    reseller: str,
    customer_id: str,
    *,
    page_size: int = 100,
    continuation_token: str | None = None,
) -> Page[SubscriptionStaff | SubscriptionPublic]:
    """The customer's subscriptions as the platform records them, in the caller's view."""
    resellers.get(book.resellers, reseller)
    customer_of(book, principal, reseller, customer_id)
    page = book.subscriptions.list(
        customer_id, page_size=page_size, continuation_token=continuation_token
    )
    names = names_for(book, principal, reseller, customer_id)
    return Page[SubscriptionStaff | SubscriptionPublic](
        items=[
            present_subscription(principal, s, names) for s in page.items if s.reseller == reseller
        ],
        continuation_token=page.continuation_token,
    )


def find_subscription(
    book: OrderBook, principal: Principal, reseller: str, customer_id: str, subscription_id: str
) -> tuple[Customer, Subscription]:
    """The customer and its subscription inside the caller's world (NotFound otherwise)."""
    customer = customer_of(book, principal, reseller, customer_id)
    sid = subscription_id.strip().lower()
    found = (
        book.subscriptions.find(customer.id, sid)
        if sid and len(sid) <= _SUBSCRIPTION_ID_MAX and sid.replace("-", "").isalnum()
        else None
    )
    if found is None or found.reseller != reseller:
        raise NotFound("subscription not found")
    return customer, found


def sku_part_number(product: Product | None, catalog_item_id: str | None) -> str | None:
    """The catalog's skuPartNumber of the catalog item's SKU (the key subscribedskus share)."""
    if product is None or not catalog_item_id:
        return None
    sku_id = [*catalog_item_id.upper().split(":"), ""][1]
    sku = next((s for s in product.skus if s.id.upper() == sku_id), None)
    return sku.part_number if sku is not None else None


def licence_count_by_part(
    part_number: str | None, counts: Sequence[LicenceCount]
) -> LicenceCount | None:
    """The licence count of the SKU with this part number (None if unknown)."""
    if not part_number:
        return None
    wanted = part_number.upper()
    return next((c for c in counts if (c.part_number or "").upper() == wanted), None)


def licence_count_of(
    book: OrderBook, sub: Subscription, counts: Sequence[LicenceCount]
) -> LicenceCount | None:
    """The licence count of the subscription's SKU, matched by skuPartNumber (None if unknown)."""
    if not sub.catalog_item_id:
        return None
    reseller = resellers.get(book.resellers, sub.reseller)
    product = market_product(book, reseller, sub.catalog_item_id.split(":")[0])
    return licence_count_by_part(sku_part_number(product, sub.catalog_item_id), counts)


def refresh(
    book: OrderBook,
    partner_center: PartnerCenter,
    customer: Customer,
    sub: Subscription,
    now: datetime,
) -> Subscription:
    """The record with Partner Center's facts and licence counts as they are now, stored
    (`apply_facts`, the one place facts are copied). Partner Center unavailable, or a
    concurrent write: the record as it is. Licence counts that cannot be read (another call,
    app+user only): the facts with the licences last stored."""
    if not customer.tenant_id:
        return sub
    try:
        facts = partner_center.subscription(customer.tenant_id, sub.id)
    except (UpstreamUnavailable, NotFound) as exc:
        log.warning("subscription %s served from the record: %s", sub.id, exc)
        return sub
    sub.apply_facts(facts, now)
    reprice(book, customer, sub)
    try:
        counts = partner_center.licence_counts(customer.tenant_id)
    except (UpstreamUnavailable, UpstreamRejected) as exc:
        log.warning("licences of subscription %s served from the record: %s", sub.id, exc)
    else:
        count = licence_count_of(book, sub, counts)
        sub.assigned_licences = count.assigned if count is not None else None
    sub.updated_at = now
    try:
        return book.subscriptions.update(sub)
    except ConcurrencyConflict:
        # Someone changed the record meanwhile (a change being requested): theirs wins.
        return book.subscriptions.get(sub.customer_id, sub.id.lower())


def reprice(book: OrderBook, customer: Customer, sub: Subscription) -> None:
    """A refresh that finds another offer, term, billing cycle or seat count (a next-term change
    Microsoft applied at renewal, a change made in Partner Center) prices the subscription as
    it is now; one that cannot be priced keeps its snapshot, with a warning in the log."""
    after = terms_of(sub)
    if after is None or priced_as(sub.priced, after):
        return
    try:
        reseller = resellers.get(book.resellers, sub.reseller)
        sub.priced = price_after(book, reseller, customer, sub.priced, after)
    except (DomainError, ValueError) as exc:
        log.warning(
            "subscription %s is now %s but cannot be priced (the price snapshot is kept): %s",
            sub.id,
            after.catalog_item_id,
            exc,
        )


def get_subscription(
    book: OrderBook,
    partner_center: PartnerCenter,
    principal: Principal,
    reseller: str,
    customer_id: str,
    subscription_id: str,
) -> Subscription:
    """One subscription, refreshed from Partner Center when its facts are not fresh."""
    customer, sub = find_subscription(book, principal, reseller, customer_id, subscription_id)
    now = book.clock.now()
    if sub.refreshed_at is None or now - sub.refreshed_at > FRESH_FOR:
        sub = refresh(book, partner_center, customer, sub, now)
    return sub
