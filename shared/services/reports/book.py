"""What the licence and revenue reports read, and whose rows a caller may see.

Both reports read the ledger's month aggregates through `LedgerReader` (shared/domain/ledger.py):
a month's totals, a customer's month, or the subscription rows. Only a `product` filter makes a
total be summed from rows (the aggregates are per reseller and per customer, not per product).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel

from shared.domain.customers import Customer
from shared.domain.errors import NotFound
from shared.domain.identity import Principal, Reseller
from shared.domain.ledger import Figures, SubscriptionMonth, totals_of
from shared.ports import Clock, LedgerReader, Repository
from shared.services import access, resellers
from shared.services.reports.query import check_filters

# The page size the reports read the ledger with when they need every row (exports, totals).
READ_PAGE = 1000
T = TypeVar("T")


@dataclass(frozen=True)
class ReportsBook:
    """The records the reports read."""

    ledger: LedgerReader
    customers: Repository[Customer]
    resellers: Repository[Reseller]
    clock: Clock


@dataclass(frozen=True)
class ReportRows:
    """Every row of a report as the caller may see it, for a download: the row model of the
    caller's view (a customer user's has no cost, margin or mark-up field), the rows (read a
    page at a time as they are iterated) and the reseller's country (its decimal separator)."""

    model: type[BaseModel]
    rows: Iterable[BaseModel]
    country: str


@dataclass(frozen=True)
class ReportScope:
    """Whose figures a report shows: the reseller, and one customer or all of them."""

    reseller: Reseller
    customer_id: str | None
    customer_name: str | None  # of `customer_id`, when there is one


def country_of(book: ReportsBook, reseller: str) -> str:
    """The reseller's country (after access was checked): how its files write decimals."""
    return resellers.get(book.resellers, reseller).country


def scope(
    book: ReportsBook,
    principal: Principal,
    reseller: str,
    customer_id: str | None,
    product_id: str | None = None,
) -> ReportScope:
    """The report's scope for the caller: a customer user's is its own customer (another
    customer named is a 404, as is another reseller's); staff may name any of theirs. Filters
    that are not ids (`a/b`, `#`) are a 400 naming them."""
    check_filters(customer_id, product_id)
    if principal.is_customer_user:
        customer_id = customer_id or principal.customer_id
        access.ensure_visible(principal, reseller, customer_id)
    else:
        access.ensure_visible(principal, reseller, None)
    found = resellers.get(book.resellers, reseller)
    name = None
    if customer_id is not None:
        customer = book.customers.find(reseller, customer_id)
        if customer is None:
            raise NotFound("customer not found")
        name = customer.name
    return ReportScope(found, customer_id, name)


def subscription_pages(
    ledger: LedgerReader,
    reseller: str,
    month: str,
    customer_id: str | None,
    product_id: str | None,
    page_size: int = READ_PAGE,
) -> Iterator[list[SubscriptionMonth]]:
    """Every page of the month's subscription rows, one at a time."""
    token: str | None = None
    while True:
        page = ledger.subscription_months(
            reseller,
            month,
            customer_id=customer_id,
            product_id=product_id,
            page_size=page_size,
            continuation_token=token,
        )
        yield page.items
        token = page.continuation_token
        if token is None:
            return


def read_ahead(items: Iterator[T]) -> Iterator[T]:
    """`items`, the next one read in another thread while the caller works on this one (the
    storage round trip of an export's next page overlaps the rows of this one). At most two are
    in memory; an error reading one is raised where it would have been."""
    end = object()
    with ThreadPoolExecutor(1, thread_name_prefix="read-ahead") as pool:
        pending = pool.submit(next, items, end)
        try:
            while True:
                item = pending.result()
                if item is end:
                    return
                pending = pool.submit(next, items, end)
                yield item  # type: ignore[misc]
        finally:
            pending.cancel()


def subscription_rows(
    ledger: LedgerReader,
    reseller: str,
    month: str,
    customer_id: str | None,
    product_id: str | None,
) -> Iterator[SubscriptionMonth]:
    """Every subscription row of the month (one page in memory at a time)."""
    for page in subscription_pages(ledger, reseller, month, customer_id, product_id):
        yield from page


def month_figures(
    ledger: LedgerReader,
    reseller: str,
    month: str,
    customer_id: str | None,
    product_id: str | None,
) -> Figures:
    """The month's figures of the reseller or one customer (an aggregate: one read), or, for
    one product, the sum of its rows (the ledger keeps no per-product aggregate)."""
    if product_id is not None:
        return totals_of(subscription_rows(ledger, reseller, month, customer_id, product_id))
    if customer_id is None:
        return ledger.totals(reseller, month).figures
    row = ledger.customer_month(reseller, month, customer_id)
    return row.figures if row is not None else Figures()


def customer_names(
    customers: Repository[Customer], reseller: str, ids: Iterable[str]
) -> dict[str, str]:
    """The names of customers, by id: one range query over the reseller's partition from the
    lowest id to the highest (a page of report rows is in customer id order), not a read per
    row nor per customer, reading the names only."""
    wanted = set(ids)
    if not wanted:
        return {}
    found = customers.column(reseller, "name", rows=(min(wanted), max(wanted)))
    return {cid: str(name) for cid, name in found.items() if cid in wanted}


def series_figures(
    ledger: LedgerReader,
    reseller: str,
    months: list[str],
    customer_id: str | None,
    product_id: str | None = None,
) -> Iterator[tuple[str, Figures]]:
    """Each month's figures (see `month_figures`), in the order given."""
    for month in months:
        yield month, month_figures(ledger, reseller, month, customer_id, product_id)
