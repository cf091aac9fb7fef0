"""The catalog: Microsoft's products per market (imported) and each reseller's curation of them.

Two halves:

- `Product` (table `Products`, one row per market and product): what Partner Center sells in a
  market, with SKUs, availabilities per segment, terms × billing cycles, add-on relations and,
  from the price sheet, the partner cost and Microsoft's recommended retail price (ERP) per
  segment, term, billing cycle and currency. Refreshed by the import; a product Microsoft no
  longer lists is marked `withdrawn`, never deleted (orders point at it).
- `CatalogSettings` and `CatalogEntry` (table `Catalog`, one partition per reseller): the
  reseller's categories and segments, and per product whether and where it is shown, to which
  segments it is sold, its texts, recommended price overrides and customer price rules.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.domain.model import Record, Timestamped, WireModel
from shared.domain.money import Money, legacy_amount
from shared.domain.pricing import OfferOverrides

SLUG_ID = r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$"
MARKET_PATTERN = r"^[A-Z]{2}$"
# Row keys of the reseller-wide rows of a Catalog partition; product ids never start with "~".
SETTINGS_ROW = "~settings"
VERSION_ROW = "~version"
# PartitionKey of the market stamps in the CatalogVersions table.
MARKET_STAMPS = "market"
TERM_PATTERN = r"^P\d+[MY]$"
BILLING_PATTERN = r"^[a-z]{3,20}$"


class MicrosoftSegment(StrEnum):
    """The segments Partner Center sells in (availabilities are per segment)."""

    COMMERCIAL = "commercial"
    EDUCATION = "education"
    GOVERNMENT = "government"
    NONPROFIT = "nonprofit"


# --- Products (imported from Partner Center) -------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Term(_Frozen):
    """A commitment term with its billing cycle, as an availability offers it."""

    duration: str  # ISO 8601: P1M, P1Y, P3Y
    billing_cycle: str  # monthly, annual, triennial, none (trials)


class SkuAvailability(_Frozen):
    """One purchasable form of a SKU in one Microsoft segment."""

    id: str
    catalog_item_id: str  # product:sku:availability, what a cart line names
    segment: str
    terms: tuple[Term, ...] = ()


class SkuPrice(_Frozen):
    """One line of the price sheet: per unit and billing period, in one currency."""

    segment: str
    duration: str
    billing_cycle: str
    currency: str
    cost: Decimal  # Microsoft's price to the distributor (Partner Center's UnitPrice)
    erp: Decimal | None = None  # Microsoft's estimated retail price
    effective_date: date | None = None  # the price sheet row's EffectiveStartDate


class ProductSku(_Frozen):
    """A SKU of a product with its limits, relations, availabilities and prices."""

    id: str
    title: str
    description: str = ""
    part_number: str | None = None
    unit_type: str | None = None
    minimum_quantity: int = 1
    maximum_quantity: int | None = None
    is_trial: bool = False
    is_addon: bool = False
    small_business: bool = False
    prerequisites: tuple[str, ...] = ()  # product:sku of the SKUs an add-on needs
    upgrade_targets: tuple[str, ...] = ()
    availabilities: tuple[SkuAvailability, ...] = ()
    prices: tuple[SkuPrice, ...] = ()

    def availability(self, segment: str) -> SkuAvailability | None:
        """The availability of this SKU in a Microsoft segment, if it is sold there."""
        return next((a for a in self.availabilities if a.segment == segment), None)

    def price(
        self, segment: str, duration: str, billing_cycle: str, currency: str
    ) -> SkuPrice | None:
        """The price sheet line for one offer, if there is one."""
        return next(
            (
                p
                for p in self.prices
                if p.segment == segment
                and p.duration == duration
                and p.billing_cycle == billing_cycle
                and p.currency == currency
            ),
            None,
        )


class OfferedProduct(_Frozen):
    """A product Partner Center lists in a market's catalog view (before its SKUs are read)."""

    id: str  # as Partner Center spells it
    title: str | None = None
    description: str | None = None
    product_type: str | None = None


class PriceLine(_Frozen):
    """One line of Microsoft's licence-based price sheet, in our words."""

    product_id: str  # upper-case
    sku_id: str
    segment: str  # lower-case; "commercial" when the sheet names none
    duration: str | None  # upper-case ISO 8601 (P1M, P1Y); None when the line has no term
    billing_cycle: str | None  # lower-case (monthly, annual); None when the line has none
    currency: str  # upper-case
    cost: Decimal  # UnitPrice
    erp: Decimal | None = None
    tier_min: Decimal = Decimal(0)  # tiered lines repeat an offer per volume band
    effective_from: AwareDatetime | None = None
    effective_to: AwareDatetime | None = None


class Product(Record):
    """A product of Partner Center's catalog in one market (table `Products`)."""

    market: str = Field(pattern=MARKET_PATTERN)
    id: str = Field(min_length=1, max_length=64)
    title: str
    description: str = ""
    product_type: str | None = None
    skus: list[ProductSku] = Field(default_factory=list)
    addon_product_ids: list[str] = Field(default_factory=list)  # products that add on to it
    base_product_ids: list[str] = Field(default_factory=list)  # products it adds on to
    fingerprint: str = ""
    withdrawn: bool = False
    withdrawn_at: AwareDatetime | None = None
    changed_at: AwareDatetime

    @property
    def segments(self) -> frozenset[str]:
        """The Microsoft segments any paid SKU of this product is sold in."""
        return frozenset(a.segment for s in self.skus if not s.is_trial for a in s.availabilities)

    @property
    def is_addon(self) -> bool:
        """Whether every paid SKU is an add-on (needs a base subscription)."""
        paid = [s for s in self.skus if not s.is_trial]
        return bool(paid) and all(s.is_addon for s in paid)

    @property
    def has_trial(self) -> bool:
        """Whether Microsoft offers a free trial of it."""
        return any(s.is_trial for s in self.skus)

    def content(self) -> dict[str, Any]:
        """What Partner Center said about the product (no bookkeeping fields)."""
        return self.model_dump(
            mode="json",
            include={
                "market",
                "id",
                "title",
                "description",
                "product_type",
                "skus",
                "addon_product_ids",
                "base_product_ids",
            },
        )

    def compute_fingerprint(self) -> str:
        """A hash of the content: the same fingerprint means nothing to write."""
        raw = json.dumps(self.content(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(raw.encode()).hexdigest()


class MarketStamp(Record):
    """The last import of a market that changed something (table `CatalogVersions`).

    `import_id` changes whenever the stored products change; caches compare it.
    `content_hash` covers every product's fingerprint and withdrawn flag, so an import that
    crashed between writing products and this stamp is corrected by the next one.
    """

    market: str = Field(pattern=MARKET_PATTERN)
    import_id: str
    content_hash: str
    products: int = 0
    withdrawn: int = 0
    imported_at: AwareDatetime


# --- A reseller's catalog ----------------------------------------------------------------------


class Category(WireModel):
    """A category of the reseller's catalog; order is the list's order."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=SLUG_ID, description="Stable id (lowercase, digits, dashes).")
    name: str = Field(min_length=1, max_length=100)
    parent_id: str | None = Field(
        None, pattern=SLUG_ID, description="A top-level category (one level of nesting)."
    )


class Segment(WireModel):
    """A customer segment: Microsoft's four, plus the reseller's own built on one of them."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=SLUG_ID)
    name: str = Field(min_length=1, max_length=100)
    base: MicrosoftSegment = Field(
        description="Whose offers and prices it buys (its Microsoft segment)."
    )


def builtin_segments() -> list[Segment]:
    """Microsoft's segments, always present in every reseller's catalog."""
    names = {
        MicrosoftSegment.COMMERCIAL: "Commercial",
        MicrosoftSegment.EDUCATION: "Education",
        MicrosoftSegment.GOVERNMENT: "Government",
        MicrosoftSegment.NONPROFIT: "Nonprofit",
    }
    return [Segment(id=s.value, name=names[s], base=s) for s in MicrosoftSegment]


def _unique(ids: list[str], what: str) -> None:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise ValueError(f"{what} {i!r} appears twice")
        seen.add(i)


class CatalogSettings(Timestamped):
    """A reseller's categories and segments (row `~settings` of its Catalog partition)."""

    reseller: str
    categories: list[Category] = Field(default_factory=list, max_length=200)
    segments: list[Segment] = Field(default_factory=builtin_segments, max_length=50)

    @model_validator(mode="after")
    def _consistent(self) -> CatalogSettings:
        _unique([c.id for c in self.categories], "category")
        top = {c.id for c in self.categories if c.parent_id is None}
        for c in self.categories:
            if c.parent_id is not None and c.parent_id not in top:
                raise ValueError(
                    f"category {c.id!r}: parent {c.parent_id!r} is not a top-level category"
                )
        _unique([s.id for s in self.segments], "segment")
        for builtin in MicrosoftSegment:
            seg = next((s for s in self.segments if s.id == builtin.value), None)
            if seg is None or seg.base is not builtin:
                raise ValueError(f"segment {builtin.value!r} is Microsoft's and must stay")
        return self

    def segment(self, segment_id: str) -> Segment | None:
        """A segment by id."""
        return next((s for s in self.segments if s.id == segment_id), None)

    def category_ids(self, category_id: str) -> frozenset[str]:
        """A category and its children."""
        return frozenset(c.id for c in self.categories if category_id in (c.id, c.parent_id))

    def category_rank(self) -> dict[str, tuple[int, int]]:
        """(top-level position, position inside it) of each category, for ordering."""
        top = [c.id for c in self.categories if c.parent_id is None]
        rank: dict[str, tuple[int, int]] = {}
        for i, c in enumerate(self.categories):
            if c.parent_id is None:
                rank[c.id] = (top.index(c.id), -1)
            else:
                rank[c.id] = (top.index(c.parent_id), i)
        return rank


class OfferKey(WireModel):
    """One offer of a product: a SKU in a Microsoft segment, for a term and billing cycle."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sku_id: str = Field(min_length=1, max_length=64)
    segment: MicrosoftSegment = MicrosoftSegment.COMMERCIAL
    term: str = Field(pattern=TERM_PATTERN)
    billing_cycle: str = Field(pattern=BILLING_PATTERN)

    def matches(self, sku_id: str, segment: str, term: str, billing_cycle: str) -> bool:
        """Whether this key names that offer."""
        return (self.sku_id, self.segment.value, self.term, self.billing_cycle) == (
            sku_id,
            segment,
            term,
            billing_cycle,
        )


class PriceOverride(OfferKey):
    """The reseller's recommended retail price for one offer, in its currency."""

    price: Money

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: object) -> object:
        # Rows and bodies from before prices carried a currency: {"amount": "123.45"}.
        if isinstance(data, dict) and "amount" in data and "price" not in data:
            rest = {k: v for k, v in data.items() if k != "amount"}
            return {**rest, "price": legacy_amount(data["amount"])}
        return data


class PinnedPrice(OfferKey):
    """A customer price set by hand for one offer: kept as a price, whatever the cost does."""

    price: Money

    @field_validator("price", mode="before")
    @classmethod
    def _legacy(cls, value: object) -> object:
        # Bodies from before prices carried a currency: "price": "999.99".
        return legacy_amount(value)


class OfferMarkup(OfferKey):
    """A customer price rule for one offer: a mark-up over the reseller cost."""

    markup_percent: Decimal


class CatalogEntry(Timestamped):
    """How one reseller shows and prices one product (a row of its Catalog partition).

    Amounts carry their currency; rows written before they did read as `NO_CURRENCY` and the
    service adopts the reseller's currency with `in_currency` (safe: a reseller's currency may
    not change while priced entries exist). `offer_markups` of old rows came from customer
    target prices stored as the mark-up they implied; they stay mark-ups.
    """

    reseller: str
    product_id: str = Field(min_length=1, max_length=64)
    visible: bool = True
    categories: list[str] = Field(default_factory=list)
    position: int = 0
    # None: every segment whose Microsoft segment the product is sold in.
    segments: list[str] | None = None
    name: str | None = None
    description: str | None = None
    features: list[str] = Field(default_factory=list)
    recommended_prices: list[PriceOverride] = Field(default_factory=list)
    markup_percent: Decimal | None = None
    offer_markups: list[OfferMarkup] = Field(default_factory=list)
    pinned_prices: list[PinnedPrice] = Field(default_factory=list)
    below_cost: bool = False

    @property
    def priced(self) -> bool:
        """Whether the entry sets any price or mark-up (tied to the reseller's currency)."""
        return bool(
            self.recommended_prices
            or self.markup_percent is not None
            or self.offer_markups
            or self.pinned_prices
        )

    def in_currency(self, currency: str) -> CatalogEntry:
        """This entry with amounts stored without a currency read as `currency`."""
        update = {
            "recommended_prices": [
                o.model_copy(update={"price": o.price.in_currency(currency)})
                for o in self.recommended_prices
            ],
            "pinned_prices": [
                p.model_copy(update={"price": p.price.in_currency(currency)})
                for p in self.pinned_prices
            ],
        }
        entry = self.model_copy(update=update)
        entry.etag = self.etag
        return entry

    def overrides_for(
        self, sku_id: str, segment: str, term: str, billing_cycle: str
    ) -> OfferOverrides:
        """What this entry says about one offer's prices."""
        key = (sku_id, segment, term, billing_cycle)
        recommended = next((o for o in self.recommended_prices if o.matches(*key)), None)
        pinned = next((p for p in self.pinned_prices if p.matches(*key)), None)
        markup = next((m for m in self.offer_markups if m.matches(*key)), None)
        return OfferOverrides(
            recommended_price=recommended.price if recommended else None,
            pinned_price=pinned.price if pinned else None,
            markup_percent=markup.markup_percent if markup else self.markup_percent,
        )


class CatalogVersion(Record):
    """Row `~version` of a reseller's Catalog partition: rewritten with every catalog change."""

    reseller: str
    version: str
    changed_at: AwareDatetime


class CatalogState(BaseModel):
    """Everything stored of one reseller's catalog, as one partition query returns it."""

    reseller: str
    settings: CatalogSettings | None = None
    entries: list[CatalogEntry] = Field(default_factory=list)
    version: str | None = None
