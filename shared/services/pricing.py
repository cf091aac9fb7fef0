"""Pricing: "what does this offer cost whom", for the catalog, orders, quotes and reports alike.

The rules live in `shared.domain.pricing` (`price_line`); this module finds their inputs (the
reseller's resolved settings, the price-sheet row of an offer, the catalog entry's overrides)
and renders a `PricedLine` for one audience as its own response model:

- `Audience.DISTRIBUTOR`: every layer, Microsoft's cost and the distributor's mark-up included;
- `Audience.RESELLER`: reseller cost (never Microsoft's), recommended and customer price,
  margin, mark-up;
- `Audience.CUSTOMER`: the customer's price only — the model has no cost, margin or mark-up
  field at all.

Orders and quotes store the `PricedLine` itself (a snapshot) and render it the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from shared.domain.catalog import CatalogEntry, OfferKey, Product, SkuPrice, Term
from shared.domain.errors import FieldError, ValidationFailed
from shared.domain.identity import Reseller
from shared.domain.model import WireModel
from shared.domain.money import Money
from shared.domain.pricing import (
    LineOverride,
    OfferOverrides,
    PricedLine,
    PriceSheetRow,
    PriceSource,
    ResellerPricing,
    price_line,
)
from shared.services.access import Audience

M = TypeVar("M", bound=BaseModel)
log = logging.getLogger(__name__)

__all__ = [
    "LineOverride",
    "PricedLine",
    "ResellerPricing",
    "price_line",
]


def reseller_pricing(reseller: Reseller, distributor_default: Decimal) -> ResellerPricing:
    """The reseller's pricing settings, its own distributor mark-up or else the default."""
    own = reseller.distributor_markup_percent
    return ResellerPricing(
        currency=reseller.currency,
        distributor_markup_percent=distributor_default if own is None else own,
        default_markup_percent=reseller.default_markup_percent,
    )


def sheet_row(product_id: str, sku_id: str, price: SkuPrice) -> PriceSheetRow:
    """The price-sheet row of one offer, as `price_line` takes it."""
    return PriceSheetRow(
        product_id=product_id,
        sku_id=sku_id,
        segment=price.segment,
        term=price.duration,
        billing_cycle=price.billing_cycle,
        currency=price.currency,
        microsoft_cost=price.cost,
        erp=price.erp,
        effective_date=price.effective_date,
    )


def find_row(product: Product, key: OfferKey, currency: str) -> PriceSheetRow | None:
    """The price-sheet row of an offer the product really sells (paid SKU, term offered)."""
    sku = next((s for s in product.skus if s.id == key.sku_id and not s.is_trial), None)
    if sku is None:
        return None
    availability = sku.availability(key.segment.value)
    term = Term(duration=key.term, billing_cycle=key.billing_cycle)
    if availability is None or term not in availability.terms:
        return None
    price = sku.price(key.segment.value, key.term, key.billing_cycle, currency)
    return None if price is None else sheet_row(product.id, sku.id, price)


def overrides_of(entry: CatalogEntry | None, row: PriceSheetRow) -> OfferOverrides:
    """What the reseller's catalog entry says about the offer of `row` (nothing without one).

    A price set in another currency than the row's (left by a write that raced a change of the
    reseller's currency) is ignored with a warning: one stale entry must not make the whole
    catalog unreadable.
    """
    if entry is None:
        return OfferOverrides()
    found = entry.overrides_for(row.sku_id, row.segment, row.term, row.billing_cycle)
    stale = {
        name
        for name in ("recommended_price", "pinned_price")
        if (price := getattr(found, name)) is not None and price.currency != row.currency
    }
    if not stale:
        return found
    log.warning(
        "catalog entry %s of %s sets %s in another currency than %s; ignored",
        entry.product_id,
        entry.reseller,
        ", ".join(sorted(stale)),
        row.currency,
    )
    return found.model_copy(update=dict.fromkeys(stale))


def price_offer(
    pricing: ResellerPricing,
    product: Product,
    entry: CatalogEntry | None,
    key: OfferKey,
    *,
    quantity: int = 1,
    line: LineOverride | None = None,
    field: str = "offer",
) -> PricedLine:
    """Price `quantity` of one offer of a product for the reseller's customer.

    `entry` is the reseller's catalog entry for the product (its overrides apply); `line` is
    what an order or quote line says by hand. An offer the product does not sell in the
    reseller's currency is a ValidationFailed naming `field`.
    """
    row = find_row(product, key, pricing.currency)
    if row is None:
        raise ValidationFailed([FieldError(field, "the product has no such offer")])
    return price_line(
        pricing, row, quantity=quantity, overrides=overrides_of(entry, row), line=line
    )


# --- Views ------------------------------------------------------------------------------------


class UnitPricePublic(WireModel):
    """An offer's price as the customer sees it: its price, nothing else."""

    currency: str
    price: Money


class UnitPriceStaff(WireModel):
    """An offer's unit prices as reseller staff see them (never Microsoft's cost)."""

    currency: str
    reseller_cost: Money = Field(description="What the distributor charges the reseller.")
    recommended_retail_price: Money | None = Field(
        description="The reseller's override, else Microsoft's ERP."
    )
    customer_price: Money
    margin: Money = Field(description="Customer price − reseller cost.")
    margin_percent: Decimal | None = Field(description="Margin as a percent of the price.")
    markup_percent: Decimal | None = Field(
        description="Percent over the reseller cost (as applied, or as a pinned price implies)."
    )
    below_cost: bool = Field(description="The customer price is below the reseller cost.")
    pinned: bool = Field(description="The customer price was set by hand as a price.")
    price_source: PriceSource
    price_effective_date: date | None = Field(description="When the price-sheet row took effect.")


class UnitPriceDistributor(UnitPriceStaff):
    """An offer's unit prices with Microsoft's cost (distributor admins only)."""

    microsoft_cost: Money
    distributor_markup_percent: Decimal


class LineTotalsStaff(WireModel):
    """A line's extended amounts (unit × quantity) for reseller staff."""

    reseller_cost: Money
    recommended_retail_price: Money | None
    customer_price: Money
    margin: Money


class LineTotalsDistributor(LineTotalsStaff):
    """A line's extended amounts with Microsoft's cost."""

    microsoft_cost: Money


class LinePricePublic(UnitPricePublic):
    """A priced line as the customer sees it."""

    quantity: int
    total_price: Money


class LinePriceStaff(UnitPriceStaff):
    """A priced line as reseller staff see it."""

    quantity: int
    totals: LineTotalsStaff


class LinePriceDistributor(UnitPriceDistributor):
    """A priced line as distributor admins see it."""

    quantity: int
    totals: LineTotalsDistributor


UNIT_VIEWS: Mapping[Audience, type[BaseModel]] = {
    Audience.DISTRIBUTOR: UnitPriceDistributor,
    Audience.RESELLER: UnitPriceStaff,
    Audience.CUSTOMER: UnitPricePublic,
}
LINE_VIEWS: Mapping[Audience, type[BaseModel]] = {
    Audience.DISTRIBUTOR: LinePriceDistributor,
    Audience.RESELLER: LinePriceStaff,
    Audience.CUSTOMER: LinePricePublic,
}


def _fields(line: PricedLine, quantity: int | None = None) -> dict[str, Any]:
    unit, total = line.unit, line.extended
    if quantity is not None and quantity != line.quantity:
        total = unit.times(quantity)
    return {
        "currency": line.currency,
        "quantity": line.quantity if quantity is None else quantity,
        "price": unit.customer_price,
        "total_price": total.customer_price,
        "microsoft_cost": unit.microsoft_cost,
        "distributor_markup_percent": line.distributor_markup_percent,
        "reseller_cost": unit.reseller_cost,
        "recommended_retail_price": unit.recommended_retail_price,
        "customer_price": unit.customer_price,
        "margin": unit.margin,
        "margin_percent": line.margin_percent,
        "markup_percent": line.markup_percent,
        "below_cost": line.below_cost,
        "pinned": line.pinned,
        "price_source": line.source,
        "price_effective_date": line.price_sheet.effective_date,
        "totals": dict(total),
    }


def render_price(
    line: PricedLine,
    audience: Audience,
    views: Mapping[Audience, type[M]],
    extra: Mapping[str, Any] | None = None,
    *,
    quantity: int | None = None,
) -> M:
    """`line` as the response model of `audience` in `views` (with `extra` fields beside it).

    The model decides what is shown: a customer's model declares no cost, margin or mark-up
    field, so none can reach it. `quantity` renders the unit prices for that many units
    instead of the snapshot's own (a Change order's line: the seats it changes).
    """
    return views[audience].model_validate({**(extra or {}), **_fields(line, quantity)})
