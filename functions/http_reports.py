"""Reports: licences (a month's page, or the monthly series) and recurring revenue."""

from __future__ import annotations

import azure.functions as func
from pydantic import ConfigDict, Field

from functions._http import Call, PageQuery, http
from shared.bootstrap import container
from shared.domain.ledger import MONTH_PATTERN
from shared.domain.model import WireModel
from shared.services.access import Action, allow
from shared.services.reports import licences, revenue
from shared.services.reports.licences import (
    LicenceReportDistributor,
    LicenceReportPublic,
    LicenceReportStaff,
    LicenceSeriesPublic,
    LicenceSeriesStaff,
)
from shared.services.reports.revenue import RevenueReportPublic, RevenueReportStaff

bp = func.Blueprint()


class LicenceQuery(PageQuery):
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


class RevenueQuery(WireModel):
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
def licence_report(call: Call) -> LicenceAnswer:
    """The licence report, or its monthly series."""
    q = call.query(LicenceQuery)
    book = container().reports_book
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
def revenue_report(call: Call) -> RevenueReportStaff | RevenueReportPublic:
    """The revenue report."""
    q = call.query(RevenueQuery)
    return revenue.revenue_report(
        container().reports_book,
        call.principal,
        call.route["r"],
        months=q.months,
        customer_id=q.customer,
    )
