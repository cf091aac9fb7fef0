"""Import of Microsoft's catalog and price sheet from Partner Center into `Products`, per market.

Everything is read first (products, SKUs, availabilities, the price sheet) and only then
written, so a Partner Center failure half-way leaves the stored catalog as it was. A product
whose content did not change costs no write; one Microsoft no longer lists is marked
withdrawn, never deleted (orders point at it). When anything changed, the market's stamp gets
a new `import_id`, which invalidates every cached catalog built on the old one.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import AwareDatetime

from shared.adapters.partner_center import wire as pc
from shared.domain.catalog import (
    MARKET_STAMPS,
    MarketStamp,
    Product,
    ProductSku,
    SkuAvailability,
    SkuPrice,
    Term,
)
from shared.domain.errors import UpstreamRejected
from shared.domain.model import WireModel, new_id
from shared.ports import Clock, PartnerCenter, Repository

log = logging.getLogger(__name__)

# The licence-based catalog views; Azure plans are usage-based and priced elsewhere.
TARGET_VIEWS = ("OnlineServices", "SoftwareSubscriptions")
# Products written per table transaction (≤ 100 operations and ≤ 4 MiB per transaction).
WRITE_BATCH = 25

_PriceKey = tuple[str, str, str, str, str, str]  # product, sku, segment, term, billing, currency


class ImportReport(WireModel):
    """What one import of a market did."""

    market: str
    products: int
    added: int
    changed: int
    unchanged: int
    withdrawn: int
    restored: int
    prices: int
    import_id: str
    stamp_changed: bool
    started_at: AwareDatetime
    finished_at: AwareDatetime


def _lower(value: str | None) -> str:
    return (value or "").strip().lower()


def _effective(row: pc.PriceSheetRow, now: datetime) -> bool:
    if row.effective_start_date is not None and row.effective_start_date > now:
        return False
    return row.effective_end_date is None or now <= row.effective_end_date


def index_prices(rows: Iterable[pc.PriceSheetRow], now: datetime) -> dict[_PriceKey, SkuPrice]:
    """Price sheet rows in effect at `now`, one per offer and currency (the first tier)."""
    found: dict[_PriceKey, tuple[Decimal, SkuPrice]] = {}
    for row in rows:
        if not _effective(row, now) or not row.term_duration or not row.billing_plan:
            continue
        segment = _lower(row.segment) or "commercial"
        price = SkuPrice(
            segment=segment,
            duration=row.term_duration.strip().upper(),
            billing_cycle=_lower(row.billing_plan),
            currency=row.currency.strip().upper(),
            cost=row.unit_price,
            erp=row.erp_price,
            effective_date=row.effective_start_date.date() if row.effective_start_date else None,
        )
        key = (
            row.product_id.upper(),
            row.sku_id,
            segment,
            price.duration,
            price.billing_cycle,
            price.currency,
        )
        tier = row.pricing_tier_range_min or Decimal(0)
        # Tiered lines repeat an offer per volume band; a catalog shows the first band.
        if key not in found or tier < found[key][0]:
            found[key] = (tier, price)
    return {k: v[1] for k, v in found.items()}


def _attr(sku: pc.Sku, name: str) -> Any:
    return (sku.dynamic_attributes or {}).get(name)


def _keys(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(sorted(str(v).upper() for v in value if v))


def _sku(
    product_id: str,
    sku: pc.Sku,
    availabilities: Sequence[pc.Availability],
    prices: Sequence[SkuPrice],
) -> ProductSku:
    avails = tuple(
        sorted(
            (
                SkuAvailability(
                    id=a.id,
                    catalog_item_id=a.catalog_item_id or f"{product_id}:{sku.id}:{a.id}",
                    segment=_lower(a.segment) or "commercial",
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
    sku_prices = tuple(
        sorted(prices, key=lambda p: (p.segment, p.duration, p.billing_cycle, p.currency))
    )
    max_q = sku.maximum_quantity
    return ProductSku(
        id=sku.id,
        title=sku.title or sku.id,
        description=sku.description or "",
        part_number=_attr(sku, "skuPartNumber"),
        unit_type=_attr(sku, "unitType"),
        minimum_quantity=sku.minimum_quantity or 1,
        maximum_quantity=max_q,
        is_trial=bool(sku.is_trial),
        is_addon=bool(_attr(sku, "isAddon")),
        small_business=bool(_attr(sku, "isSmallBusinessSku")),
        prerequisites=_keys(_attr(sku, "prerequisiteSkus")),
        upgrade_targets=_keys(_attr(sku, "upgradeTargetOffers")),
        availabilities=avails,
        prices=sku_prices,
    )


def fetch_products(
    partner_center: PartnerCenter, market: str, prices: dict[_PriceKey, SkuPrice], now: datetime
) -> list[Product]:
    """Every licence-based product of a market with SKUs, availabilities and prices."""
    by_sku: dict[tuple[str, str], list[SkuPrice]] = {}
    for (product_id, sku_id, *_), price in prices.items():
        by_sku.setdefault((product_id, sku_id), []).append(price)
    seen: dict[str, pc.Product] = {}
    for view in TARGET_VIEWS:
        for item in partner_center.list_products(market, view):
            seen.setdefault(item.id.upper(), item)
    products: list[Product] = []
    for pid, item in sorted(seen.items()):
        skus = [
            _sku(
                pid,
                sku,
                partner_center.list_availabilities(item.id, sku.id, market),
                by_sku.get((pid, sku.id), []),
            )
            for sku in partner_center.list_skus(item.id, market)
        ]
        products.append(
            Product(
                market=market,
                id=pid,
                title=item.title or pid,
                description=item.description or "",
                product_type=item.product_type.id if item.product_type else None,
                skus=sorted(skus, key=lambda s: s.id),
                changed_at=now,
            )
        )
    _relate_addons(products)
    for product in products:
        product.fingerprint = product.compute_fingerprint()
    return products


def _relate_addons(products: list[Product]) -> None:
    """Fill add-on relations from the SKUs' prerequisites (both directions, sorted)."""
    bases: dict[str, set[str]] = {p.id: set() for p in products}
    addons: dict[str, set[str]] = {p.id: set() for p in products}
    for product in products:
        for sku in product.skus:
            if not sku.is_addon:
                continue
            for key in sku.prerequisites:
                base = key.split(":", 1)[0]
                if base in addons and base != product.id:
                    addons[base].add(product.id)
                    bases[product.id].add(base)
    for product in products:
        product.addon_product_ids = sorted(addons[product.id])
        product.base_product_ids = sorted(bases[product.id])


def content_hash(products: Iterable[Product]) -> str:
    """One hash over every product's fingerprint and withdrawn flag."""
    digest = hashlib.sha256()
    for p in sorted(products, key=lambda p: p.id):
        digest.update(f"{p.id}:{p.fingerprint}:{int(p.withdrawn)};".encode())
    return digest.hexdigest()


def _stored(products: Repository[Product], market: str) -> dict[str, Product]:
    found: dict[str, Product] = {}
    token: str | None = None
    while True:
        page = products.list(market, page_size=1000, continuation_token=token)
        found.update((p.id, p) for p in page.items)
        token = page.continuation_token
        if token is None:
            return found


def _write(
    products: Repository[Product], market: str, adds: list[Product], updates: list[Product]
) -> None:
    for i in range(0, len(adds), WRITE_BATCH):
        products.save_all(market, adds=adds[i : i + WRITE_BATCH])
    for i in range(0, len(updates), WRITE_BATCH):
        products.save_all(market, updates=updates[i : i + WRITE_BATCH])


def import_market(
    partner_center: PartnerCenter,
    products: Repository[Product],
    stamps: Repository[MarketStamp],
    clock: Clock,
    market: str,
) -> ImportReport:
    """Refresh a market's products and prices from Partner Center; write only what changed."""
    market = market.upper()
    started = clock.now()
    prices = index_prices(partner_center.get_price_sheet(market), started)
    fresh = fetch_products(partner_center, market, prices, started)
    if not fresh:
        # An empty catalog is a Partner Center fault, not Microsoft withdrawing everything.
        raise UpstreamRejected(f"Partner Center listed no products for {market}", code="catalog")
    stored = _stored(products, market)
    adds: list[Product] = []
    updates: list[Product] = []
    counts = {"changed": 0, "unchanged": 0, "withdrawn": 0, "restored": 0}
    for product in fresh:
        old = stored.get(product.id)
        if old is None:
            adds.append(product)
        elif old.fingerprint == product.fingerprint and not old.withdrawn:
            counts["unchanged"] += 1
        else:
            counts["restored" if old.withdrawn else "changed"] += 1
            product.etag = old.etag
            updates.append(product)
    fresh_ids = {p.id for p in fresh}
    for old in stored.values():
        if old.id not in fresh_ids and not old.withdrawn:
            old.withdrawn, old.withdrawn_at = True, started
            updates.append(old)
            counts["withdrawn"] += 1
    _write(products, market, adds, updates)
    final = {**stored, **{p.id: p for p in [*adds, *updates]}}
    digest = content_hash(final.values())
    stamp = stamps.find(MARKET_STAMPS, market)
    stamp_changed = stamp is None or stamp.content_hash != digest
    if stamp_changed:
        record = MarketStamp(
            market=market,
            import_id=new_id(),
            content_hash=digest,
            products=sum(1 for p in final.values() if not p.withdrawn),
            withdrawn=sum(1 for p in final.values() if p.withdrawn),
            imported_at=started,
        )
        if stamp is None:
            stamp = stamps.add(record)
        else:
            record.etag = stamp.etag
            stamp = stamps.update(record)
    assert stamp is not None
    report = ImportReport(
        market=market,
        products=len(fresh),
        added=len(adds),
        changed=counts["changed"],
        unchanged=counts["unchanged"],
        withdrawn=counts["withdrawn"],
        restored=counts["restored"],
        prices=len(prices),
        import_id=stamp.import_id,
        stamp_changed=stamp_changed,
        started_at=started,
        finished_at=clock.now(),
    )
    log.info("catalog import %s: %s", market, report.model_dump_json())
    return report
