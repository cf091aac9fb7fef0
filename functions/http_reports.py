"""Reports of a reseller (licences, usage, revenue), JSON; each report's part stands alone."""

from __future__ import annotations

import azure.functions as func

from functions._http import Call, http
from shared.bootstrap import container
from shared.services.access import Action, allow

bp = func.Blueprint()
TAGS = ("reports",)


# --- usage: Azure consumption from Partner Center's usage export --------------------------------
from shared.services import usage_report  # noqa: E402
from shared.services.usage_report import (  # noqa: E402
    UsageQuery,
    UsageReport,
    UsageReportDistributor,
    UsageReportPublic,
    UsageReportStaff,
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
    tags=TAGS,
    errors=(400,),
    access=allow(Action.READ_REPORTS),
)
def usage_report_route(call: Call) -> UsageReport:
    """The report the caller may see."""
    q = call.query(UsageQuery)
    c = container()
    return usage_report.build(
        c.usage_book, call.principal, call.route["r"], q, c.settings.distributor_markup_percent
    )
