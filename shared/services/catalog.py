"""A reseller's catalog: curation by its staff, and the public and customer views of it.

Reads go through `CatalogReader`, a per-process cache of each reseller's catalog joined with
its market's products. Every request validates the cache with two point reads (the reseller's
`~version` row, rewritten in the same transaction as every catalog change, and the market's
import stamp); a miss costs one partition query of the reseller's Catalog rows. The market's
products are cached once per process and import (one query per import, shared by every
reseller of the market). The reseller's profile (currency, default margin) is re-read at most
every `PROFILE_TTL` seconds.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from pydantic import AwareDatetime, Field, ValidationError

from shared.domain.catalog import (
    MARKET_STAMPS,
    CatalogEntry,
    CatalogSettings,
    CatalogState,
    CatalogVersion,
    Category,
    MarketStamp,
    MicrosoftSegment,
    OfferKey,
    OfferMarkup,
    PriceOverride,
    Product,
    ProductSku,
    Segment,
    SkuAvailability,
    SkuPrice,
    Term,
    builtin_segments,
)
from shared.domain.errors import (
    FieldError,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    ValidationFailed,
)
from shared.domain.identity import RESELLER_PARTITION, Command, Principal, Reseller
from shared.domain.model import Page, WireModel, expected_version, new_id
from shared.domain.pricing import (
    PriceBreakdown,
    breakdown,
    check_markup,
    implied_markup,
    round_money,
)
from shared.ports import CatalogStore, Clock, Repository
from shared.services.access import sees_cost

log = logging.getLogger(__name__)

PROFILE_TTL = timedelta(seconds=60)
MAX_PAGE = 1000

# --- Commands (reseller staff) ----------------------------------------------------------------


class CustomerPriceTarget(OfferKey):
    """A customer target price for one offer; stored as the mark-up it implies over cost."""

    price: Decimal = Field(ge=0, max_digits=14, decimal_places=4)


class CatalogEntryPut(Command):
    """How the reseller shows and prices one product (replaces what was there)."""

    visible: bool = True
    categories: list[str] = Field(default_factory=list, max_length=20)
    position: int = Field(0, ge=0, le=1_000_000, description="Order inside its categories.")
    segments: list[str] | None = Field(
        None,
        max_length=50,
        description="Segments that may buy it; null: every segment Microsoft sells it in.",
    )
    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=4000)
    features: list[str] = Field(default_factory=list, max_length=20)
    recommended_prices: list[PriceOverride] = Field(default_factory=list, max_length=200)
    markup_percent: Decimal | None = Field(
        None, description="Customer price = cost + this percent (else the reseller's default)."
    )
    customer_prices: list[CustomerPriceTarget] = Field(default_factory=list, max_length=200)
    below_cost: bool = Field(False, description="Allow customer prices below cost on purpose.")


class CategoriesPut(Command):
    """The reseller's categories, in display order (replaces the list)."""

    categories: list[Category] = Field(max_length=200)


class SegmentsPut(Command):
    """The reseller's segments; Microsoft's four are kept even when left out."""

    segments: list[Segment] = Field(max_length=50)


# --- Views ------------------------------------------------------------------------------------


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


class PublicOffer(WireModel):
    """One way to buy a product (SKU × term × billing cycle) with its recommended price."""

    sku_id: str
    sku_name: str
    catalog_item_id: str
    segment: str
    term: str
    billing_cycle: str
    currency: str
    recommended_price: Decimal | None = None


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


class StaffOffer(WireModel):
    """An offer's price breakdown for reseller staff: cost, recommended, customer, margin."""

    sku_id: str
    sku_name: str
    catalog_item_id: str
    term: str
    billing_cycle: str
    currency: str
    cost: Decimal
    recommended_price: Decimal
    customer_price: Decimal
    margin: Decimal
    margin_percent: Decimal | None
    markup_percent: Decimal | None


class CustomerOffer(WireModel):
    """An offer as the customer's own users see it: their price only."""

    sku_id: str
    sku_name: str
    catalog_item_id: str
    term: str
    billing_cycle: str
    currency: str
    price: Decimal


class CustomerProductStaff(WireModel):
    """A product a customer may buy, with each offer's price breakdown."""

    id: str
    name: str
    description: str
    features: list[str]
    categories: list[str]
    is_addon: bool
    addon_ids: list[str]
    offers: list[StaffOffer]


class CustomerProductPublic(WireModel):
    """A product a customer may buy, priced for that customer."""

    id: str
    name: str
    description: str
    features: list[str]
    categories: list[str]
    is_addon: bool
    addon_ids: list[str]
    offers: list[CustomerOffer]


class CustomerCatalogStaff(WireModel):
    """What one customer may buy, as reseller staff see it."""

    reseller: str
    customer_id: str
    segment: str
    currency: str
    categories: list[CategoryView]
    items: list[CustomerProductStaff]
    continuation_token: str | None = None


class CustomerCatalogPublic(WireModel):
    """What one customer may buy, as its own users see it."""

    reseller: str
    customer_id: str
    segment: str
    currency: str
    categories: list[CategoryView]
    items: list[CustomerProductPublic]
    continuation_token: str | None = None


class CatalogEntryView(WireModel):
    """A catalog entry as reseller staff edit it (its customer price rules included)."""

    product_id: str
    visible: bool
    categories: list[str]
    position: int
    segments: list[str] | None
    name: str | None
    description: str | None
    features: list[str]
    recommended_prices: list[PriceOverride]
    markup_percent: Decimal | None
    offer_markups: list[OfferMarkup]
    below_cost: bool
    updated_at: AwareDatetime


class CatalogProductRow(WireModel):
    """One product of the market with the reseller's entry for it (None: not curated)."""

    product_id: str
    title: str
    withdrawn: bool
    microsoft_segments: list[str]
    entry: CatalogEntryView | None = None


class CategoriesView(WireModel):
    """The reseller's categories, in order."""

    categories: list[CategoryView]


class SegmentsView(WireModel):
    """The reseller's segments."""

    segments: list[SegmentView]


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
    settings: CatalogSettings
    listings: tuple[Listing, ...]
    key: tuple[str | None, str | None]
    profile_read_at: datetime
    by_id: Mapping[str, Listing] = field(default_factory=dict)

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
) -> CatalogSnapshot:
    """Join a reseller's stored catalog with its market's products, in display order."""
    settings = state.settings or CatalogSettings(reseller=reseller.slug)
    known = {c.id for c in settings.categories}
    rank = settings.category_rank()
    names = {pid: p.title for pid, p in products.items()}
    entries = {e.product_id: e for e in state.entries}
    for pid, entry in entries.items():
        if pid in names and entry.name:
            names[pid] = entry.name
    listings: list[Listing] = []
    for entry in state.entries:
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
    ) -> None:
        self.store = store
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
        snap = build_snapshot(reseller, state, products, (state.version, key[1]), read_at)
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


def _offset(token: str | None) -> int:
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


def _token(offset: int) -> str:
    raw = json.dumps({"o": offset}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _page(
    items: Sequence[Listing], page_size: int, token: str | None
) -> tuple[list[Listing], str | None]:
    start = _offset(token)
    end = start + page_size
    return list(items[start:end]), (_token(end) if end < len(items) else None)


def _filter(
    snap: CatalogSnapshot, *, q: str | None, category: str | None, segment: str | None
) -> list[Listing]:
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
class _Offer:
    sku: ProductSku
    availability: SkuAvailability
    term: Term
    price: SkuPrice


def _offers(listing: Listing, segment: Segment, currency: str) -> Iterator[_Offer]:
    for sku in listing.product.skus:
        if sku.is_trial:
            continue
        availability = sku.availability(segment.base.value)
        if availability is None:
            continue
        for term in availability.terms:
            price = sku.price(segment.base.value, term.duration, term.billing_cycle, currency)
            if price is not None:
                yield _Offer(sku, availability, term, price)


def _recommended(listing: Listing, offer: _Offer, currency: str) -> Decimal | None:
    override = listing.entry.recommended_override(
        offer.sku.id, offer.availability.segment, offer.term.duration, offer.term.billing_cycle
    )
    amount = override if override is not None else offer.price.erp
    return None if amount is None else round_money(amount, currency)


def price_offer(
    listing: Listing, offer: _Offer, reseller: Reseller, currency: str
) -> PriceBreakdown:
    """Cost, recommended and customer price of one offer (default: cost + default margin)."""
    markup = listing.entry.markup_for(
        offer.sku.id, offer.availability.segment, offer.term.duration, offer.term.billing_cycle
    )
    recommended = _recommended(listing, offer, currency)
    cost = offer.price.cost
    return breakdown(
        cost,
        recommended if recommended is not None else cost,
        currency,
        reseller.default_margin_percent if markup is None else markup,
    )


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
                sku_id=o.sku.id,
                sku_name=o.sku.title,
                catalog_item_id=o.availability.catalog_item_id,
                segment=seg.id,
                term=o.term.duration,
                billing_cycle=o.term.billing_cycle,
                currency=currency,
                recommended_price=_recommended(listing, o, currency),
            )
            for o in _offers(listing, seg, currency)
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
    items, token = _page(
        _filter(snap, q=q, category=category, segment=segment), page_size, continuation_token
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
) -> CustomerCatalogStaff | CustomerCatalogPublic:
    """What one customer may buy, priced: staff see the breakdown, customer users their price."""
    segment = snap.settings.segment(segment_id)
    if segment is None:
        # A customer's segment the reseller has since removed buys as commercial.
        log.warning(
            "segment %r of customer %s is not defined; using commercial", segment_id, customer_id
        )
        segment = snap.settings.segment(MicrosoftSegment.COMMERCIAL.value)
        assert segment is not None
    items, token = _page(
        _filter(snap, q=q, category=category, segment=segment.id), page_size, continuation_token
    )
    currency = snap.currency
    staff = sees_cost(principal)
    rows = []
    for li in items:
        offers = [
            (o, price_offer(li, o, snap.reseller, currency)) for o in _offers(li, segment, currency)
        ]
        common = {
            "id": li.product.id,
            "name": li.name,
            "description": li.description,
            "features": list(li.features),
            "categories": list(li.categories),
            "is_addon": li.product.is_addon,
            "addon_ids": [
                a
                for a in li.product.addon_product_ids
                if a in snap.by_id and segment.id in snap.by_id[a].segments
            ],
        }
        rows.append((common, offers))
    head = {
        "reseller": snap.reseller.slug,
        "customer_id": customer_id,
        "segment": segment.id,
        "currency": currency,
        "categories": _categories(snap),
        "continuation_token": token,
    }
    if staff:
        staff_items = [
            CustomerProductStaff(
                **common,
                offers=[
                    StaffOffer(
                        **_offer_fields(o, currency),
                        cost=b.cost,
                        recommended_price=b.recommended_price,
                        customer_price=b.customer_price,
                        margin=b.margin,
                        margin_percent=b.margin_percent,
                        markup_percent=b.markup_percent,
                    )
                    for o, b in offers
                ],
            )
            for common, offers in rows
        ]
        return CustomerCatalogStaff(**head, items=staff_items)
    public_items = [
        CustomerProductPublic(
            **common,
            offers=[
                CustomerOffer(**_offer_fields(o, currency), price=b.customer_price)
                for o, b in offers
            ],
        )
        for common, offers in rows
    ]
    return CustomerCatalogPublic(**head, items=public_items)


def _offer_fields(o: _Offer, currency: str) -> dict[str, str]:
    return {
        "sku_id": o.sku.id,
        "sku_name": o.sku.title,
        "catalog_item_id": o.availability.catalog_item_id,
        "term": o.term.duration,
        "billing_cycle": o.term.billing_cycle,
        "currency": currency,
    }


# --- Editing ----------------------------------------------------------------------------------


def _settings_or_default(store: CatalogStore, slug: str) -> CatalogSettings:
    return store.find_settings(slug) or CatalogSettings(reseller=slug)


def _version(slug: str, clock: Clock) -> CatalogVersion:
    return CatalogVersion(reseller=slug, version=new_id(), changed_at=clock.now())


def _check_etag(current_etag: str | None, etag: str | None) -> None:
    """If-Match rules: required to change what exists, refused for what does not."""
    if current_etag is not None and etag is None:
        raise PreconditionRequired("this change needs an If-Match header with the ETag")
    if current_etag is None and etag is not None:
        raise PreconditionFailed("If-Match does not match: there is nothing to change yet")


def _validated_settings(**values: object) -> CatalogSettings:
    try:
        return CatalogSettings.model_validate(values)
    except ValidationError as exc:
        errors = [
            FieldError(
                ".".join(str(p) for p in err["loc"]) or "body",
                str(err["msg"]).removeprefix("Value error, "),
            )
            for err in exc.errors(include_url=False)
        ]
        raise ValidationFailed(errors) from exc


def get_settings(store: CatalogStore, slug: str) -> CatalogSettings:
    """The reseller's categories and segments (defaults when it never set any)."""
    return _settings_or_default(store, slug)


def put_categories(
    store: CatalogStore, clock: Clock, slug: str, etag: str | None, command: CategoriesPut
) -> CatalogSettings:
    """Replace the reseller's categories (If-Match the settings' ETag once they exist)."""
    current = store.find_settings(slug)
    _check_etag(current.etag if current else None, etag)
    now = clock.now()
    settings = _validated_settings(
        reseller=slug,
        categories=command.categories,
        segments=current.segments if current else builtin_segments(),
        created_at=current.created_at if current else now,
        updated_at=now,
    )
    settings.etag = expected_version(current.etag if current else None, etag)
    return store.save_settings(settings, _version(slug, clock))


def put_segments(
    store: CatalogStore, clock: Clock, slug: str, etag: str | None, command: SegmentsPut
) -> CatalogSettings:
    """Replace the reseller's segments; Microsoft's four stay (they may be renamed)."""
    current = store.find_settings(slug)
    _check_etag(current.etag if current else None, etag)
    given = {s.id for s in command.segments}
    segments = [*(b for b in builtin_segments() if b.id not in given), *command.segments]
    order = {b.id: i for i, b in enumerate(builtin_segments())}
    segments.sort(key=lambda s: order.get(s.id, len(order)))
    now = clock.now()
    settings = _validated_settings(
        reseller=slug,
        categories=current.categories if current else [],
        segments=segments,
        created_at=current.created_at if current else now,
        updated_at=now,
    )
    settings.etag = expected_version(current.etag if current else None, etag)
    return store.save_settings(settings, _version(slug, clock))


def _offer_cost(product: Product, key: OfferKey, currency: str) -> SkuPrice | None:
    sku = next((s for s in product.skus if s.id == key.sku_id and not s.is_trial), None)
    if sku is None:
        return None
    availability = sku.availability(key.segment.value)
    if availability is None or Term(duration=key.term, billing_cycle=key.billing_cycle) not in (
        availability.terms
    ):
        return None
    return sku.price(key.segment.value, key.term, key.billing_cycle, currency)


def put_entry(
    store: CatalogStore,
    products: Repository[Product],
    resellers: Repository[Reseller],
    clock: Clock,
    slug: str,
    product_id: str,
    etag: str | None,
    command: CatalogEntryPut,
) -> CatalogEntry:
    """Create or replace the reseller's entry for a product (If-Match once it exists)."""
    reseller = resellers.get(RESELLER_PARTITION, slug)
    currency = reseller.currency
    pid = product_id.upper()
    product = products.find(reseller.country, pid)
    if product is None:
        raise NotFound(f"there is no product {product_id!r} in market {reseller.country}")
    settings = _settings_or_default(store, slug)
    errors: list[FieldError] = []
    known_categories = {c.id for c in settings.categories}
    for i, c in enumerate(command.categories):
        if c not in known_categories:
            errors.append(FieldError(f"categories.{i}", f"there is no category {c!r}"))
    for i, s in enumerate(command.segments or []):
        if settings.segment(s) is None:
            errors.append(FieldError(f"segments.{i}", f"there is no segment {s!r}"))
    overrides: list[PriceOverride] = []
    for i, o in enumerate(command.recommended_prices):
        if _offer_cost(product, o, currency) is None:
            errors.append(FieldError(f"recommendedPrices.{i}", "the product has no such offer"))
        else:
            overrides.append(o.model_copy(update={"amount": round_money(o.amount, currency)}))
    markups: list[OfferMarkup] = []
    for i, t in enumerate(command.customer_prices):
        line = _offer_cost(product, t, currency)
        if line is None:
            errors.append(FieldError(f"customerPrices.{i}", "the product has no such offer"))
            continue
        markup = implied_markup(round_money(t.price, currency), line.cost)
        try:
            check_markup(markup, below_cost=command.below_cost, field=f"customerPrices.{i}.price")
        except ValidationFailed as exc:
            errors.extend(exc.errors)
            continue
        markups.append(
            OfferMarkup(
                sku_id=t.sku_id,
                segment=t.segment,
                term=t.term,
                billing_cycle=t.billing_cycle,
                markup_percent=markup,
            )
        )
    markup_percent = command.markup_percent
    if markup_percent is not None:
        try:
            markup_percent = check_markup(
                markup_percent, below_cost=command.below_cost, field="markupPercent"
            )
        except ValidationFailed as exc:
            errors.extend(exc.errors)
    if errors:
        raise ValidationFailed(errors)
    current = store.find_entry(slug, pid)
    _check_etag(current.etag if current else None, etag)
    now = clock.now()
    entry = CatalogEntry(
        reseller=slug,
        product_id=pid,
        visible=command.visible,
        categories=list(dict.fromkeys(command.categories)),
        position=command.position,
        segments=None if command.segments is None else list(dict.fromkeys(command.segments)),
        name=command.name,
        description=command.description,
        features=[f.strip() for f in command.features if f.strip()],
        recommended_prices=overrides,
        markup_percent=markup_percent,
        offer_markups=markups,
        below_cost=command.below_cost,
        created_at=current.created_at if current else now,
        updated_at=now,
    )
    entry.etag = expected_version(current.etag if current else None, etag)
    return store.save_entry(entry, _version(slug, clock))


def get_entry(store: CatalogStore, slug: str, product_id: str) -> CatalogEntry:
    """The reseller's entry for a product (NotFound when it has none)."""
    entry = store.find_entry(slug, product_id.upper())
    if entry is None:
        raise NotFound("this product has no entry in the reseller's catalog")
    return entry


def entry_view(entry: CatalogEntry) -> CatalogEntryView:
    """An entry as staff see it."""
    return CatalogEntryView.model_validate(entry, from_attributes=True)


def catalog_products(
    reader: CatalogReader, slug: str, *, page_size: int, continuation_token: str | None
) -> Page[CatalogProductRow]:
    """Every product of the reseller's market with the reseller's entry, for curating."""
    snap = reader.snapshot(slug)
    market = snap.reseller.country
    products = reader.market_products(market, reader.import_id(market))
    entries = {e.product_id: e for e in reader.store.load(slug).entries}
    rows = [
        CatalogProductRow(
            product_id=p.id,
            title=p.title,
            withdrawn=p.withdrawn,
            microsoft_segments=sorted(p.segments),
            entry=entry_view(entries[p.id]) if p.id in entries else None,
        )
        for p in sorted(products.values(), key=lambda p: search_key(p.title))
    ]
    start = _offset(continuation_token)
    end = start + page_size
    return Page[CatalogProductRow](
        items=rows[start:end], continuation_token=_token(end) if end < len(rows) else None
    )


def categories_view(settings: CatalogSettings) -> CategoriesView:
    """The categories of a reseller's settings."""
    return CategoriesView(
        categories=[
            CategoryView.model_validate(c, from_attributes=True) for c in settings.categories
        ]
    )


def segments_view(settings: CatalogSettings) -> SegmentsView:
    """The segments of a reseller's settings."""
    return SegmentsView(
        segments=[SegmentView.model_validate(s, from_attributes=True) for s in settings.segments]
    )
