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

from pydantic import AwareDatetime

from shared.domain.catalog import (
    MARKET_STAMPS,
    MarketStamp,
    OfferedProduct,
    PriceLine,
    Product,
    SkuPrice,
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


def _effective(line: PriceLine, now: datetime) -> bool:
    if line.effective_from is not None and line.effective_from > now:
        return False
    return line.effective_to is None or now <= line.effective_to


def index_prices(lines: Iterable[PriceLine], now: datetime) -> dict[_PriceKey, SkuPrice]:
    """Price sheet lines in effect at `now`, one per offer and currency (the first tier)."""
    found: dict[_PriceKey, tuple[Decimal, SkuPrice]] = {}
    for line in lines:
        if not _effective(line, now) or not line.duration or not line.billing_cycle:
            continue
        price = SkuPrice(
            segment=line.segment,
            duration=line.duration,
            billing_cycle=line.billing_cycle,
            currency=line.currency,
            cost=line.cost,
            erp=line.erp,
            effective_date=line.effective_from.date() if line.effective_from else None,
        )
        key = (
            line.product_id,
            line.sku_id,
            line.segment,
            price.duration,
            price.billing_cycle,
            price.currency,
        )
        # Tiered lines repeat an offer per volume band; a catalog shows the first band.
        if key not in found or line.tier_min < found[key][0]:
            found[key] = (line.tier_min, price)
    return {k: v[1] for k, v in found.items()}


def fetch_products(
    partner_center: PartnerCenter, market: str, prices: dict[_PriceKey, SkuPrice], now: datetime
) -> list[Product]:
    """Every licence-based product of a market with SKUs, availabilities and prices."""
    by_sku: dict[tuple[str, str], list[SkuPrice]] = {}
    for (product_id, sku_id, *_), price in prices.items():
        by_sku.setdefault((product_id, sku_id), []).append(price)
    seen: dict[str, OfferedProduct] = {}
    for view in TARGET_VIEWS:
        for item in partner_center.catalog_products(market, view):
            seen.setdefault(item.id.upper(), item)
    products: list[Product] = []
    for pid, item in sorted(seen.items()):
        skus = [
            sku.model_copy(update={"prices": _sorted_prices(by_sku.get((pid, sku.id), []))})
            for sku in partner_center.product_skus(item.id, market)
        ]
        products.append(
            Product(
                market=market,
                id=pid,
                title=item.title or pid,
                description=item.description or "",
                product_type=item.product_type,
                skus=sorted(skus, key=lambda s: s.id),
                changed_at=now,
            )
        )
    _relate_addons(products)
    for product in products:
        product.fingerprint = product.compute_fingerprint()
    return products


def _sorted_prices(prices: Sequence[SkuPrice]) -> tuple[SkuPrice, ...]:
    return tuple(sorted(prices, key=lambda p: (p.segment, p.duration, p.billing_cycle, p.currency)))


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
    prices = index_prices(partner_center.price_lines(market), started)
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
