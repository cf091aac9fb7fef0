"""The price of a subscription after a change: one answer for the Change order's line, for the
record's snapshot when the change is done, and for a refresh that finds Partner Center changed
the offer (a next-term change Microsoft applied at renewal).

- the same offer (product, SKU, term, billing cycle) at the same quantity: the snapshot as it is;
- the same offer at another quantity: the reseller cost of today's price sheet, the customer
  unit price kept as sold;
- another offer, term or billing cycle: that offer's price now, as the reseller's catalog sells
  it to the customer (its overrides apply).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.domain.catalog import MicrosoftSegment, OfferKey, Product
from shared.domain.customers import Customer
from shared.domain.errors import FieldError, ValidationFailed
from shared.domain.identity import Reseller
from shared.domain.orders import ChangeKind, SubscriptionChangeOrder
from shared.domain.pricing import LineOverride, PricedLine
from shared.domain.subscriptions import Subscription, SubscriptionFacts
from shared.services.orders.book import OrderBook
from shared.services.orders.lines import base_segment
from shared.services.pricing import find_row, price_line, price_offer, reseller_pricing

# A trial converts to the paid offer's usual plan unless the request names another.
CONVERTED_TERM, CONVERTED_CYCLE = "P1Y", "monthly"


@dataclass(frozen=True)
class Terms:
    """What a subscription is sold as: its offer, seats, term and billing cycle."""

    catalog_item_id: str
    quantity: int
    term_duration: str
    billing_cycle: str

    @property
    def product_id(self) -> str:
        """The catalog's product id (upper case)."""
        return self.catalog_item_id.split(":")[0].upper()

    @property
    def sku_id(self) -> str:
        """The product's SKU id (upper case)."""
        return [*self.catalog_item_id.split(":"), ""][1].upper()

    @property
    def offer(self) -> tuple[str, str, str, str]:
        """What decides the price of a seat: product, SKU, term, billing cycle."""
        return (self.product_id, self.sku_id, self.term_duration, self.billing_cycle)


def offer_of(priced: PricedLine) -> tuple[str, str, str, str]:
    """The offer a price snapshot was made for (as `Terms.offer`)."""
    sheet = priced.price_sheet
    return (sheet.product_id.upper(), sheet.sku_id.upper(), sheet.term, sheet.billing_cycle)


def priced_as(priced: PricedLine | None, terms: Terms) -> bool:
    """Whether the snapshot was made for exactly these terms (offer and seats)."""
    return priced is not None and (offer_of(priced), priced.quantity) == (
        terms.offer,
        terms.quantity,
    )


def terms_of(sub: Subscription) -> Terms | None:
    """The subscription as its record has it (None when its offer is not known here)."""
    if not sub.catalog_item_id or sub.quantity < 1:
        return None
    term, cycle = sub.term_duration or "", sub.billing_cycle or ""
    return Terms(sub.catalog_item_id, sub.quantity, term, cycle)


def terms_of_facts(facts: SubscriptionFacts) -> Terms | None:
    """The subscription as Partner Center says it is (None without an offer or seats)."""
    if not facts.catalog_item_id or facts.quantity < 1:
        return None
    return Terms(
        facts.catalog_item_id, facts.quantity, facts.term_duration or "", facts.billing_cycle or ""
    )


def terms_after(sub: Subscription, change: SubscriptionChangeOrder) -> Terms:
    """The subscription as it will be after the change (its offer must be known here)."""
    catalog_item = change.to_catalog_item_id or sub.catalog_item_id or ""
    converting = change.kind is ChangeKind.CONVERT
    term = change.term_duration or (CONVERTED_TERM if converting else sub.term_duration)
    cycle = change.billing_cycle or (CONVERTED_CYCLE if converting else sub.billing_cycle)
    return Terms(catalog_item, change.quantity or sub.quantity, term or "", cycle or "")


def changes_offer(sub: Subscription, after: Terms) -> bool:
    """Whether the change moves the subscription to another offer, term or billing cycle."""
    before = terms_of(sub)
    return before is None or before.offer != after.offer


def market_product(book: OrderBook, reseller: Reseller, product_id: str) -> Product | None:
    """The product of the reseller's market in the current catalog import (any case)."""
    products = book.catalog.market_products(
        reseller.country, book.catalog.import_id(reseller.country)
    )
    wanted = product_id.upper()
    return products.get(product_id) or next(
        (p for pid, p in products.items() if pid.upper() == wanted), None
    )


def price_after(
    book: OrderBook,
    reseller: Reseller,
    customer: Customer,
    before: PricedLine | None,
    after: Terms,
) -> PricedLine:
    """The subscription's price snapshot once it is `after` (see the module docstring); an
    offer that cannot be priced is a ValidationFailed naming `catalogItemId`."""
    pricing = reseller_pricing(reseller, book.catalog.distributor_markup_percent)
    product = market_product(book, reseller, after.product_id)
    if before is not None and priced_as(before, after):
        return before
    if (
        before is not None
        and offer_of(before) == after.offer
        and before.currency == pricing.currency
    ):
        sheet = before.price_sheet
        key = OfferKey(
            sku_id=sheet.sku_id,
            segment=MicrosoftSegment(sheet.segment),
            term=sheet.term,
            billing_cycle=sheet.billing_cycle,
        )
        # Today's cost; a row gone from the sheet (or a trial's) keeps the one sold.
        row = (find_row(product, key, pricing.currency) if product else None) or sheet
        kept = LineOverride(unit_price=before.unit.customer_price)
        return price_line(pricing, row, quantity=after.quantity, line=kept)
    if product is None:
        raise ValidationFailed([FieldError("catalogItemId", "is not an offer of the catalog")])
    snap = book.catalog.snapshot(reseller.slug)
    sku = next((s for s in product.skus if s.id.upper() == after.sku_id), None)
    key = OfferKey(
        sku_id=sku.id if sku is not None else after.sku_id,
        segment=base_segment(snap, customer),
        term=after.term_duration,
        billing_cycle=after.billing_cycle,
    )
    listing = snap.by_id.get(product.id)
    return price_offer(
        pricing,
        product,
        listing.entry if listing is not None else None,
        key,
        quantity=after.quantity,
        field="catalogItemId",
    )
