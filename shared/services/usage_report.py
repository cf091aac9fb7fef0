"""The usage report: a month of a reseller's Azure consumption, grouped, at every price layer
the caller may see.

Rows come from the month's active import (one partition query; a customer's rows a RowKey
range), are filtered (`customer`, `meterCategory`, `resourceGroup`, `subscription`: the
drill-down) and grouped per customer and `groupBy` value. Each group's pre-tax sum is priced
once (`usage_amounts`): reseller cost with the distributor's mark-up for the reseller (its own,
else DISTRIBUTOR_MARKUP_PERCENT, as `reseller_pricing` resolves it), customer price with the
reseller's usage mark-up (`usageMarkupPercent`, else its default mark-up). Totals are priced
from the unrounded sums, too.

Who sees what is the model, not a filtered dict: `UsageReportDistributor` (Microsoft's cost),
`UsageReportStaff` (reseller cost, margin, mark-up), `UsageReportPublic` (a customer user: its
own customer's rows at its price, with no cost, margin or mark-up field anywhere).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from pydantic import AwareDatetime, ConfigDict, Field

from shared.domain.errors import NotFound
from shared.domain.exports import ExportQuery
from shared.domain.identity import CUSTOMER_ID_PATTERN, RESELLER_PARTITION, Principal, Reseller
from shared.domain.model import WireModel
from shared.domain.usage import BILLING_MONTH_PATTERN
from shared.domain.usage_report import (
    GROUP_FIELDS,
    IMPORTS_PARTITION,
    GroupBy,
    UsageAggregate,
    UsageAmounts,
    rows_partition,
    usage_amounts,
)
from shared.services.access import Audience, audience
from shared.services.pricing import reseller_pricing
from shared.services.reports.book import ReportRows
from shared.services.usage_import import UsageBook, month_of


class UsageQuery(ExportQuery):
    """The report's filters (an unknown parameter is a 400 naming it)."""

    model_config = ConfigDict(extra="forbid")

    month: str | None = Field(
        None, pattern=BILLING_MONTH_PATTERN, description="YYYY-MM; default: this month."
    )
    customer: str | None = Field(None, pattern=CUSTOMER_ID_PATTERN, description="A customer id.")
    group_by: GroupBy = Field("meterCategory", description="What the rows are grouped by.")
    # No commas: a repeated parameter arrives joined with them, and no name holds one.
    meter_category: str | None = Field(
        None, pattern=r"^[^,]{1,200}$", description="Only this meter category."
    )
    resource_group: str | None = Field(
        None, pattern=r"^[^,]{1,90}$", description="Only this resource group."
    )
    subscription: str | None = Field(
        None, pattern=r"^[0-9A-Za-z-]{1,64}$", description="Only this subscription (its id)."
    )


# --- rows: flat, one model per audience (the export helper renders them as they are) ---------


class UsageRowPublic(WireModel):
    """A group of one customer's usage at the customer's price."""

    customer_id: str
    customer_name: str
    group: str = Field(description="The value of the groupBy field.")
    quantity: Decimal | None = Field(description="Summed when the group has one unit, else null.")
    unit: str | None
    lines: int
    currency: str
    customer_price: Decimal


class UsageRowStaff(UsageRowPublic):
    """A group of usage with the reseller's cost and margin."""

    reseller_cost: Decimal
    margin: Decimal
    margin_percent: Decimal | None


class UsageRowDistributor(UsageRowStaff):
    """A group of usage with Microsoft's cost (Partner Center's pre-tax amount) as well."""

    microsoft_cost: Decimal


class UsageTotalPublic(WireModel):
    """The total of one currency at the customer's price."""

    currency: str
    lines: int
    customer_price: Decimal


class UsageTotalStaff(UsageTotalPublic):
    """The total with the reseller's cost and margin."""

    reseller_cost: Decimal
    margin: Decimal
    margin_percent: Decimal | None


class UsageTotalDistributor(UsageTotalStaff):
    """The total with Microsoft's cost."""

    microsoft_cost: Decimal


class UsageReportPublic(WireModel):
    """The usage report as a customer user sees it."""

    month: str
    group_by: GroupBy
    customer: str | None
    imported_at: AwareDatetime | None = Field(description="When the month's data was imported.")
    rows: list[UsageRowPublic]
    totals: list[UsageTotalPublic]


class UsageReportStaff(UsageReportPublic):
    """The usage report as reseller staff see it."""

    usage_markup_percent: Decimal
    rows: list[UsageRowStaff]  # type: ignore[assignment]
    totals: list[UsageTotalStaff]  # type: ignore[assignment]


class UsageReportDistributor(UsageReportStaff):
    """The usage report as a distributor admin sees it."""

    distributor_markup_percent: Decimal
    rows: list[UsageRowDistributor]  # type: ignore[assignment]
    totals: list[UsageTotalDistributor]  # type: ignore[assignment]


UsageReport = UsageReportDistributor | UsageReportStaff | UsageReportPublic


# --- building it ------------------------------------------------------------------------------


@dataclass
class _Group:
    customer_id: str
    customer_name: str
    group: str
    currency: str
    units: set[str] = field(default_factory=set)
    quantity: Decimal = Decimal(0)
    pre_tax: Decimal = Decimal(0)
    lines: int = 0

    def add(self, row: UsageAggregate) -> None:
        self.units.add(row.unit)
        self.quantity += row.quantity
        self.pre_tax += row.pre_tax
        self.lines += row.lines
        self.customer_name = self.customer_name or row.customer_name


def usage_markup(reseller: Reseller) -> Decimal:
    """The reseller's usage mark-up: its own setting, else its default mark-up."""
    own = reseller.settings.usage_markup_percent
    return reseller.default_markup_percent if own is None else own


def _matches(row: UsageAggregate, q: UsageQuery) -> bool:
    return (
        (q.meter_category is None or row.meter_category == q.meter_category)
        and (q.resource_group is None or row.resource_group == q.resource_group)
        and (q.subscription is None or row.subscription_id.lower() == q.subscription.lower())
    )


def group_rows(rows: Iterable[UsageAggregate], q: UsageQuery) -> list[_Group]:
    """The rows that pass the filters, summed per customer and groupBy value (sorted)."""
    groups: dict[tuple[str, str, str], _Group] = {}
    attribute = GROUP_FIELDS[q.group_by]
    for row in rows:
        if not _matches(row, q):
            continue
        value = str(getattr(row, attribute))
        key = (row.customer_id, value, row.currency)
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group(row.customer_id, row.customer_name, value, row.currency)
        group.add(row)
    return [groups[k] for k in sorted(groups)]


def _amount_fields(amounts: UsageAmounts) -> dict[str, object]:
    return {
        "microsoft_cost": amounts.microsoft_cost,
        "reseller_cost": amounts.reseller_cost,
        "customer_price": amounts.customer_price,
        "margin": amounts.margin,
        "margin_percent": amounts.margin_percent,
    }


def build(
    book: UsageBook,
    principal: Principal,
    reseller_slug: str,
    q: UsageQuery,
    distributor_markup_default: Decimal,
) -> UsageReport:
    """The report for `principal` (a customer user: its own customer only, else 404)."""
    reseller = book.resellers.get(RESELLER_PARTITION, reseller_slug)
    customer = q.customer
    if principal.is_customer_user:
        if customer is not None and customer != principal.customer_id:
            raise NotFound("not found")
        customer = principal.customer_id
    month = q.month or month_of(book.clock.now().date())
    record = book.imports.find(IMPORTS_PARTITION, month)
    tag = record.active_tag if record is not None else None
    rows = (
        book.rows.read(rows_partition(reseller.slug, month, tag), customer)
        if tag is not None
        else iter(())
    )
    groups = group_rows(rows, q)
    pricing = reseller_pricing(reseller, distributor_markup_default)
    distributor_markup = pricing.distributor_markup_percent
    markup = usage_markup(reseller)

    def price(pre_tax: Decimal, currency: str) -> dict[str, object]:
        return _amount_fields(usage_amounts(pre_tax, currency, distributor_markup, markup))

    row_dicts = [
        {
            "customer_id": g.customer_id,
            "customer_name": g.customer_name,
            "group": g.group,
            "quantity": g.quantity if len(g.units) == 1 else None,
            "unit": next(iter(g.units)) if len(g.units) == 1 else None,
            "lines": g.lines,
            "currency": g.currency,
            **price(g.pre_tax, g.currency),
        }
        for g in groups
    ]
    sums: dict[str, list[Decimal | int]] = {}
    for g in groups:
        entry = sums.setdefault(g.currency, [Decimal(0), 0])
        entry[0] = Decimal(entry[0]) + g.pre_tax
        entry[1] = int(entry[1]) + g.lines
    totals = [
        {"currency": cur, "lines": int(lines), **price(Decimal(pre_tax), cur)}
        for cur, (pre_tax, lines) in sorted(sums.items())
    ]
    report: dict[str, object] = {
        "month": month,
        "group_by": q.group_by,
        "customer": customer,
        "imported_at": record.imported_at if tag is not None and record is not None else None,
        "rows": row_dicts,
        "totals": totals,
        "usage_markup_percent": markup,
        "distributor_markup_percent": distributor_markup,
    }
    model = {
        Audience.DISTRIBUTOR: UsageReportDistributor,
        Audience.RESELLER: UsageReportStaff,
        Audience.CUSTOMER: UsageReportPublic,
    }[audience(principal)]
    return model.model_validate(report)


def report_rows(book: UsageBook, reseller_slug: str, report: UsageReport) -> ReportRows:
    """The report's rows for a download (their model is the caller's view: a customer user's
    has no cost, margin or mark-up field)."""
    row_model = {
        UsageReportDistributor: UsageRowDistributor,
        UsageReportStaff: UsageRowStaff,
        UsageReportPublic: UsageRowPublic,
    }[type(report)]
    country = book.resellers.get(RESELLER_PARTITION, reseller_slug).country
    return ReportRows(row_model, report.rows, country)
