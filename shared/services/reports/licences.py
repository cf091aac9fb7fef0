"""The licence report: per customer and subscription, a month's seats, prices, cost and margin.

A page reads one page of the ledger's subscription rows for the month, the names of the
customers on it (one range query: rows come in customer id order) and the totals: the month's
(one read), and per customer on the page, the sum of its rows there, except for a customer
whose rows may run on from the page before or into the next one, whose total is its month
aggregate (at most two point reads a page). `licence_rows` walks every page for exports, the
next page (and its names) read while this one's rows are made: at most two pages in memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import Field

from shared.domain.identity import Principal
from shared.domain.ledger import Figures, SubscriptionMonth, months_ending, totals_of
from shared.domain.model import WireModel
from shared.services.access import Audience, audience
from shared.services.reports.book import (
    ReportRows,
    ReportsBook,
    ReportScope,
    country_of,
    customer_names,
    month_figures,
    read_ahead,
    scope,
    series_figures,
    subscription_pages,
)
from shared.services.reports.query import (
    bind_token,
    check_month,
    check_page_size,
    check_series_months,
    unbind_token,
)
from shared.services.reports.views import (
    LICENCE_ROW,
    CustomerTotalsPublic,
    CustomerTotalsStaff,
    FiguresPublic,
    FiguresStaff,
    LicenceMonthPublic,
    LicenceMonthStaff,
    LicenceRowDistributor,
    LicenceRowPublic,
    LicenceRowStaff,
    figures_values,
    money,
    shown,
)

REPORT = "licences"


class _ReportFields(WireModel):
    month: str
    currency: str = Field(description="The reseller's currency (every amount is in it).")
    customer_id: str | None = Field(description="The customer filter, if any.")
    customer_name: str | None
    product_id: str | None = Field(description="The product filter, if any.")
    continuation_token: str | None = Field(
        description="The next page's token (valid with the same month and filters); None: last."
    )
    opened: bool = Field(
        description="The month's opening finished: every subscription live when it began is "
        "in its rows and totals (until then they may be incomplete)."
    )


class LicenceReportPublic(_ReportFields):
    """A page of the licence report at the customer's prices."""

    items: list[LicenceRowPublic]
    customer_totals: list[CustomerTotalsPublic] = Field(
        description="The month's totals of each customer on this page, each rounded from its "
        "exact sum (it may differ from the sum of the rows shown by rounding)."
    )
    totals: FiguresPublic = Field(
        description="The month's totals of the whole report, rounded from the exact sums (they "
        "may differ from the sum of the rows shown by rounding)."
    )


class LicenceReportStaff(_ReportFields):
    """A page of the licence report with the reseller's cost and margin."""

    items: Sequence[LicenceRowStaff]
    customer_totals: list[CustomerTotalsStaff]
    totals: FiguresStaff


class LicenceReportDistributor(LicenceReportStaff):
    """A page of the licence report with Microsoft's cost on each row."""

    items: Sequence[LicenceRowDistributor]


_REPORT: dict[Audience, type[LicenceReportPublic | LicenceReportStaff]] = {
    Audience.CUSTOMER: LicenceReportPublic,
    Audience.RESELLER: LicenceReportStaff,
    Audience.DISTRIBUTOR: LicenceReportDistributor,
}


class _SeriesFields(WireModel):
    currency: str
    customer_id: str | None
    customer_name: str | None
    product_id: str | None


class LicenceSeriesPublic(_SeriesFields):
    """The licence figures of each month, oldest first, at the customer's prices."""

    months: list[LicenceMonthPublic]


class LicenceSeriesStaff(_SeriesFields):
    """The licence figures of each month, oldest first, with cost and margin."""

    months: list[LicenceMonthStaff]


def licence_row(
    row: SubscriptionMonth, customer_name: str | None, currency: str, viewer: Audience
) -> LicenceRowPublic:
    """One subscription's month as `viewer` may see it (amounts rounded where shown)."""
    state, f = row.closing, row.figures
    cur = state.currency or currency
    seats = f.seats

    def total(unit: Any) -> Any:
        return None if unit is None else money(unit * seats, cur)

    values: dict[str, Any] = {
        "month": row.month,
        "customer_id": row.customer_id,
        "customer_name": customer_name,
        "subscription_id": row.subscription_id,
        "subscription_name": state.name,
        "product_id": state.product_id,
        "catalog_item_id": state.catalog_item_id,
        "term_duration": state.term_duration,
        "billing_cycle": state.billing_cycle,
        "status": state.status,
        "is_trial": state.is_trial,
        "seats_at_start": row.opening.seats if row.opening is not None and row.opening.live else 0,
        "seats_at_end": seats,
        "seats_assigned": state.assigned,
        "renews_on": state.renews_on,
        "currency": cur,
        "unit_price": money(state.unit_customer_price, cur),
        "total_price": total(state.unit_customer_price),
        "monthly_price": money(f.mrr, cur),
    }
    if viewer is not Audience.CUSTOMER:
        monthly = shown(f.mrr, f.mrr_cost, cur)
        values |= {
            "unit_cost": money(state.unit_reseller_cost, cur),
            "total_cost": total(state.unit_reseller_cost),
            "monthly_cost": monthly.cost,
            "margin": monthly.margin,
            "margin_percent": monthly.margin_percent,
            "markup_percent": monthly.markup_percent,
        }
    if viewer is Audience.DISTRIBUTOR:
        values |= {
            "unit_microsoft_cost": money(state.unit_microsoft_cost, cur),
            "total_microsoft_cost": total(state.unit_microsoft_cost),
        }
    return LICENCE_ROW[viewer].model_validate(values)


def _names(book: ReportsBook, sc: ReportScope, rows: list[SubscriptionMonth]) -> dict[str, str]:
    if sc.customer_id is not None:
        return {sc.customer_id: sc.customer_name} if sc.customer_name is not None else {}
    return customer_names(book.customers, sc.reseller.slug, (r.customer_id for r in rows))


def _customer_figures(
    book: ReportsBook,
    sc: ReportScope,
    month: str,
    product_id: str | None,
    rows: list[SubscriptionMonth],
    *,
    continued: bool,
    continues: bool,
) -> dict[str, Figures]:
    """The month's figures of each customer on the page, in page order: the sum of its rows
    here, or its month's figures when its rows may be cut by the page's start or end."""
    by_customer: dict[str, list[SubscriptionMonth]] = {}
    for row in rows:
        by_customer.setdefault(row.customer_id, []).append(row)
    cut = set()
    if rows and continued:
        cut.add(rows[0].customer_id)
    if rows and continues:
        cut.add(rows[-1].customer_id)
    return {
        cid: (
            month_figures(book.ledger, sc.reseller.slug, month, cid, product_id)
            if cid in cut
            else totals_of(mine)
        )
        for cid, mine in by_customer.items()
    }


def licence_report(
    book: ReportsBook,
    principal: Principal,
    reseller: str,
    *,
    month: str | None = None,
    customer_id: str | None = None,
    product_id: str | None = None,
    page_size: int = 100,
    continuation_token: str | None = None,
) -> LicenceReportPublic | LicenceReportStaff:
    """A page of the month's licence report (default: this month) as the caller may see it: a
    customer user's own customer only, at its prices, without cost or margin."""
    check_page_size(page_size)
    month = check_month(month, book.clock)
    sc = scope(book, principal, reseller, customer_id, product_id)
    viewer = audience(principal)
    query = (REPORT, reseller, month, sc.customer_id, product_id)
    continuation_token = unbind_token(continuation_token, *query)
    page = book.ledger.subscription_months(
        reseller,
        month,
        customer_id=sc.customer_id,
        product_id=product_id,
        page_size=page_size,
        continuation_token=continuation_token,
    )
    rows = page.items
    names = _names(book, sc, rows)
    currency = sc.reseller.currency
    per_customer = _customer_figures(
        book,
        sc,
        month,
        product_id,
        rows,
        continued=continuation_token is not None,
        continues=page.continuation_token is not None,
    )
    totals = month_figures(book.ledger, reseller, month, sc.customer_id, product_id)
    return _REPORT[viewer].model_validate(
        {
            "month": month,
            "currency": currency,
            "customer_id": sc.customer_id,
            "customer_name": sc.customer_name,
            "product_id": product_id,
            "continuation_token": bind_token(page.continuation_token, *query),
            "opened": book.ledger.opened(reseller, month),
            "items": [licence_row(r, names.get(r.customer_id), currency, viewer) for r in rows],
            "customer_totals": [
                {
                    "customer_id": cid,
                    "customer_name": names.get(cid),
                    **figures_values(f, currency, viewer),
                }
                for cid, f in per_customer.items()
            ],
            "totals": figures_values(totals, currency, viewer),
        }
    )


def licence_series(
    book: ReportsBook,
    principal: Principal,
    reseller: str,
    *,
    months: int,
    month: str | None = None,
    customer_id: str | None = None,
    product_id: str | None = None,
) -> LicenceSeriesPublic | LicenceSeriesStaff:
    """The licence figures of `months` months up to `month` (default: this month)."""
    check_series_months(months)
    last = check_month(month, book.clock)
    sc = scope(book, principal, reseller, customer_id, product_id)
    viewer = audience(principal)
    currency = sc.reseller.currency
    series = series_figures(
        book.ledger, reseller, months_ending(last, months), sc.customer_id, product_id
    )
    model = LicenceSeriesPublic if viewer is Audience.CUSTOMER else LicenceSeriesStaff
    return model.model_validate(
        {
            "currency": currency,
            "customer_id": sc.customer_id,
            "customer_name": sc.customer_name,
            "product_id": product_id,
            "months": [
                {
                    "month": m,
                    "opened": book.ledger.opened(reseller, m),
                    **figures_values(f, currency, viewer),
                }
                for m, f in series
            ],
        }
    )


def licence_rows(
    book: ReportsBook,
    principal: Principal,
    reseller: str,
    *,
    month: str | None = None,
    customer_id: str | None = None,
    product_id: str | None = None,
) -> ReportRows:
    """Every row of the month's licence report as the caller may see it (for exports): access
    and filters are checked now; rows are then read a ledger page at a time, with the names of
    that page's customers, the next page read ahead, so memory stays bounded whatever the
    report's size."""
    month = check_month(month, book.clock)
    sc = scope(book, principal, reseller, customer_id, product_id)
    viewer = audience(principal)
    rows = _every_row(book, sc, month, product_id, viewer)
    return ReportRows(LICENCE_ROW[viewer], rows, sc.reseller.country)


def licence_series_rows(
    book: ReportsBook,
    principal: Principal,
    reseller: str,
    *,
    months: int,
    month: str | None = None,
    customer_id: str | None = None,
    product_id: str | None = None,
) -> ReportRows:
    """The monthly series as download rows (one per month)."""
    series = licence_series(
        book,
        principal,
        reseller,
        months=months,
        month=month,
        customer_id=customer_id,
        product_id=product_id,
    )
    model = LicenceMonthStaff if isinstance(series, LicenceSeriesStaff) else LicenceMonthPublic
    return ReportRows(model, series.months, country_of(book, reseller))


def _every_row(
    book: ReportsBook, sc: ReportScope, month: str, product_id: str | None, viewer: Audience
) -> Iterator[LicenceRowPublic]:
    pages = subscription_pages(book.ledger, sc.reseller.slug, month, sc.customer_id, product_id)
    named = ((rows, _names(book, sc, rows)) for rows in pages)
    for rows, names in read_ahead(named):
        for row in rows:
            yield licence_row(row, names.get(row.customer_id), sc.reseller.currency, viewer)
