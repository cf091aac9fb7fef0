"""The simulated catalog and price sheet.

The assortment below is made up for local development and tests: the product names follow
Microsoft's public licence names, but every id, part number and price here is invented and
must not be taken for Microsoft's real catalog or price list.
"""

from __future__ import annotations

import base64
import csv
import functools
import hashlib
import io
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from .errors import ErrorCode, SimError

SEGMENTS = ("commercial", "education", "government", "nonprofit")
CURRENCIES = ("CZK", "EUR")
MARKETS = ("CZ",)
BUSINESS_SEAT_CAP = 300
TRIAL_SEATS = 25
# Microsoft (2021): a monthly term costs 20 % more than the annual term's monthly equivalent.
MONTHLY_TERM_PREMIUM = Decimal("1.20")
# Partner cost as a share of the recommended retail price (made up).
PARTNER_COST_SHARE = Decimal("0.90")
EUR_TO_CZK = Decimal("25.30")
NICKEL = Decimal("0.05")

# Periods per billing plan, to turn a monthly equivalent into the price of one billing period.
_MONTHS_PER_BILLING = {"monthly": 1, "annual": 12, "triennial": 36}


@dataclass(frozen=True, slots=True)
class Term:
    """A commitment term with its billing cycle, as an availability lists it."""

    duration: str
    billing_cycle: str


STANDARD_TERMS = (
    Term("P1M", "monthly"),
    Term("P1Y", "monthly"),
    Term("P1Y", "annual"),
)
LONG_TERMS = (
    *STANDARD_TERMS,
    Term("P3Y", "monthly"),
    Term("P3Y", "annual"),
    Term("P3Y", "triennial"),
)
SOFTWARE_TERMS = (Term("P1Y", "annual"), Term("P3Y", "annual"), Term("P3Y", "triennial"))
TRIAL_TERMS = (Term("P1M", "none"),)


@dataclass(frozen=True, slots=True)
class Availability:
    """One purchasable form of a SKU in a segment."""

    id: str
    product_id: str
    sku_id: str
    segment: str
    terms: tuple[Term, ...]

    @property
    def catalog_item_id(self) -> str:
        """The id a cart line uses: product:sku:availability."""
        return f"{self.product_id}:{self.sku_id}:{self.id}"

    def offers(self, duration: str, billing_cycle: str) -> bool:
        """Whether this availability sells that term with that billing cycle."""
        return Term(duration, billing_cycle) in self.terms


@functools.lru_cache(maxsize=4096)
def _product_sku_id(key: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sim-sku:{key}"))


@dataclass(slots=True)
class Sku:
    """A SKU of a product with its limits and relations."""

    product_id: str
    id: str
    title: str
    description: str
    part_number: str
    minimum_quantity: int
    maximum_quantity: int
    is_trial: bool
    is_addon: bool
    business_seat_cap: bool
    erp_month_eur: Decimal | None
    prerequisite_keys: tuple[str, ...] = ()
    upgrade_target_keys: tuple[str, ...] = ()
    availabilities: list[Availability] = field(default_factory=list)
    unit_type: str = "Licenses"

    @property
    def key(self) -> str:
        """product:sku, the form prerequisites and upgrade targets are written in."""
        return f"{self.product_id}:{self.id}"

    @property
    def product_sku_id(self) -> str:
        """A stable GUID standing in for the directory's SKU id (subscribed SKUs)."""
        return _product_sku_id(self.key)

    @property
    def supported_billing_cycles(self) -> list[str]:
        """Billing cycles over all availabilities, in a stable order."""
        seen: dict[str, None] = {}
        for availability in self.availabilities:
            for term in availability.terms:
                seen.setdefault(term.billing_cycle, None)
        return list(seen)

    def availability_for(self, segment: str) -> Availability | None:
        """The availability of this SKU in a segment, if it is sold there."""
        for availability in self.availabilities:
            if availability.segment == segment:
                return availability
        return None


@dataclass(slots=True)
class Product:
    """A product with its SKUs."""

    id: str
    title: str
    description: str
    product_type: str
    target_view: str
    skus: list[Sku] = field(default_factory=list)

    @property
    def segments(self) -> set[str]:
        """The segments any SKU of this product is sold in."""
        return {a.segment for s in self.skus for a in s.availabilities}


@dataclass(frozen=True, slots=True)
class _Spec:
    slug: str
    title: str
    part_number: str
    erp_month_eur: str | None
    terms: tuple[Term, ...] = STANDARD_TERMS
    segments: tuple[str, ...] = ("commercial",)
    business: bool = False
    trial: bool = False
    addon: bool = False
    prerequisites: tuple[str, ...] = ()
    upgrades: tuple[str, ...] = ()
    product_type: str = "OnlineServicesNCE"
    target_view: str = "OnlineServices"
    max_quantity: int = 10000
    unit_type: str = "Licenses"
    description: str = ""


_TEAMS_BASES = (
    "m365-business-basic",
    "m365-business-standard",
    "m365-business-premium",
    "m365-e3",
    "m365-e5",
    "m365-f3",
    "o365-e1",
    "o365-e3",
    "o365-e5",
    "teams-enterprise",
)
_COPILOT_BASES = (
    "m365-business-standard",
    "m365-business-premium",
    "m365-e3",
    "m365-e5",
    "o365-e1",
    "o365-e3",
    "o365-e5",
)
_EXCHANGE_BASES = (
    "exchange-p1",
    "m365-business-basic",
    "m365-business-standard",
    "m365-business-premium",
    "o365-e1",
)
_ALL = SEGMENTS
_CEN = ("commercial", "education", "nonprofit")

# The made-up assortment (see the module docstring). Prices are the recommended retail price
# per user per month on an annual term, in EUR, always a multiple of 0.05 so that the 20 %
# monthly-term premium stays exact in cents.
_SPECS: tuple[_Spec, ...] = (
    _Spec(
        "m365-business-basic",
        "Microsoft 365 Business Basic",
        "O365_BUSINESS_ESSENTIALS",
        "5.60",
        segments=_CEN,
        business=True,
        trial=True,
        max_quantity=BUSINESS_SEAT_CAP,
        upgrades=("m365-business-standard", "m365-business-premium"),
    ),
    _Spec(
        "m365-business-standard",
        "Microsoft 365 Business Standard",
        "O365_BUSINESS_PREMIUM",
        "11.70",
        segments=_CEN,
        business=True,
        trial=True,
        max_quantity=BUSINESS_SEAT_CAP,
        upgrades=("m365-business-premium",),
    ),
    _Spec(
        "m365-business-premium",
        "Microsoft 365 Business Premium",
        "SPB",
        "20.60",
        segments=_CEN,
        business=True,
        trial=True,
        max_quantity=BUSINESS_SEAT_CAP,
        upgrades=("m365-e5",),
    ),
    _Spec(
        "m365-apps-business",
        "Microsoft 365 Apps for business",
        "O365_BUSINESS",
        "9.80",
        business=True,
        max_quantity=BUSINESS_SEAT_CAP,
        upgrades=("m365-business-standard",),
    ),
    _Spec(
        "m365-apps-enterprise",
        "Microsoft 365 Apps for enterprise",
        "OFFICESUBSCRIPTION",
        "11.00",
        segments=_CEN,
    ),
    _Spec(
        "m365-e3",
        "Microsoft 365 E3",
        "SPE_E3",
        "33.00",
        terms=LONG_TERMS,
        segments=_ALL,
        trial=True,
        upgrades=("m365-e5",),
    ),
    _Spec("m365-e5", "Microsoft 365 E5", "SPE_E5", "54.80", terms=LONG_TERMS, segments=_ALL),
    _Spec(
        "m365-f3",
        "Microsoft 365 F3",
        "SPE_F1",
        "7.50",
        segments=("commercial", "government"),
        upgrades=("m365-e3",),
    ),
    _Spec(
        "m365-a3-faculty",
        "Microsoft 365 A3 for faculty",
        "M365EDU_A3_FACULTY",
        "3.00",
        segments=("education",),
    ),
    _Spec(
        "o365-e1",
        "Office 365 E1",
        "STANDARDPACK",
        "9.40",
        segments=_ALL,
        trial=True,
        upgrades=("o365-e3", "o365-e5", "m365-e3"),
    ),
    _Spec(
        "o365-e3",
        "Office 365 E3",
        "ENTERPRISEPACK",
        "21.60",
        terms=LONG_TERMS,
        segments=_ALL,
        trial=True,
        upgrades=("o365-e5", "m365-e3"),
    ),
    _Spec(
        "o365-e5",
        "Office 365 E5",
        "ENTERPRISEPREMIUM",
        "36.20",
        segments=_ALL,
        upgrades=("m365-e5",),
    ),
    _Spec(
        "exchange-p1",
        "Exchange Online (Plan 1)",
        "EXCHANGESTANDARD",
        "3.70",
        segments=_ALL,
        upgrades=("exchange-p2", "m365-business-basic"),
    ),
    _Spec("exchange-p2", "Exchange Online (Plan 2)", "EXCHANGEENTERPRISE", "7.50", segments=_ALL),
    _Spec(
        "exchange-archiving",
        "Exchange Online Archiving",
        "EXCHANGEARCHIVE_ADDON",
        "2.80",
        addon=True,
        prerequisites=_EXCHANGE_BASES,
    ),
    _Spec(
        "teams-essentials",
        "Microsoft Teams Essentials",
        "TEAMS_ESSENTIALS_AAD",
        "3.70",
        business=True,
        max_quantity=BUSINESS_SEAT_CAP,
        trial=True,
    ),
    _Spec(
        "teams-enterprise",
        "Microsoft Teams Enterprise",
        "Microsoft_Teams_Enterprise_New",
        "5.10",
        segments=_CEN,
    ),
    _Spec(
        "teams-phone",
        "Microsoft Teams Phone Standard",
        "MCOEV",
        "7.50",
        segments=_CEN,
        addon=True,
        prerequisites=_TEAMS_BASES,
    ),
    _Spec(
        "audio-conferencing",
        "Microsoft Teams Audio Conferencing with dial-out to USA/CAN",
        "MCOMEETADV",
        "3.70",
        addon=True,
        prerequisites=_TEAMS_BASES,
    ),
    _Spec(
        "powerbi-pro",
        "Power BI Pro",
        "POWER_BI_PRO",
        "13.10",
        segments=_CEN,
        trial=True,
        upgrades=("powerbi-ppu",),
    ),
    _Spec(
        "powerbi-ppu", "Power BI Premium Per User", "PBI_PREMIUM_PER_USER", "22.50", segments=_CEN
    ),
    _Spec("visio-plan-1", "Visio Plan 1", "VISIO_PLAN1_DEPT", "4.70", upgrades=("visio-plan-2",)),
    _Spec("visio-plan-2", "Visio Plan 2", "VISIOCLIENT", "14.00"),
    _Spec(
        "project-plan-1",
        "Project Plan 1",
        "PROJECT_PLAN1_DEPT",
        "9.40",
        upgrades=("project-plan-3",),
    ),
    _Spec("project-plan-3", "Project Plan 3", "PROJECTPROFESSIONAL", "28.10"),
    _Spec(
        "d365-bc-essentials",
        "Dynamics 365 Business Central Essentials",
        "DYN365_BUSCENTRAL_ESSENTIAL",
        "65.60",
        terms=LONG_TERMS,
        upgrades=("d365-bc-premium",),
    ),
    _Spec(
        "d365-bc-premium",
        "Dynamics 365 Business Central Premium",
        "DYN365_BUSCENTRAL_PREMIUM",
        "94.00",
        terms=LONG_TERMS,
    ),
    _Spec(
        "d365-sales-professional",
        "Dynamics 365 Sales Professional",
        "D365_SALES_PRO",
        "61.00",
        terms=LONG_TERMS,
        upgrades=("d365-sales-enterprise",),
    ),
    _Spec(
        "d365-sales-enterprise",
        "Dynamics 365 Sales Enterprise",
        "DYN365_ENTERPRISE_SALES",
        "98.40",
        terms=LONG_TERMS,
    ),
    _Spec(
        "windows-365-business",
        "Windows 365 Business 2 vCPU, 8 GB, 128 GB",
        "CPC_B_2C_8RAM_128GB",
        "37.50",
        business=True,
        max_quantity=BUSINESS_SEAT_CAP,
    ),
    _Spec(
        "windows-365-enterprise",
        "Windows 365 Enterprise 2 vCPU, 8 GB, 128 GB",
        "CPC_E_2C_8GB_128GB",
        "35.60",
    ),
    _Spec(
        "defender-business",
        "Microsoft Defender for Business",
        "MDE_SMB",
        "2.80",
        business=True,
        max_quantity=BUSINESS_SEAT_CAP,
    ),
    _Spec(
        "defender-endpoint-p2",
        "Microsoft Defender for Endpoint P2",
        "DEFENDER_ENDPOINT_P2",
        "4.90",
        segments=_ALL,
    ),
    _Spec(
        "defender-office-p1",
        "Microsoft Defender for Office 365 (Plan 1)",
        "ATP_ENTERPRISE",
        "1.90",
        segments=_ALL,
    ),
    _Spec("intune-p1", "Microsoft Intune Plan 1", "INTUNE_A", "7.50", segments=_ALL),
    _Spec(
        "entra-id-p1",
        "Microsoft Entra ID P1",
        "AAD_PREMIUM",
        "5.60",
        segments=_ALL,
        trial=True,
        upgrades=("entra-id-p2",),
    ),
    _Spec("entra-id-p2", "Microsoft Entra ID P2", "AAD_PREMIUM_P2", "8.40", segments=_ALL),
    _Spec(
        "copilot-m365",
        "Microsoft 365 Copilot",
        "Microsoft_365_Copilot",
        "28.10",
        terms=(Term("P1M", "monthly"), Term("P1Y", "monthly"), Term("P1Y", "annual")),
        addon=True,
        prerequisites=_COPILOT_BASES,
    ),
    _Spec(
        "business-premium-nonprofit",
        "Microsoft 365 Business Premium (Nonprofit Staff Pricing)",
        "SPB_NONPROFIT",
        "5.10",
        segments=("nonprofit",),
        business=True,
        max_quantity=BUSINESS_SEAT_CAP,
    ),
    _Spec(
        "windows-server-std",
        "Windows Server 2022 Standard - 16 Core License Pack",
        "WINSVR_STD_16C",
        "66.10",
        terms=SOFTWARE_TERMS,
        product_type="SoftwareSubscriptions",
        target_view="SoftwareSubscriptions",
        unit_type="Core packs",
    ),
    _Spec(
        "sql-server-std",
        "SQL Server 2022 Standard - 2 Core License Pack",
        "SQLSVR_STD_2C",
        "150.20",
        terms=SOFTWARE_TERMS,
        product_type="SoftwareSubscriptions",
        target_view="SoftwareSubscriptions",
        unit_type="Core packs",
    ),
    _Spec(
        "azure-plan",
        "Azure plan",
        "AZURE_PLAN",
        None,
        terms=(),
        product_type="Azure",
        target_view="Azure",
        max_quantity=1,
        unit_type="Usage-based",
    ),
)

_CANCELLATION_POLICIES: list[dict[str, object]] = [
    {
        "refunds": [
            {"type": "Full", "sequence": 1, "expiresAfter": "P1D"},
            {"type": "Partial", "sequence": 2, "expiresAfter": "P7D"},
        ]
    }
]
_TERM_TEXT = {"P1M": "One-Month", "P1Y": "One-Year", "P3Y": "Three-Year"}


def _short_id(*parts: str) -> str:
    """A stable id in Partner Center's style (CFQ7TTC0 + four characters)."""
    digest = hashlib.sha256(":".join(parts).encode()).digest()
    return "CFQ7TTC0" + base64.b32encode(digest).decode()[:4]


def round_to_nickel(amount: Decimal) -> Decimal:
    """Round to a multiple of 0.05 so that the 20 % premium stays exact in cents."""
    return ((amount / NICKEL).quantize(Decimal(1), rounding=ROUND_HALF_UP) * NICKEL).quantize(
        Decimal("0.01")
    )


@dataclass(frozen=True, slots=True)
class Price:
    """Unit price (partner cost) and ERP for one billing period, in one currency."""

    unit_price: Decimal
    erp: Decimal
    currency: str


class Catalog:
    """Lookups over the made-up catalog."""

    def __init__(self, specs: Iterable[_Spec] = _SPECS) -> None:
        self.products: dict[str, Product] = {}
        self._by_slug: dict[str, Sku] = {}
        self._skus: dict[str, Sku] = {}
        self._addon_bases: frozenset[str] | None = None
        self._items: dict[str, tuple[Product, Sku, Availability]] = {}
        specs = tuple(specs)
        for spec in specs:
            self._add(spec)
        # Relations are written with slugs; resolve them once every SKU exists.
        for spec in specs:
            sku = self._by_slug[spec.slug]
            sku.prerequisite_keys = tuple(self._by_slug[s].key for s in spec.prerequisites)
            sku.upgrade_target_keys = tuple(self._by_slug[s].key for s in spec.upgrades)

    def _add(self, spec: _Spec) -> None:
        product_id = "DZH318Z0BPS6" if spec.slug == "azure-plan" else _short_id(spec.slug)
        product = Product(
            id=product_id,
            title=spec.title,
            description=spec.description or f"{spec.title} (simulated catalog entry).",
            product_type=spec.product_type,
            target_view=spec.target_view,
        )
        paid = Sku(
            product_id=product_id,
            id="0001",
            title=spec.title,
            description=f"{spec.title}, per {spec.unit_type.lower().rstrip('s')}.",
            part_number=spec.part_number,
            minimum_quantity=1,
            maximum_quantity=spec.max_quantity,
            is_trial=False,
            is_addon=spec.addon,
            business_seat_cap=spec.business,
            erp_month_eur=Decimal(spec.erp_month_eur) if spec.erp_month_eur else None,
            unit_type=spec.unit_type,
        )
        paid.availabilities = [
            Availability(_short_id(spec.slug, "0001", seg), product_id, "0001", seg, spec.terms)
            for seg in spec.segments
        ]
        product.skus.append(paid)
        self._by_slug[spec.slug] = paid
        # Trials: free, 25 seats, one month, commercial only and never for add-ons.
        if spec.trial and not spec.addon:
            trial = Sku(
                product_id=product_id,
                id="0002",
                title=f"{spec.title} Trial",
                description=f"One-month free trial of {spec.title}.",
                part_number=spec.part_number,
                minimum_quantity=TRIAL_SEATS,
                maximum_quantity=TRIAL_SEATS,
                is_trial=True,
                is_addon=False,
                business_seat_cap=False,
                erp_month_eur=Decimal(0),
            )
            trial.availabilities = [
                Availability(
                    _short_id(spec.slug, "0002", "commercial"),
                    product_id,
                    "0002",
                    "commercial",
                    TRIAL_TERMS,
                )
            ]
            trial.upgrade_target_keys = (paid.key,)
            product.skus.append(trial)
        self.products[product_id] = product
        for sku in product.skus:
            self._skus[sku.key] = sku
            for availability in sku.availabilities:
                self._items[availability.catalog_item_id.upper()] = (product, sku, availability)

    def __len__(self) -> int:
        return len(self.products)

    def product(self, product_id: str) -> Product:
        """A product by id (case-insensitive), or 404."""
        product = self.products.get(product_id.upper())
        if product is None:
            raise SimError(404, ErrorCode.RESOURCE_NOT_FOUND, f"Product {product_id} not found.")
        return product

    def sku(self, product_id: str, sku_id: str) -> Sku:
        """A SKU by product and SKU id, or 404."""
        sku = self._skus.get(f"{product_id.upper()}:{sku_id}")
        if sku is None:
            raise SimError(404, ErrorCode.RESOURCE_NOT_FOUND, f"Sku {sku_id} not found.")
        return sku

    def sku_by_key(self, key: str) -> Sku | None:
        """A SKU by product:sku, or None."""
        product_id, _, sku_id = key.partition(":")
        return self._skus.get(f"{product_id.upper()}:{sku_id}")

    def sku_by_slug(self, slug: str) -> Sku:
        """A paid SKU by its internal slug (used by seeding and tests)."""
        return self._by_slug[slug]

    def item(self, catalog_item_id: str) -> tuple[Product, Sku, Availability] | None:
        """Resolve product:sku:availability, or None when it does not exist."""
        return self._items.get(catalog_item_id.upper())

    def skus(self) -> Iterator[Sku]:
        """Every SKU in a stable order."""
        for product in self.products.values():
            yield from product.skus

    def has_addons(self, base: Sku) -> bool:
        """Whether any add-on lists `base` among its prerequisites (the catalog is fixed once
        built, so the set is made on the first question: every subscription read asks it)."""
        if self._addon_bases is None:
            self._addon_bases = frozenset(
                key for s in self.skus() if s.is_addon for key in s.prerequisite_keys
            )
        return base.key in self._addon_bases

    def list_products(self, target_view: str | None, segment: str | None) -> list[Product]:
        """Products in a view (OnlineServices, Azure, SoftwareSubscriptions) and segment."""
        views = _view_aliases(target_view)
        result = []
        for product in self.products.values():
            if views is not None and product.target_view.lower() not in views:
                continue
            if segment and segment.lower() not in product.segments:
                continue
            result.append(product)
        return result

    def price(self, sku: Sku, duration: str, billing_cycle: str, currency: str) -> Price:
        """Price of one billing period for one seat."""
        if sku.is_trial or sku.erp_month_eur is None or billing_cycle == "none":
            return Price(Decimal("0.00"), Decimal("0.00"), currency)
        erp_month = _monthly_erp(sku.erp_month_eur, currency)
        cost_month = round_to_nickel(erp_month * PARTNER_COST_SHARE)
        if duration == "P1M":
            erp_month = erp_month * MONTHLY_TERM_PREMIUM
            cost_month = cost_month * MONTHLY_TERM_PREMIUM
        months = _MONTHS_PER_BILLING.get(billing_cycle, 1)
        return Price(
            (cost_month * months).quantize(Decimal("0.01")),
            (erp_month * months).quantize(Decimal("0.01")),
            currency,
        )

    def price_sheet_csv(self, market: str, now: datetime, currency: str | None = None) -> str:
        """The licence-based price sheet of a market as CSV text."""
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=32)).replace(day=1) - timedelta(seconds=1)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(PRICE_SHEET_COLUMNS)
        currencies = [currency.upper()] if currency else list(CURRENCIES)
        for product in self.products.values():
            for sku in product.skus:
                if sku.is_trial or sku.erp_month_eur is None:
                    continue
                for availability in sku.availabilities:
                    for term in availability.terms:
                        for cur in currencies:
                            price = self.price(sku, term.duration, term.billing_cycle, cur)
                            writer.writerow(
                                [
                                    product.title,
                                    product.id,
                                    sku.id,
                                    sku.title,
                                    "Microsoft Corporation",
                                    sku.description,
                                    "1 License" if sku.unit_type == "Licenses" else "1 Pack",
                                    term.duration,
                                    term.billing_cycle.capitalize(),
                                    market.upper(),
                                    cur,
                                    str(price.unit_price),
                                    "0",
                                    "",
                                    start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                    end.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                    "License",
                                    str(price.erp),
                                    availability.segment.capitalize(),
                                ]
                            )
        return out.getvalue()


PRICE_SHEET_COLUMNS = (
    "ProductTitle",
    "ProductId",
    "SkuId",
    "SkuTitle",
    "Publisher",
    "SkuDescription",
    "UnitOfMeasure",
    "TermDuration",
    "BillingPlan",
    "Market",
    "Currency",
    "UnitPrice",
    "PricingTierRangeMin",
    "PricingTierRangeMax",
    "EffectiveStartDate",
    "EffectiveEndDate",
    "Tags",
    "ERP Price",
    "Segment",
)


def _monthly_erp(erp_month_eur: Decimal, currency: str) -> Decimal:
    if currency.upper() == "EUR":
        return erp_month_eur
    if currency.upper() == "CZK":
        return round_to_nickel(erp_month_eur * EUR_TO_CZK)
    raise SimError(400, ErrorCode.BAD_REQUEST, f"Currency {currency} is not offered.")


def _view_aliases(target_view: str | None) -> set[str] | None:
    if not target_view:
        return None
    view = target_view.lower()
    if view in ("azure", "microsoftazure"):
        return {"azure"}
    if view in ("onlineservices", "onlineservicesnce", "modernonlineservices"):
        return {"onlineservices"}
    if view in ("softwaresubscriptions", "software"):
        return {"softwaresubscriptions"}
    return {view}


def term_text(term: Term) -> str:
    """The human description Partner Center puts on a term."""
    if term.billing_cycle == "none":
        return "One-Month trial"
    return (
        f"{_TERM_TEXT.get(term.duration, term.duration)} commitment, {term.billing_cycle} billing"
    )


def cancellation_policies(term: Term) -> list[dict[str, object]]:
    """Refund policies of a term: full within a day, prorated within seven."""
    return [] if term.billing_cycle == "none" else _CANCELLATION_POLICIES
