"""A reseller's catalog as it is read: the per-process cache, the snapshot, paging and offers.

Reads go through `CatalogReader`, a per-process cache of each reseller's catalog joined with
its market's products. Every request validates the cache with two point reads (the reseller's
`~version` row, rewritten in the same transaction as every catalog change, and the market's
import stamp); a miss costs one partition query of the reseller's Catalog rows. The market's
products are cached once per process and import (one query per import, shared by every
reseller of the market). The reseller's profile (currency, mark-ups) is re-read at most every
`PROFILE_TTL` seconds.

What is shown lives in `catalog_views`, what staff change in `catalog_editing`, and every price
comes from `pricing`, as it does for orders.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from shared.domain.catalog import (
    MARKET_STAMPS,
    CatalogEntry,
    CatalogSettings,
    CatalogState,
    MarketStamp,
    Product,
    ProductSku,
    Segment,
    SkuAvailability,
    SkuPrice,
    Term,
)
from shared.domain.errors import FieldError, NotFound, ValidationFailed
from shared.domain.identity import RESELLER_PARTITION, Reseller
from shared.domain.pricing import PricedLine, ResellerPricing
from shared.ports import CatalogStore, Clock, Repository
from shared.services.pricing import reseller_pricing

PROFILE_TTL = timedelta(seconds=60)
MAX_PAGE = 1000

# --- Snapshot and cache -----------------------------------------------------------------------


def search_key(text: str) -> str:
    """Text for case- and accent-insensitive matching ("Účet" and "ucet" match)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


@dataclass(frozen=True)
class Listing:
    """A visible product of a reseller's catalog, joined with what Microsoft says about it."""

    entry: CatalogEntry
    product: Product
    name: str
    description: str
    features: tuple[str, ...]
    search: str
    segments: frozenset[str]
    categories: tuple[str, ...]

    @property
    def listed(self) -> bool:
        """Shown in the catalog's lists (products outside every category are not)."""
        return bool(self.categories)


@dataclass(frozen=True)
class CatalogSnapshot:
    """One reseller's catalog at one version, ready to filter and render."""

    reseller: Reseller
    pricing: ResellerPricing
    settings: CatalogSettings
    listings: tuple[Listing, ...]
    key: tuple[str | None, str | None]
    profile_read_at: datetime
    by_id: Mapping[str, Listing] = field(default_factory=dict)
    # Each offer priced once per snapshot (its inputs — entry, price sheet, the reseller's
    # pricing — are fixed for the snapshot's life): (product, sku, catalog item, term, cycle).
    priced: dict[tuple[str, str, str, str, str], PricedLine] = field(default_factory=dict)

    @property
    def currency(self) -> str:
        """The reseller's currency."""
        return self.reseller.currency


def _features(product: Product, names: Mapping[str, str]) -> tuple[str, ...]:
    found: list[str] = []
    if product.has_trial:
        found.append("Free trial available")
    caps = {s.maximum_quantity for s in product.skus if s.small_business and s.maximum_quantity}
    if caps:
        found.append(f"Up to {max(caps)} licences per organisation")
    if product.is_addon and product.base_product_ids:
        bases = [names[b] for b in product.base_product_ids if b in names]
        if bases:
            found.append("Add-on to " + ", ".join(sorted(bases)))
    terms = {
        t.duration
        for s in product.skus
        if not s.is_trial
        for a in s.availabilities
        for t in a.terms
    }
    labels = {"P1M": "monthly", "P1Y": "annual", "P3Y": "three-year"}
    if terms:
        found.append(
            "Commitment: " + ", ".join(labels.get(t, t) for t in sorted(terms, key=_term_order))
        )
    return tuple(found)


def _term_order(term: str) -> tuple[int, int]:
    unit = term[-1:]
    try:
        n = int(term[1:-1])
    except ValueError:
        n = 0
    return (1 if unit == "Y" else 0, n)


def _effective_segments(
    entry: CatalogEntry, product: Product, settings: CatalogSettings
) -> frozenset[str]:
    sold = product.segments
    wanted = [s.id for s in settings.segments] if entry.segments is None else entry.segments
    return frozenset(
        s for s in wanted if (seg := settings.segment(s)) is not None and seg.base.value in sold
    )


def build_snapshot(
    reseller: Reseller,
    state: CatalogState,
    products: Mapping[str, Product],
    key: tuple[str | None, str | None],
    read_at: datetime,
    distributor_markup_percent: Decimal = Decimal(0),
) -> CatalogSnapshot:
    """Join a reseller's stored catalog with its market's products, in display order."""
    settings = state.settings or CatalogSettings(reseller=reseller.slug)
    stored: list[CatalogEntry] = [e.in_currency(reseller.currency) for e in state.entries]
    known = {c.id for c in settings.categories}
    rank = settings.category_rank()
    names = {pid: p.title for pid, p in products.items()}
    entries = {e.product_id: e for e in stored}
    for pid, entry in entries.items():
        if pid in names and entry.name:
            names[pid] = entry.name
    listings: list[Listing] = []
    for entry in stored:
        product = products.get(entry.product_id)
        if product is None or product.withdrawn or not entry.visible:
            continue
        name = entry.name or product.title
        listings.append(
            Listing(
                entry=entry,
                product=product,
                name=name,
                description=entry.description or product.description,
                features=tuple(entry.features) or _features(product, names),
                search=search_key(name),
                segments=_effective_segments(entry, product, settings),
                categories=tuple(
                    sorted((c for c in entry.categories if c in known), key=lambda c: rank[c])
                ),
            )
        )
    listings.sort(
        key=lambda li: (
            min((rank[c] for c in li.categories), default=(1 << 30, 0)),
            li.entry.position,
            li.search,
        )
    )
    return CatalogSnapshot(
        reseller=reseller,
        pricing=reseller_pricing(reseller, distributor_markup_percent),
        settings=settings,
        listings=tuple(listings),
        key=key,
        profile_read_at=read_at,
        by_id={li.product.id: li for li in listings},
    )


class CatalogReader:
    """Per-process cache of each reseller's catalog (see the module docstring)."""

    def __init__(
        self,
        store: CatalogStore,
        products: Repository[Product],
        stamps: Repository[MarketStamp],
        resellers: Repository[Reseller],
        clock: Clock,
        distributor_markup_percent: Decimal = Decimal(0),
    ) -> None:
        self.store = store
        self.distributor_markup_percent = distributor_markup_percent
        self.products = products
        self.stamps = stamps
        self.resellers = resellers
        self.clock = clock
        self._lock = threading.Lock()
        self._snapshots: dict[str, CatalogSnapshot] = {}
        self._markets: dict[str, tuple[str | None, dict[str, Product]]] = {}

    def _reseller(self, slug: str, now: datetime) -> tuple[Reseller, datetime]:
        cached = self._snapshots.get(slug)
        if cached is not None and now - cached.profile_read_at < PROFILE_TTL:
            return cached.reseller, cached.profile_read_at
        try:
            return self.resellers.get(RESELLER_PARTITION, slug), now
        except NotFound as exc:
            raise NotFound(f"there is no reseller {slug!r}") from exc

    def market_products(self, market: str, import_id: str | None) -> dict[str, Product]:
        """The market's products as of `import_id` (one query when the import changed)."""
        cached = self._markets.get(market)
        if cached is not None and cached[0] == import_id:
            return cached[1]
        found: dict[str, Product] = {}
        token: str | None = None
        while True:
            page = self.products.list(market, page_size=MAX_PAGE, continuation_token=token)
            found.update((p.id, p) for p in page.items)
            token = page.continuation_token
            if token is None:
                break
        with self._lock:
            self._markets[market] = (import_id, found)
        return found

    def import_id(self, market: str) -> str | None:
        """The market's current import stamp (one point read)."""
        stamp = self.stamps.find(MARKET_STAMPS, market)
        return stamp.import_id if stamp else None

    def snapshot(self, slug: str) -> CatalogSnapshot:
        """The reseller's catalog, from the cache when nothing changed since it was built."""
        now = self.clock.now()
        reseller, read_at = self._reseller(slug, now)
        key = (self.store.version(slug), self.import_id(reseller.country))
        cached = self._snapshots.get(slug)
        if cached is not None and cached.key == key and cached.profile_read_at == read_at:
            return cached
        state = self.store.load(slug)
        products = self.market_products(reseller.country, key[1])
        # The version read with the rows wins: a change between the two reads is then seen
        # as a miss on the next request instead of being cached under the newer version.
        snap = build_snapshot(
            reseller,
            state,
            products,
            (state.version, key[1]),
            read_at,
            self.distributor_markup_percent,
        )
        with self._lock:
            self._snapshots[slug] = snap
        return snap

    def forget(self, slug: str | None = None) -> None:
        """Drop cached catalogs (one reseller's, or all)."""
        with self._lock:
            if slug is None:
                self._snapshots.clear()
                self._markets.clear()
            else:
                self._snapshots.pop(slug, None)


# --- Paging and filtering ---------------------------------------------------------------------


def offset(token: str | None) -> int:
    """The position a continuation token names (ValidationFailed for a forged one)."""
    if not token:
        return 0
    try:
        value = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        value = None
    if not isinstance(value, dict) or not isinstance(value.get("o"), int) or value["o"] < 0:
        raise ValidationFailed([FieldError("continuationToken", "is not a valid token")])
    offset: int = value["o"]
    return offset


def token(offset: int) -> str:
    """The continuation token of a position in a list."""
    raw = json.dumps({"o": offset}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def page(
    items: Sequence[Listing], page_size: int, continuation_token: str | None
) -> tuple[list[Listing], str | None]:
    """One page of listings and the token of the next (None on the last page)."""
    start = offset(continuation_token)
    end = start + page_size
    return list(items[start:end]), (token(end) if end < len(items) else None)


def filter_listings(
    snap: CatalogSnapshot, *, q: str | None, category: str | None, segment: str | None
) -> list[Listing]:
    """The listed products matching a search, a category (and children) and a segment."""
    needle = search_key(q.strip()) if q and q.strip() else None
    wanted = snap.settings.category_ids(category) if category else None
    return [
        li
        for li in snap.listings
        if li.listed
        and (needle is None or needle in li.search)
        and (wanted is None or not wanted.isdisjoint(li.categories))
        and (segment is None or segment in li.segments)
    ]


# --- Offers and prices ------------------------------------------------------------------------


@dataclass(frozen=True)
class Offer:
    """One way to buy a listed product: a SKU's availability, term and price-sheet line."""

    sku: ProductSku
    availability: SkuAvailability
    term: Term
    price: SkuPrice


def listing_offers(listing: Listing, segment: Segment, currency: str) -> Iterator[Offer]:
    """The paid offers of a listing for a segment, priced in `currency` by the price sheet."""
    for sku in listing.product.skus:
        if sku.is_trial:
            continue
        availability = sku.availability(segment.base.value)
        if availability is None:
            continue
        for term in availability.terms:
            price = sku.price(segment.base.value, term.duration, term.billing_cycle, currency)
            if price is not None:
                yield Offer(sku, availability, term, price)
