"""What a reseller's catalog shows: the public catalog and a customer's priced catalog.

Every price comes from `pricing.price_line`, the same as for orders; each caller gets its own
response model (`access.Audience`): distributor admins every layer, reseller staff the reseller
cost and margin, customer users and anonymous callers their price or the recommended one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from shared.domain.catalog import MicrosoftSegment, Segment
from shared.domain.errors import NotFound
from shared.domain.identity import Principal
from shared.domain.model import WireModel
from shared.domain.money import Money
from shared.domain.pricing import PricedLine, price_line
from shared.services.access import Audience, audience
from shared.services.catalog import (
    CatalogSnapshot,
    Listing,
    Offer,
    filter_listings,
    listing_offers,
    page,
)
from shared.services.pricing import (
    UnitPriceDistributor,
    UnitPricePublic,
    UnitPriceStaff,
    overrides_of,
    render_price,
    sheet_row,
)

log = logging.getLogger(__name__)


class CategoryView(WireModel):
    """A category as the catalog lists it."""

    id: str
    name: str
    parent_id: str | None = None


class SegmentView(WireModel):
    """A segment as the catalog lists it."""

    id: str
    name: str
    base: MicrosoftSegment


class OfferFields(WireModel):
    """One way to buy a product: a SKU × term × billing cycle."""

    sku_id: str
    sku_name: str
    catalog_item_id: str
    term: str
    billing_cycle: str
    currency: str


class PublicOffer(OfferFields):
    """An offer with its recommended retail price (the reseller's, else Microsoft's ERP)."""

    segment: str
    recommended_retail_price: Money | None = None


class PublicProduct(WireModel):
    """A product as anyone sees it: texts, terms and recommended retail prices."""

    id: str
    name: str
    description: str
    features: list[str]
    categories: list[str]
    segments: list[str]
    is_addon: bool
    addon_ids: list[str]
    offers: list[PublicOffer]


class PublicProductDetail(PublicProduct):
    """A product with the add-ons the reseller offers for it."""

    addons: list[PublicProduct]


class PublicCatalog(WireModel):
    """The reseller's public catalog: categories, segments and one page of products."""

    reseller: str
    currency: str
    categories: list[CategoryView]
    segments: list[SegmentView]
    items: list[PublicProduct]
    continuation_token: str | None = None


class CustomerOffer(OfferFields, UnitPricePublic):
    """An offer as the customer's own users see it: their price only."""


class StaffOffer(OfferFields, UnitPriceStaff):
    """An offer's prices for reseller staff: reseller cost, recommended, customer, margin."""


class DistributorOffer(OfferFields, UnitPriceDistributor):
    """An offer's prices for distributor admins: every layer, Microsoft's cost included."""


class _CustomerProduct(WireModel):
    id: str
    name: str
    description: str
    features: list[str]
    categories: list[str]
    is_addon: bool
    addon_ids: list[str]


class CustomerProductPublic(_CustomerProduct):
    """A product a customer may buy, priced for that customer."""

    offers: list[CustomerOffer]


class CustomerProductStaff(_CustomerProduct):
    """A product a customer may buy, with each offer's price breakdown."""

    offers: list[StaffOffer]


class CustomerProductDistributor(_CustomerProduct):
    """A product a customer may buy, with every price layer of each offer."""

    offers: list[DistributorOffer]


class _CustomerCatalog(WireModel):
    reseller: str
    customer_id: str
    segment: str
    currency: str
    categories: list[CategoryView]
    continuation_token: str | None = None


class CustomerCatalogPublic(_CustomerCatalog):
    """What one customer may buy, as its own users see it."""

    items: list[CustomerProductPublic]


class CustomerCatalogStaff(_CustomerCatalog):
    """What one customer may buy, as reseller staff see it."""

    items: list[CustomerProductStaff]


class CustomerCatalogDistributor(_CustomerCatalog):
    """What one customer may buy, as distributor admins see it."""

    items: list[CustomerProductDistributor]


CustomerCatalog = CustomerCatalogDistributor | CustomerCatalogStaff | CustomerCatalogPublic

_OFFERS: Mapping[Audience, type[BaseModel]] = {
    Audience.DISTRIBUTOR: DistributorOffer,
    Audience.RESELLER: StaffOffer,
    Audience.CUSTOMER: CustomerOffer,
}
_PRODUCTS: Mapping[Audience, type[BaseModel]] = {
    Audience.DISTRIBUTOR: CustomerProductDistributor,
    Audience.RESELLER: CustomerProductStaff,
    Audience.CUSTOMER: CustomerProductPublic,
}
_CATALOGS: Mapping[Audience, type[CustomerCatalog]] = {
    Audience.DISTRIBUTOR: CustomerCatalogDistributor,
    Audience.RESELLER: CustomerCatalogStaff,
    Audience.CUSTOMER: CustomerCatalogPublic,
}


def price_listing_offer(snap: CatalogSnapshot, listing: Listing, offer: Offer) -> PricedLine:
    """One unit of a catalog offer, priced by the catalog entry and the reseller's settings
    (once per snapshot: the snapshot is rebuilt whenever one of those changes)."""
    key = (
        listing.product.id,
        offer.sku.id,
        offer.availability.catalog_item_id,
        offer.term.duration,
        offer.term.billing_cycle,
    )
    found = snap.priced.get(key)
    if found is None:
        row = sheet_row(listing.product.id, offer.sku.id, offer.price)
        found = price_line(snap.pricing, row, overrides=overrides_of(listing.entry, row))
        snap.priced[key] = found  # a race prices it twice, alike: harmless
    return found


def _offer_fields(o: Offer, currency: str) -> dict[str, str]:
    return {
        "sku_id": o.sku.id,
        "sku_name": o.sku.title,
        "catalog_item_id": o.availability.catalog_item_id,
        "term": o.term.duration,
        "billing_cycle": o.term.billing_cycle,
        "currency": currency,
    }


def _public_segment(snap: CatalogSnapshot, listing: Listing, wanted: str | None) -> Segment | None:
    if wanted is not None:
        return snap.settings.segment(wanted) if wanted in listing.segments else None
    for seg in snap.settings.segments:
        if seg.id in listing.segments:
            return seg
    return None


def _public_product(snap: CatalogSnapshot, listing: Listing, segment: str | None) -> PublicProduct:
    seg = _public_segment(snap, listing, segment)
    currency = snap.currency
    offers = (
        [
            PublicOffer(
                **_offer_fields(o, currency),
                segment=seg.id,
                recommended_retail_price=price_listing_offer(
                    snap, listing, o
                ).unit.recommended_retail_price,
            )
            for o in listing_offers(listing, seg, currency)
        ]
        if seg is not None
        else []
    )
    return PublicProduct(
        id=listing.product.id,
        name=listing.name,
        description=listing.description,
        features=list(listing.features),
        categories=list(listing.categories),
        segments=[s.id for s in snap.settings.segments if s.id in listing.segments],
        is_addon=listing.product.is_addon,
        addon_ids=[a for a in listing.product.addon_product_ids if a in snap.by_id],
        offers=offers,
    )


def _categories(snap: CatalogSnapshot) -> list[CategoryView]:
    return [CategoryView.model_validate(c, from_attributes=True) for c in snap.settings.categories]


def public_catalog(
    snap: CatalogSnapshot,
    *,
    q: str | None = None,
    category: str | None = None,
    segment: str | None = None,
    page_size: int = 50,
    continuation_token: str | None = None,
) -> PublicCatalog:
    """One page of the public catalog (recommended prices only)."""
    items, token = page(
        filter_listings(snap, q=q, category=category, segment=segment),
        page_size,
        continuation_token,
    )
    return PublicCatalog(
        reseller=snap.reseller.slug,
        currency=snap.currency,
        categories=_categories(snap),
        segments=[
            SegmentView.model_validate(s, from_attributes=True) for s in snap.settings.segments
        ],
        items=[_public_product(snap, li, segment) for li in items],
        continuation_token=token,
    )


def public_product(
    snap: CatalogSnapshot, product_id: str, *, segment: str | None = None
) -> PublicProductDetail:
    """One product of the public catalog, with the add-ons the reseller offers for it."""
    listing = snap.by_id.get(product_id.upper())
    if listing is None or (segment is not None and segment not in listing.segments):
        raise NotFound("this product is not in the catalog")
    base = _public_product(snap, listing, segment)
    addons = [
        _public_product(snap, snap.by_id[a], segment)
        for a in listing.product.addon_product_ids
        if a in snap.by_id and (segment is None or segment in snap.by_id[a].segments)
    ]
    return PublicProductDetail(**dict(base), addons=addons)


def customer_catalog(
    snap: CatalogSnapshot,
    principal: Principal | None,
    customer_id: str,
    segment_id: str,
    *,
    q: str | None = None,
    category: str | None = None,
    page_size: int = 50,
    continuation_token: str | None = None,
) -> CustomerCatalog:
    """What one customer may buy, priced, in the response model of the caller's audience."""
    segment = snap.settings.segment(segment_id)
    if segment is None:
        # A customer's segment the reseller has since removed buys as commercial.
        log.warning(
            "segment %r of customer %s is not defined; using commercial", segment_id, customer_id
        )
        segment = snap.settings.segment(MicrosoftSegment.COMMERCIAL.value)
        assert segment is not None
    items, token = page(
        filter_listings(snap, q=q, category=category, segment=segment.id),
        page_size,
        continuation_token,
    )
    currency = snap.currency
    who = audience(principal)
    products: list[Any] = []
    for li in items:
        offers = [
            render_price(price_listing_offer(snap, li, o), who, _OFFERS, _offer_fields(o, currency))
            for o in listing_offers(li, segment, currency)
        ]
        products.append(
            _PRODUCTS[who](
                id=li.product.id,
                name=li.name,
                description=li.description,
                features=list(li.features),
                categories=list(li.categories),
                is_addon=li.product.is_addon,
                addon_ids=[
                    a
                    for a in li.product.addon_product_ids
                    if a in snap.by_id and segment.id in snap.by_id[a].segments
                ],
                offers=offers,
            )
        )
    return _CATALOGS[who](
        reseller=snap.reseller.slug,
        customer_id=customer_id,
        segment=segment.id,
        currency=currency,
        categories=_categories(snap),
        items=products,
        continuation_token=token,
    )
