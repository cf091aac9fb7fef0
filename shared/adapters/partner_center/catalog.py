"""Partner Center's catalog shapes (products, SKUs, availabilities, price sheet) mapped to ours.

Only this module knows where Microsoft keeps a SKU's part number or add-on flag
(`dynamicAttributes`) and how the price sheet spells its columns; the catalog import speaks
`OfferedProduct`, `ProductSku` and `PriceLine`.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from shared.adapters.partner_center import wire as pc
from shared.domain.catalog import (
    OfferedProduct,
    PriceLine,
    ProductSku,
    SkuAvailability,
    Term,
)

DEFAULT_SEGMENT = "commercial"


def _lower(value: str | None) -> str:
    return (value or "").strip().lower()


def offered_product(product: pc.Product) -> OfferedProduct:
    """A listed product, in our words."""
    return OfferedProduct(
        id=product.id,
        title=product.title,
        description=product.description,
        product_type=product.product_type.id if product.product_type else None,
    )


def _attr(sku: pc.Sku, name: str) -> Any:
    return (sku.dynamic_attributes or {}).get(name)


def _keys(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(sorted(str(v).upper() for v in value if v))


def product_sku(
    product_id: str, sku: pc.Sku, availabilities: Sequence[pc.Availability]
) -> ProductSku:
    """A SKU with its purchasable availabilities (sorted); prices are the import's to add."""
    product_id = product_id.upper()
    avails = tuple(
        sorted(
            (
                SkuAvailability(
                    id=a.id,
                    catalog_item_id=a.catalog_item_id or f"{product_id}:{sku.id}:{a.id}",
                    segment=_lower(a.segment) or DEFAULT_SEGMENT,
                    terms=tuple(
                        Term(duration=t.duration.upper(), billing_cycle=_lower(t.billing_cycle))
                        for t in a.terms
                        if t.duration and t.billing_cycle
                    ),
                )
                for a in availabilities
                if a.is_purchasable is not False
            ),
            key=lambda a: (a.segment, a.id),
        )
    )
    return ProductSku(
        id=sku.id,
        title=sku.title or sku.id,
        description=sku.description or "",
        part_number=_attr(sku, "skuPartNumber"),
        unit_type=_attr(sku, "unitType"),
        minimum_quantity=sku.minimum_quantity or 1,
        maximum_quantity=sku.maximum_quantity,
        is_trial=bool(sku.is_trial),
        is_addon=bool(_attr(sku, "isAddon")),
        small_business=bool(_attr(sku, "isSmallBusinessSku")),
        prerequisites=_keys(_attr(sku, "prerequisiteSkus")),
        upgrade_targets=_keys(_attr(sku, "upgradeTargetOffers")),
        availabilities=avails,
    )


def price_line(row: pc.PriceSheetRow) -> PriceLine:
    """One price sheet row, normalised (upper-case ids and terms, lower-case cycles)."""
    return PriceLine(
        product_id=row.product_id.upper(),
        sku_id=row.sku_id,
        segment=_lower(row.segment) or DEFAULT_SEGMENT,
        duration=row.term_duration.strip().upper() if row.term_duration else None,
        billing_cycle=_lower(row.billing_plan) or None,
        currency=row.currency.strip().upper(),
        cost=row.unit_price,
        erp=row.erp_price,
        tier_min=row.pricing_tier_range_min or Decimal(0),
        effective_from=row.effective_start_date,
        effective_to=row.effective_end_date,
    )
