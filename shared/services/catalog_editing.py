"""Curating a reseller's catalog: categories, segments and each product's entry and prices.

Every change is one transaction of the changed row and the catalog's `~version` row (see
`adapters/tables/catalog.py`), so the readers' cache never misses it. Prices are kept as
entered: a recommended retail price or a pinned customer price is a `Money` in the reseller's
currency, a mark-up a percent over the reseller cost; `pricing.price_line` turns them into
prices, here as for orders.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TypeVar

from pydantic import AwareDatetime, Field, ValidationError

from shared.domain.catalog import (
    CatalogEntry,
    CatalogSettings,
    CatalogVersion,
    Category,
    OfferKey,
    OfferMarkup,
    PinnedPrice,
    PriceOverride,
    Product,
    Segment,
    builtin_segments,
)
from shared.domain.errors import (
    FieldError,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    ValidationFailed,
)
from shared.domain.identity import RESELLER_PARTITION, Command, Reseller
from shared.domain.model import Page, WireModel, expected_version, new_id
from shared.domain.pricing import check_markup
from shared.ports import CatalogStore, Clock, Repository
from shared.services.catalog import CatalogReader, offset, search_key, token
from shared.services.catalog_views import CategoryView, SegmentView
from shared.services.pricing import find_row

P = TypeVar("P", PriceOverride, PinnedPrice)

# --- Commands (reseller staff) ----------------------------------------------------------------


class CatalogEntryPut(Command):
    """How the reseller shows and prices one product (replaces what was there).

    Takes back everything its GET answers, so GET → edit → PUT loses nothing (`productId` and
    `updatedAt` are read-only: accepted and ignored).
    """

    product_id: str | None = Field(None, description="Read-only; must name this product.")
    updated_at: AwareDatetime | None = Field(None, description="Read-only; ignored.")
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
    recommended_prices: list[PriceOverride] = Field(
        default_factory=list,
        max_length=200,
        description="Recommended retail prices per offer (else Microsoft's ERP).",
    )
    markup_percent: Decimal | None = Field(
        None,
        description="Customer price = reseller cost × (1 + this %), else the reseller's default.",
    )
    offer_markups: list[OfferMarkup] = Field(
        default_factory=list, max_length=200, description="Mark-ups of single offers."
    )
    customer_prices: list[PinnedPrice] = Field(
        default_factory=list,
        max_length=200,
        description="Pinned customer prices per offer: kept as prices when costs change.",
    )
    below_cost: bool = Field(
        False,
        description="Allow negative mark-ups on purpose (a pinned price below cost is allowed "
        "and flagged `belowCost` in the priced catalog).",
    )


class CategoriesPut(Command):
    """The reseller's categories, in display order (replaces the list)."""

    categories: list[Category] = Field(max_length=200)


class SegmentsPut(Command):
    """The reseller's segments; Microsoft's four are kept even when left out."""

    segments: list[Segment] = Field(max_length=50)


# --- Views ------------------------------------------------------------------------------------


class CatalogEntryView(WireModel):
    """A catalog entry as reseller staff edit it (its price rules and pinned prices included)."""

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
    customer_prices: list[PinnedPrice]
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


def _offer_errors(
    product: Product, keys: list[OfferKey], field: str, currency: str
) -> list[FieldError]:
    return [
        FieldError(f"{field}.{i}", "the product has no such offer")
        for i, key in enumerate(keys)
        if find_row(product, key, currency) is None
    ]


def _prices(items: list[P], field: str, currency: str) -> tuple[list[FieldError], list[P]]:
    """Prices as stored: in the reseller's currency (a bare amount is taken as one), rounded."""
    errors: list[FieldError] = []
    kept: list[P] = []
    for i, item in enumerate(items):
        price = item.price.in_currency(currency)
        if price.currency != currency:
            errors.append(
                FieldError(f"{field}.{i}.price.currency", f"prices here are in {currency}")
            )
        elif price.amount < 0:
            errors.append(FieldError(f"{field}.{i}.price.amount", "must not be negative"))
        else:
            kept.append(item.model_copy(update={"price": price.rounded()}))
    return errors, kept


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
    if command.product_id is not None and command.product_id.upper() != pid:
        errors.append(FieldError("productId", "names another product than the address"))
    known_categories = {c.id for c in settings.categories}
    for i, c in enumerate(command.categories):
        if c not in known_categories:
            errors.append(FieldError(f"categories.{i}", f"there is no category {c!r}"))
    for i, s in enumerate(command.segments or []):
        if settings.segment(s) is None:
            errors.append(FieldError(f"segments.{i}", f"there is no segment {s!r}"))
    errors += _offer_errors(
        product, list(command.recommended_prices), "recommendedPrices", currency
    )
    errors += _offer_errors(product, list(command.customer_prices), "customerPrices", currency)
    errors += _offer_errors(product, list(command.offer_markups), "offerMarkups", currency)
    bad, recommended = _prices(command.recommended_prices, "recommendedPrices", currency)
    errors += bad
    bad, pinned = _prices(command.customer_prices, "customerPrices", currency)
    errors += bad
    markups = [
        (f"offerMarkups.{i}.markupPercent", m.markup_percent)
        for i, m in enumerate(command.offer_markups)
    ]
    if command.markup_percent is not None:
        markups.append(("markupPercent", command.markup_percent))
    for field, value in markups:
        try:
            check_markup(value, below_cost=command.below_cost, field=field)
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
        recommended_prices=recommended,
        markup_percent=command.markup_percent,
        offer_markups=list(command.offer_markups),
        pinned_prices=pinned,
        below_cost=command.below_cost,
        created_at=current.created_at if current else now,
        updated_at=now,
    )
    entry.etag = expected_version(current.etag if current else None, etag)
    return store.save_entry(entry, _version(slug, clock))


def get_entry(
    store: CatalogStore, resellers: Repository[Reseller], slug: str, product_id: str
) -> CatalogEntry:
    """The reseller's entry for a product, its amounts in the reseller's currency."""
    entry = store.find_entry(slug, product_id.upper())
    if entry is None:
        raise NotFound("this product has no entry in the reseller's catalog")
    return entry.in_currency(resellers.get(RESELLER_PARTITION, slug).currency)


def entry_view(entry: CatalogEntry) -> CatalogEntryView:
    """An entry as staff see it (and send it back)."""
    return CatalogEntryView.model_validate({**dict(entry), "customer_prices": entry.pinned_prices})


def priced_entries(store: CatalogStore, slug: str) -> list[str]:
    """Products whose catalog entry sets a price or mark-up (tied to currency and market)."""
    return [e.product_id for e in store.load(slug).entries if e.priced]


def catalog_products(
    reader: CatalogReader, slug: str, *, page_size: int, continuation_token: str | None
) -> Page[CatalogProductRow]:
    """Every product of the reseller's market with the reseller's entry, for curating."""
    snap = reader.snapshot(slug)
    market = snap.reseller.country
    products = reader.market_products(market, reader.import_id(market))
    entries = {e.product_id: e.in_currency(snap.currency) for e in reader.store.load(slug).entries}
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
    start = offset(continuation_token)
    end = start + page_size
    return Page[CatalogProductRow](
        items=rows[start:end], continuation_token=token(end) if end < len(rows) else None
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
