"""Reports of a reseller: licences (a month's page, or the monthly series), recurring revenue and
Azure usage; each as JSON, CSV or XLSX."""

from __future__ import annotations

from collections.abc import Mapping

import azure.functions as func
from pydantic import ConfigDict, Field

from functions._exports import export, requested_format
from functions._http import Call, PageQuery, Reply, http
from shared.bootstrap import container
from shared.domain.exports import ExportFormat, ExportQuery
from shared.domain.ledger import MONTH_PATTERN, month_of
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

    page_size: int = Field(100, ge=1, le=licences.MAX_PAGE_SIZE, description="Rows per page.")
    month: str | None = Field(
        None, pattern=MONTH_PATTERN, description="YYYY-MM (default: this month)."
    )
    months: int | None = Field(
        None,
        ge=1,
        le=licences.MAX_SERIES_MONTHS,
        description="The monthly series of this many months up to `month` instead of its rows.",
    )
    customer: str | None = Field(None, max_length=64, description="One customer's rows only.")
    product: str | None = Field(None, max_length=64, description="One product's rows only.")


class RevenueQuery(ExportQuery):
    """Filters of the revenue report."""

    model_config = ConfigDict(extra="forbid")

    months: int = Field(revenue.DEFAULT_MONTHS, ge=1, le=revenue.MAX_MONTHS)
    customer: str | None = Field(None, max_length=64, description="One customer's revenue.")


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
    if requested_format(call) is not ExportFormat.JSON:
        if q.months is not None:
            rows = licences.licence_series_rows(
                book,
                call.principal,
                call.route["r"],
                months=q.months,
                month=q.month,
                customer_id=q.customer,
                product_id=q.product,
            )
        else:
            rows = licences.licence_rows(
                book,
                call.principal,
                call.route["r"],
                month=q.month,
                customer_id=q.customer,
                product_id=q.product,
            )
        return _download(call, "licences", filters, rows)
    if q.months is not None:
        return licences.licence_series(
            book,
            call.principal,
            call.route["r"],
            months=q.months,
            month=q.month,
            customer_id=q.customer,
            product_id=q.product,
        )
    return licences.licence_report(
        book,
        call.principal,
        call.route["r"],
        month=q.month,
        customer_id=q.customer,
        product_id=q.product,
        page_size=q.page_size,
        continuation_token=q.continuation_token,
    )


def _download(call: Call, report: str, filters: Mapping[str, object], rows: ReportRows) -> Reply:
    """The rows as the file the caller asked for (not JSON: the caller checked)."""
    reply = export(
        call, report=report, filters=filters, model=rows.model, rows=rows.rows, country=rows.country
    )
    assert reply is not None
    return reply


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
    if requested_format(call) is not ExportFormat.JSON:
        rows = revenue.revenue_rows(
            book, call.principal, call.route["r"], months=q.months, customer_id=q.customer
        )
        return _download(call, "revenue", {"months": q.months, "customer": q.customer}, rows)
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
    if requested_format(call) is ExportFormat.JSON:
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
    return _download(call, "usage", filters, rows)
