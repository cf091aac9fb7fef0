"""The revenue report: monthly recurring revenue and how it moved (new, expansion,
contraction, churn), per month, from the ledger's month aggregates (one read a month)."""

from __future__ import annotations

from pydantic import Field

from shared.domain.identity import Principal
from shared.domain.ledger import Figures, month_of, months_ending
from shared.domain.model import WireModel
from shared.domain.money import round_money
from shared.services.access import Audience, audience
from shared.services.reports.book import (
    ReportRows,
    ReportsBook,
    country_of,
    scope,
    series_figures,
)
from shared.services.reports.query import DEFAULT_REVENUE_MONTHS, check_revenue_months
from shared.services.reports.views import RevenueMonthPublic, RevenueMonthStaff, money, shown


class _RevenueFields(WireModel):
    currency: str
    customer_id: str | None = Field(description="The customer filter, if any.")
    customer_name: str | None


class RevenueReportPublic(_RevenueFields):
    """Recurring revenue per month, oldest first, at the customer's prices."""

    months: list[RevenueMonthPublic]


class RevenueReportStaff(_RevenueFields):
    """Recurring revenue per month, oldest first, with the reseller's cost and margin."""

    months: list[RevenueMonthStaff]


def revenue_month(
    month: str, f: Figures, currency: str, viewer: Audience
) -> RevenueMonthPublic | RevenueMonthStaff:
    """One month's revenue row as `viewer` may see it (amounts rounded where shown; a
    difference shown is the difference of the amounts shown, so the row adds up as read)."""
    mrr = shown(f.mrr, f.mrr_cost, currency)
    opening = round_money(f.opening_mrr, currency)
    values = {
        "month": month,
        "currency": currency,
        "opening_mrr": opening,
        "new": money(f.new, currency),
        "expansion": money(f.expansion, currency),
        "contraction": money(f.contraction, currency),
        "churn": money(f.churn, currency),
        "net_change": mrr.price - opening,
        "mrr": mrr.price,
        "seats": f.seats,
        "subscriptions": f.subscriptions,
    }
    if viewer is Audience.CUSTOMER:
        return RevenueMonthPublic.model_validate(values)
    return RevenueMonthStaff.model_validate(
        values
        | {
            "reseller_cost": mrr.cost,
            "margin": mrr.margin,
            "margin_percent": mrr.margin_percent,
        }
    )


def revenue_report(
    book: ReportsBook,
    principal: Principal,
    reseller: str,
    *,
    months: int = DEFAULT_REVENUE_MONTHS,
    customer_id: str | None = None,
) -> RevenueReportPublic | RevenueReportStaff:
    """Recurring revenue of the last `months` months (this one included), of the reseller or
    one customer (a customer user: its own, at its prices, without cost or margin). Its rows
    are few (≤ 24): an export takes them from `months`."""
    check_revenue_months(months)
    sc = scope(book, principal, reseller, customer_id)
    viewer = audience(principal)
    currency = sc.reseller.currency
    last = month_of(book.clock.now())
    series = series_figures(book.ledger, reseller, months_ending(last, months), sc.customer_id)
    model = RevenueReportPublic if viewer is Audience.CUSTOMER else RevenueReportStaff
    return model.model_validate(
        {
            "currency": currency,
            "customer_id": sc.customer_id,
            "customer_name": sc.customer_name,
            "months": [revenue_month(m, f, currency, viewer) for m, f in series],
        }
    )


def revenue_rows(
    book: ReportsBook,
    principal: Principal,
    reseller: str,
    *,
    months: int = DEFAULT_REVENUE_MONTHS,
    customer_id: str | None = None,
) -> ReportRows:
    """The report's months as download rows."""
    report = revenue_report(book, principal, reseller, months=months, customer_id=customer_id)
    model = RevenueMonthStaff if isinstance(report, RevenueReportStaff) else RevenueMonthPublic
    return ReportRows(model, report.months, country_of(book, reseller))
