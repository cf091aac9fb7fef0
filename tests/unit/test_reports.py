"""The licence and revenue reports over an in-memory ledger: numbers, totals, paging, views."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from shared.domain.customers import Customer
from shared.domain.errors import FieldError, NotFound, ValidationFailed
from shared.domain.identity import DISTRIBUTOR, Principal, Role, SignInKind
from shared.domain.ledger import months_ending
from shared.services.reports.book import ReportsBook, read_ahead
from shared.services.reports.licences import (
    licence_report,
    licence_rows,
    licence_series,
)
from shared.services.reports.revenue import revenue_report
from tests.fakes import FakeClock, InMemoryRepository, fake_directory, onboard
from tests.ledger_fakes import InMemoryLedger
from tests.report_fakes import OTHER_PRODUCT, PRODUCT, fact, state

NOW = datetime(2026, 2, 20, 9, 0, tzinfo=UTC)
MONTHS = months_ending("2026-02", 3)  # 2025-12, 2026-01, 2026-02
JAN, FEB = datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 2, 14, 12, tzinfo=UTC)
COST_WORDS = ("cost", "margin", "markup")


def who(role: Role, reseller: str = "demo", customer: str | None = None) -> Principal:
    return Principal("u1", reseller, customer, role, "u@x.example", SignInKind.PLATFORM)


STAFF = who(Role.READ_ONLY)
ADMIN = who(Role.DISTRIBUTOR_ADMIN, DISTRIBUTOR)


def cid(i: int) -> str:
    return f"01JCXST{i:019d}"


class CountingCustomers(InMemoryRepository[Customer]):
    """Customers in memory, counting the reads a report makes."""

    def __init__(self) -> None:
        super().__init__(lambda c: (c.reseller, c.id))
        self.reads: list[str] = []

    def find(self, partition: str, row: str) -> Customer | None:
        self.reads.append("find")
        return super().find(partition, row)

    def get(self, partition: str, row: str) -> Customer:
        self.reads.append("get")
        return super().get(partition, row)

    def list(self, partition: str | None = None, **kw: Any) -> Any:
        self.reads.append("list")
        return super().list(partition, **kw)

    def column(self, partition: str, field: str, **kw: Any) -> Any:
        self.reads.append(f"column {field}")
        return super().column(partition, field, **kw)


class CountingLedger(InMemoryLedger):
    """The in-memory ledger, counting page reads."""

    def __init__(self) -> None:
        super().__init__()
        self.pages = 0

    def subscription_months(self, *args: Any, **kw: Any) -> Any:
        self.pages += 1
        return super().subscription_months(*args, **kw)


def book_with(facts: list[Any], customers: int = 3) -> ReportsBook:
    clock = FakeClock(NOW)
    d = fake_directory(clock)
    onboard(d.resellers, clock, "demo", "CZK")
    onboard(d.resellers, clock, "other", "EUR")
    repo = CountingCustomers()
    for i in range(customers):
        repo.add(Customer(reseller="demo", id=cid(i), name=f"Customer {i}", domain=f"c{i}.test"))
    ledger = CountingLedger()
    ledger.load(facts, MONTHS)
    repo.reads.clear()
    return ReportsBook(ledger=ledger, customers=repo, resellers=d.resellers, clock=clock)


def grown_mid_february() -> list[Any]:
    """Customer 0: s1 bought in January with 10 seats, grown to 15 on 14 February."""
    return [fact(JAN, cid(0), "s1", state(10)), fact(FEB, cid(0), "s1", state(15))]


def many(customers: int = 3, per: int = 3) -> list[Any]:
    """`per` subscriptions per customer, bought in January, seats 1 + i + k."""
    return [
        fact(JAN, cid(i), f"s{k}", state(1 + i + k, product_id=PRODUCT if k else OTHER_PRODUCT))
        for i in range(customers)
        for k in range(per)
    ]


def keys(value: Any) -> Iterator[str]:
    """Every key of a JSON document, at any depth."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from keys(v)
    elif isinstance(value, list):
        for v in value:
            yield from keys(v)


def as_json(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True)


# --- numbers ----------------------------------------------------------------------------------


def test_a_mid_month_seat_change_shows_in_that_months_seats_and_revenue_movements():
    book = book_with(grown_mid_february())
    jan = licence_report(book, STAFF, "demo", month="2026-01").items[0]
    feb = licence_report(book, STAFF, "demo").items[0]  # default: this month (February)
    assert (jan.month, jan.seats_at_start, jan.seats_at_end) == ("2026-01", 0, 10)
    assert (feb.month, feb.seats_at_start, feb.seats_at_end) == ("2026-02", 10, 15)
    assert (feb.unit_price, feb.total_price, feb.monthly_price) == (
        Decimal("121.00"),
        Decimal("1815.00"),
        Decimal("1815.00"),
    )
    assert (feb.unit_cost, feb.total_cost, feb.margin) == (
        Decimal("110.00"),
        Decimal("1650.00"),
        Decimal("165.00"),
    )
    assert (feb.margin_percent, feb.markup_percent) == (Decimal("9.09"), Decimal("10.00"))

    rev = {m.month: m for m in revenue_report(book, STAFF, "demo", months=3).months}
    assert [rev["2025-12"].mrr, rev["2026-01"].new, rev["2026-01"].mrr] == [0, 1210, 1210]
    feb_rev = rev["2026-02"]
    assert (feb_rev.opening_mrr, feb_rev.expansion, feb_rev.net_change, feb_rev.mrr) == (
        Decimal("1210.00"),
        Decimal("605.00"),
        Decimal("605.00"),
        Decimal("1815.00"),
    )
    assert (feb_rev.new, feb_rev.contraction, feb_rev.churn, feb_rev.seats) == (0, 0, 0, 15)


def test_a_subscription_cancelled_mid_month_is_churn_with_no_seats_at_month_end():
    facts = [*grown_mid_february()[:1], fact(FEB, cid(0), "s1", state(10, status="cancelled"))]
    book = book_with(facts)
    row = licence_report(book, STAFF, "demo").items[0]
    assert (row.seats_at_start, row.seats_at_end, row.monthly_price) == (10, 0, 0)
    feb = revenue_report(book, STAFF, "demo", months=1).months[0]
    assert (feb.churn, feb.mrr, feb.subscriptions) == (Decimal("1210.00"), 0, 0)


def test_amounts_are_rounded_half_up_only_where_shown():
    # 1 seat at 0.30 a year is 0.025 a month: shown 0.03 (half-up, not half-even's 0.02); three
    # of them are 0.075 exactly, shown 0.08, not the sum of three rounded rows (0.09).
    annual = {"billing_cycle": "annual", "unit_customer_price": Decimal("0.30")}
    facts = [fact(JAN, cid(0), f"s{k}", state(1, **annual)) for k in range(3)]
    report = licence_report(book_with(facts), STAFF, "demo")
    assert [r.monthly_price for r in report.items] == [Decimal("0.03")] * 3
    assert report.totals.monthly_price == Decimal("0.08")


# --- totals and paging ------------------------------------------------------------------------


def test_totals_are_the_sum_of_the_rows_across_every_page_and_per_customer():
    book = book_with(many(customers=3, per=3))
    rows, per_customer, token = [], {}, None
    while True:
        page = licence_report(book, STAFF, "demo", page_size=2, continuation_token=token)
        rows += page.items
        for t in page.customer_totals:
            per_customer.setdefault(t.customer_id, []).append(t)
        token = page.continuation_token
        if token is None:
            break
    assert len(rows) == 9 and len({(r.customer_id, r.subscription_id) for r in rows}) == 9
    totals = page.totals
    for field in ("seats_at_end", "monthly_price", "monthly_cost", "margin"):
        total = getattr(totals, "seats" if field == "seats_at_end" else field)
        assert sum(getattr(r, field) for r in rows) == total, field
    assert totals.subscriptions == 9
    # A customer whose rows run over two pages has the same (whole) totals on both.
    for customer, shown in per_customer.items():
        mine = [r for r in rows if r.customer_id == customer]
        for t in shown:
            assert t.seats == sum(r.seats_at_end for r in mine)
            assert t.monthly_price == sum(r.monthly_price for r in mine)
            assert t.customer_name == mine[0].customer_name
    assert any(len(shown) == 2 for shown in per_customer.values())


def test_a_product_filter_totals_that_products_rows_only():
    book = book_with(many(customers=3, per=3))
    report = licence_report(book, STAFF, "demo", product_id=OTHER_PRODUCT)
    assert {r.product_id for r in report.items} == {OTHER_PRODUCT}
    assert report.totals.seats == sum(r.seats_at_end for r in report.items) == 1 + 2 + 3
    series = licence_series(book, STAFF, "demo", months=1, product_id=OTHER_PRODUCT)
    assert series.months[0].seats == 6


def test_customer_names_are_read_with_one_range_query_of_names_per_page_not_a_read_per_row():
    book = book_with(many(customers=3, per=3))
    report = licence_report(book, STAFF, "demo", page_size=9)
    assert {r.customer_name for r in report.items} == {"Customer 0", "Customer 1", "Customer 2"}
    assert book.customers.reads == ["column name"]  # type: ignore[attr-defined]


def test_licence_rows_walk_every_page_one_at_a_time():
    book = book_with(many(customers=3, per=3))
    ledger: Any = book.ledger
    rows = iter(licence_rows(book, STAFF, "demo").rows)
    assert ledger.pages == 0  # nothing read until asked
    first = next(rows)
    assert ledger.pages == 1 and first.customer_name == "Customer 0"
    rest = list(rows)
    assert len(rest) == 8 and {r.customer_name for r in rest} >= {"Customer 2"}


def test_the_monthly_series_has_each_months_totals_oldest_first():
    book = book_with(grown_mid_february())
    series = licence_series(book, STAFF, "demo", months=3)
    got = [(m.month, m.seats, m.subscriptions, m.monthly_price) for m in series.months]
    assert got == [
        ("2025-12", 0, 0, Decimal("0.00")),
        ("2026-01", 10, 1, Decimal("1210.00")),
        ("2026-02", 15, 1, Decimal("1815.00")),
    ]
    assert series.months[2].margin == Decimal("165.00")


# --- who sees what ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.CUSTOMER_ADMIN, Role.CUSTOMER_READER])
def test_a_customer_user_sees_its_own_rows_at_its_prices_and_no_cost_anywhere(role: Role):
    book = book_with(many(customers=3, per=2))
    me = who(role, customer=cid(1))
    report = licence_report(book, me, "demo")
    assert {r.customer_id for r in report.items} == {cid(1)}
    assert report.totals.seats == sum(r.seats_at_end for r in report.items)
    assert report.items[0].unit_price == Decimal("121.00")
    answers = [
        report,
        licence_series(book, me, "demo", months=3),
        revenue_report(book, me, "demo"),
        *licence_rows(book, me, "demo").rows,
    ]
    for answer in answers:
        found = [k for k in keys(as_json(answer)) if any(w in k.lower() for w in COST_WORDS)]
        assert not found, (type(answer).__name__, found)
    # Staff see them (the scan above can fail).
    assert any("Cost" in k for k in keys(as_json(licence_report(book, STAFF, "demo"))))


def test_a_customer_user_naming_another_customer_is_not_found():
    book = book_with(many())
    me = who(Role.CUSTOMER_READER, customer=cid(1))
    with pytest.raises(NotFound):
        licence_report(book, me, "demo", customer_id=cid(2))
    with pytest.raises(NotFound):
        revenue_report(book, me, "demo", customer_id=cid(2))
    with pytest.raises(NotFound):
        licence_rows(book, me, "demo", customer_id=cid(2))


def test_another_resellers_staff_and_an_unknown_customer_are_not_found():
    book = book_with(many())
    with pytest.raises(NotFound):
        licence_report(book, who(Role.ACCOUNT_MANAGER, "other"), "demo")
    with pytest.raises(NotFound):
        revenue_report(book, STAFF, "demo", customer_id="01JN0B0DY" + "0" * 17)
    with pytest.raises(NotFound):
        licence_report(book, ADMIN, "nosuchreseller")


def test_microsofts_cost_is_on_distributor_admins_rows_only():
    book = book_with(grown_mid_february())
    mine = licence_report(book, ADMIN, "demo").items[0]
    assert as_json(mine)["unitMicrosoftCost"] == "100.00"
    assert as_json(mine)["totalMicrosoftCost"] == "1500.00"
    staff = as_json(licence_report(book, STAFF, "demo"))
    assert not [k for k in keys(staff) if "microsoft" in k.lower()]


def test_staff_read_one_customer_with_its_name_and_totals():
    book = book_with(many())
    report = licence_report(book, STAFF, "demo", customer_id=cid(2))
    assert {r.customer_id for r in report.items} == {cid(2)}
    assert report.customer_name == "Customer 2"
    assert report.totals.seats == report.customer_totals[0].seats == 3 + 4 + 5


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda b: licence_report(b, STAFF, "demo", month="2026-13"), "month"),
        (lambda b: licence_report(b, STAFF, "demo", month="26-01"), "month"),
        (lambda b: licence_report(b, STAFF, "demo", page_size=0), "pageSize"),
        (lambda b: licence_report(b, STAFF, "demo", page_size=1001), "pageSize"),
        (lambda b: licence_series(b, STAFF, "demo", months=15), "months"),
        (lambda b: licence_series(b, STAFF, "demo", months=0), "months"),
        (lambda b: revenue_report(b, STAFF, "demo", months=25), "months"),
        (lambda b: licence_rows(b, STAFF, "demo", month="2026-1"), "month"),
    ],
)
def test_bad_report_parameters_are_refused_naming_the_field(call: Any, field: str):
    with pytest.raises(ValidationFailed) as refused:
        call(book_with(many()))
    assert [e.field for e in refused.value.errors] == [field]


def test_read_ahead_reads_the_next_page_while_the_caller_works_on_this_one():
    asked = threading.Event()

    def pages() -> Iterator[int]:
        yield 1
        asked.set()  # the second page is being read
        yield 2

    ahead = read_ahead(pages())
    assert next(ahead) == 1
    assert asked.wait(5), "the next page was not read ahead"
    assert list(ahead) == [2]


def test_read_ahead_raises_a_failed_read_where_that_page_would_have_come():
    def pages() -> Iterator[int]:
        yield 1
        raise ValidationFailed([FieldError("continuationToken", "is not a valid token")])

    ahead = read_ahead(pages())
    assert next(ahead) == 1
    with pytest.raises(ValidationFailed):
        next(ahead)


@pytest.mark.parametrize(
    ("ask", "field"),
    [
        (lambda b: licence_report(b, STAFF, "demo", customer_id="a/b"), "customer"),
        (lambda b: licence_report(b, STAFF, "demo", product_id="CFQ7#"), "product"),
        (lambda b: licence_series(b, STAFF, "demo", months=2, product_id="?"), "product"),
        (lambda b: licence_rows(b, STAFF, "demo", customer_id="x\\y"), "customer"),
        (lambda b: revenue_report(b, STAFF, "demo", customer_id="#"), "customer"),
    ],
)
def test_the_services_refuse_a_filter_a_table_key_cannot_hold_whoever_calls_them(ask, field):
    book = book_with(many())

    with pytest.raises(ValidationFailed) as caught:
        ask(book)

    assert [e.field for e in caught.value.errors] == [field]
