"""Reports of a reseller: licences (a month's page, or the monthly series), recurring revenue and
Azure usage; each as JSON, CSV or XLSX."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict

import azure.functions as func
from pydantic import ConfigDict, Field

from functions._exports import export, requested_format
from functions._http import Call, PageQuery, Reply, http
from shared.bootstrap import container
from shared.domain.exports import ExportFormat, ExportQuery
from shared.domain.ledger import month_of
from shared.services import usage_report
from shared.services.access import Action, allow
from shared.services.reports import licences, revenue
from shared.services.reports.book import ReportRows
from shared.services.reports.licences import (
    LicenceReportDistributor,
    LicenceReportPublic,
    LicenceReportStaff,
    LicenceSeriesPublic,
    LicenceSeriesStaff,
)
from shared.services.reports.query import (
    DEFAULT_REVENUE_MONTHS,
    CustomerId,
    Month,
    PageSize,
    ProductId,
    RevenueMonths,
    SeriesMonths,
)
from shared.services.reports.revenue import RevenueReportPublic, RevenueReportStaff
from shared.services.usage_report import (
    UsageQuery,
    UsageReport,
    UsageReportDistributor,
    UsageReportPublic,
    UsageReportStaff,
)

bp = func.Blueprint()


class LicenceQuery(PageQuery, ExportQuery):
    """Filters of the licence report (an unknown parameter is a 400, not silently ignored)."""

    model_config = ConfigDict(extra="forbid")

    page_size: PageSize = Field(100, description="Rows per page.")
    month: Month | None = Field(None, description="YYYY-MM (default: this month).")
    months: SeriesMonths | None = Field(
        None,
        description="The monthly series of this many months up to `month` instead of its rows.",
    )
    customer: CustomerId | None = Field(None, description="One customer's rows only (its id).")
    product: ProductId | None = Field(
        None, description="One product's rows only (its id, e.g. CFQ7TTC0LH18)."
    )


class RevenueQuery(ExportQuery):
    """Filters of the revenue report."""

    model_config = ConfigDict(extra="forbid")

    months: RevenueMonths = Field(DEFAULT_REVENUE_MONTHS, description="How many months.")
    customer: CustomerId | None = Field(None, description="One customer's revenue (its id).")


LicenceAnswer = (
    LicenceReportDistributor
    | LicenceReportStaff
    | LicenceReportPublic
    | LicenceSeriesStaff
    | LicenceSeriesPublic
)


@http(
    bp,
    "resellers/{r}/reports/licences",
    ["GET"],
    name="http_licence_report",
    summary="Licences per customer and subscription in a month (seats, prices; cost and margin "
    "for staff), with totals per customer and overall; `months` gives the monthly series.",
    query=LicenceQuery,
    response=LicenceAnswer,
    tags=("reports",),
    errors=(400,),
    access=allow(Action.READ_REPORTS),
)
def licence_report(call: Call) -> LicenceAnswer | Reply:
    """The licence report, or its monthly series; as JSON, CSV or XLSX."""
    q = call.query(LicenceQuery)
    book = container().reports_book
    month = q.month or month_of(book.clock.now())  # the file names the month it holds
    filters = {"month": month, "months": q.months, "customer": q.customer, "product": q.product}
    fmt = requested_format(call)
    who = (book, call.principal, call.route["r"])
    scope = _Scope(month=q.month, customer_id=q.customer, product_id=q.product)
    if q.months is not None:
        if fmt is ExportFormat.JSON:
            return licences.licence_series(*who, months=q.months, **scope)
        rows = licences.licence_series_rows(*who, months=q.months, **scope)
    elif fmt is ExportFormat.JSON:
        return licences.licence_report(
            *who, **scope, page_size=q.page_size, continuation_token=q.continuation_token
        )
    else:
        rows = licences.licence_rows(*who, **scope)
    return _download(call, fmt, "licences", filters, rows)


class _Scope(TypedDict):
    """The filters every form of the licence report takes."""

    month: str | None
    customer_id: str | None
    product_id: str | None


def _download(
    call: Call, fmt: ExportFormat, report: str, filters: Mapping[str, object], rows: ReportRows
) -> Reply:
    """The rows as the file the caller asked for."""
    return export(
        call,
        fmt,
        report=report,
        filters=filters,
        model=rows.model,
        rows=rows.rows,
        country=rows.country,
    )


@http(
    bp,
    "resellers/{r}/reports/revenue",
    ["GET"],
    name="http_revenue_report",
    summary="Monthly recurring revenue and its movements (new, expansion, contraction, churn); "
    "cost and margin for staff.",
    query=RevenueQuery,
    response=RevenueReportStaff | RevenueReportPublic,
    tags=("reports",),
    errors=(400,),
    access=allow(Action.READ_REPORTS),
)
def revenue_report(call: Call) -> RevenueReportStaff | RevenueReportPublic | Reply:
    """The revenue report; as JSON, CSV or XLSX."""
    q = call.query(RevenueQuery)
    book = container().reports_book
    fmt = requested_format(call)
    if fmt is not ExportFormat.JSON:
        rows = revenue.revenue_rows(
            book, call.principal, call.route["r"], months=q.months, customer_id=q.customer
        )
        return _download(call, fmt, "revenue", {"months": q.months, "customer": q.customer}, rows)
    return revenue.revenue_report(
        book,
        call.principal,
        call.route["r"],
        months=q.months,
        customer_id=q.customer,
    )


@http(
    bp,
    "resellers/{r}/reports/usage",
    ["GET"],
    name="http_usage_report",
    summary="A month of Azure usage grouped by meterCategory, resourceGroup or subscription per "
    "customer (drill down with customer= and meterCategory=/resourceGroup=/subscription=), "
    "at the reseller's cost and the customer's price (the usage mark-up), with totals. A "
    "customer user gets its own customer's rows at its price only; Microsoft's cost is for "
    "distributor admins.",
    query=UsageQuery,
    response=UsageReportDistributor | UsageReportStaff | UsageReportPublic,
    tags=("reports",),
    errors=(400,),
    access=allow(Action.READ_REPORTS),
)
def usage_report_route(call: Call) -> UsageReport | Reply:
    """The report the caller may see; as JSON, CSV or XLSX (its rows)."""
    q = call.query(UsageQuery)
    c = container()
    report = usage_report.build(
        c.usage_book, call.principal, call.route["r"], q, c.settings.distributor_markup_percent
    )
    fmt = requested_format(call)
    if fmt is ExportFormat.JSON:
        return report
    filters = {
        "month": report.month,
        "customer": q.customer,
        "groupBy": q.group_by,
        "meterCategory": q.meter_category,
        "resourceGroup": q.resource_group,
        "subscription": q.subscription,
    }
    rows = usage_report.report_rows(c.usage_book, call.route["r"], report)
    return _download(call, fmt, "usage", filters, rows)
