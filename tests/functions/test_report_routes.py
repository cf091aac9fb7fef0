"""GET /resellers/{r}/reports/licences and …/revenue, over the app's real triggers."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import openpyxl
import pytest

from shared import bootstrap
from shared.domain.ledger import months_ending
from tests.export_rows import scan_for_cost
from tests.functions.helpers import call, json_of
from tests.functions.world import CUST_A, CUST_B, CUST_OTHER, World, add_customers, build_world
from tests.report_fakes import fact, install_ledger, state

DEC, JAN = datetime(2025, 12, 3, tzinfo=UTC), datetime(2026, 1, 10, 8, tzinfo=UTC)  # now: 15 Jan
COST_WORDS = ("cost", "margin", "markup")


@pytest.fixture
def world() -> Iterator[World]:
    w = build_world()
    add_customers(w)
    facts = [
        fact(DEC, CUST_A, "a1", state(10)),
        fact(JAN, CUST_A, "a1", state(12)),  # grown mid-January
        fact(DEC, CUST_A, "a2", state(5, billing_cycle="annual")),
        fact(JAN, CUST_B, "b1", state(3)),  # new in January
        fact(DEC, CUST_OTHER, "o1", state(7, currency="EUR"), reseller="other"),
    ]
    install_ledger(w.container, facts, months_ending("2026-01", 14))
    bootstrap.use(w.container)
    yield w
    bootstrap.use(None)


def _get(world: World, report: str, role: str, reseller: str = "demo", **params: str) -> Any:
    return call(
        f"http_{report}_report",
        "GET",
        f"resellers/{reseller}/reports/{'licences' if report == 'licence' else report}",
        route={"r": reseller},
        token=world.token(role),
        params=params,
    )


def _keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _keys(v)
    elif isinstance(value, list):
        for v in value:
            yield from _keys(v)


def _cost_keys(body: Any) -> list[str]:
    return [k for k in _keys(body) if any(w in k.lower() for w in COST_WORDS)]


def test_staff_read_this_months_licences_with_names_cost_and_totals(world):
    resp = _get(world, "licence", "Sales")
    assert resp.status_code == 200, resp.get_body()
    body = json_of(resp)
    assert body["month"] == "2026-01" and body["currency"] == "CZK"
    rows = {r["subscriptionId"]: r for r in body["items"]}
    assert set(rows) == {"a1", "a2", "b1"}
    a1 = rows["a1"]
    assert (a1["customerName"], a1["seatsAtStart"], a1["seatsAtEnd"], a1["seatsAssigned"]) == (
        "Alfa s.r.o.",
        10,
        12,
        11,
    )
    assert (a1["unitPrice"], a1["totalPrice"], a1["unitCost"], a1["margin"]) == (
        "121.00",
        "1452.00",
        "110.00",
        "132.00",
    )
    assert "unitMicrosoftCost" not in a1
    # The annual subscription's monthly price: 5 × 121 / 12 = 50.4166… shown 50.42.
    assert rows["a2"]["monthlyPrice"] == "50.42"
    totals = {t["customerId"]: t for t in body["customerTotals"]}
    assert totals[CUST_B]["seats"] == 3 and totals[CUST_B]["customerName"] == "Beta a.s."
    assert body["totals"]["seats"] == 12 + 5 + 3
    assert body["totals"]["subscriptions"] == 3
    assert body["continuationToken"] is None


def test_a_page_at_a_time_with_a_continuation_token(world):
    first = json_of(_get(world, "licence", "AccountManager", pageSize="2"))
    assert len(first["items"]) == 2 and first["continuationToken"]
    rest = json_of(
        _get(
            world,
            "licence",
            "AccountManager",
            pageSize="2",
            continuationToken=first["continuationToken"],
        )
    )
    assert [r["subscriptionId"] for r in first["items"] + rest["items"]] == ["a1", "a2", "b1"]
    assert rest["continuationToken"] is None


@pytest.mark.parametrize("role", ["CustomerAdmin", "CustomerReader"])
def test_a_customer_user_reads_its_own_rows_without_any_cost_key(world, role):
    licences = json_of(_get(world, "licence", role))
    assert {r["customerId"] for r in licences["items"]} == {CUST_A}
    assert licences["totals"]["seats"] == 12 + 5  # its customer's, not the reseller's
    series = json_of(_get(world, "licence", role, months="14"))
    revenue = json_of(_get(world, "revenue", role))
    for body in (licences, series, revenue):
        assert not _cost_keys(body), _cost_keys(body)
    assert revenue["customerId"] == CUST_A and len(revenue["months"]) == 14
    staff = json_of(_get(world, "licence", "ReadOnly"))
    assert _cost_keys(staff)  # the scan finds them where they are


@pytest.mark.parametrize("report", ["licence", "revenue"])
def test_a_customer_user_asking_for_another_customer_gets_404(world, report):
    resp = _get(world, report, "CustomerReader", customer=CUST_B)
    assert resp.status_code == 404, resp.get_body()
    assert resp.mimetype == "application/problem+json"


@pytest.mark.parametrize("report", ["licence", "revenue"])
def test_another_resellers_staff_get_404_and_distributor_admins_any_reseller(world, report):
    assert _get(world, report, "AccountManager", reseller="other").status_code == 404
    resp = _get(world, report, "DistributorAdmin", reseller="other")
    assert resp.status_code == 200, resp.get_body()
    assert json_of(resp)["currency"] == "EUR"


def test_distributor_admins_see_microsofts_cost_on_licence_rows(world):
    body = json_of(_get(world, "licence", "DistributorAdmin", customer=CUST_B))
    assert [(r["unitMicrosoftCost"], r["totalMicrosoftCost"]) for r in body["items"]] == [
        ("100.00", "300.00")
    ]


def test_the_licence_series_and_the_revenue_months(world):
    series = json_of(_get(world, "licence", "Sales", months="2"))
    assert [(m["month"], m["seats"]) for m in series["months"]] == [
        ("2025-12", 15),
        ("2026-01", 20),
    ]
    revenue = json_of(_get(world, "revenue", "Sales", months="2"))
    jan = revenue["months"][1]
    assert (jan["month"], jan["openingMrr"], jan["new"], jan["expansion"]) == (
        "2026-01",
        "1260.42",  # 10 × 121 + 5 × 121 / 12
        "363.00",
        "242.00",
    )
    assert (jan["netChange"], jan["mrr"], jan["resellerCost"], jan["marginPercent"]) == (
        "605.00",
        "1865.42",
        "1695.83",
        "9.09",
    )
    one = json_of(_get(world, "revenue", "Sales", months="1", customer=CUST_B))
    assert [m["new"] for m in one["months"]] == ["363.00"]


@pytest.mark.parametrize(
    ("report", "params", "field"),
    [
        ("licence", {"month": "2026-13"}, "month"),
        ("licence", {"month": "January"}, "month"),
        ("licence", {"months": "15"}, "months"),
        ("licence", {"months": "x"}, "months"),
        ("licence", {"pageSize": "0"}, "pageSize"),
        ("licence", {"pageSize": "1001"}, "pageSize"),
        ("revenue", {"months": "25"}, "months"),
        ("revenue", {"months": "0"}, "months"),
        ("revenue", {"month": "2026-01"}, "month"),
    ],
)
def test_bad_report_parameters_are_a_400_naming_the_field(world, report, params, field):
    resp = _get(world, report, "Sales", **params)
    assert resp.status_code == 400, resp.get_body()
    assert resp.mimetype == "application/problem+json"
    assert [e["field"] for e in json_of(resp)["errors"]] == [field]


# --- downloads ------------------------------------------------------------------------------


def _csv_rows(resp: Any) -> list[dict[str, str]]:
    text = resp.get_body().decode("utf-8")
    assert text.startswith("\ufeff")  # a BOM, for spreadsheet programs
    return list(csv.DictReader(io.StringIO(text[1:]), delimiter=";"))  # demo is Czech


def test_staff_download_the_licence_report_as_csv_with_czech_decimals_and_the_filters_named(
    world,
):
    resp = _get(world, "licence", "Sales", format="csv", month="2026-01")

    assert resp.status_code == 200, resp.get_body()
    assert resp.mimetype == "text/csv"
    assert 'filename="licences_demo_' in resp.headers["Content-Disposition"]
    assert "2026-01" in resp.headers["Content-Disposition"]
    rows = _csv_rows(resp)
    assert len(rows) == 3  # a1, a2, b1: every row, not a page
    json_rows = {r["subscriptionId"]: r for r in json_of(_get(world, "licence", "Sales"))["items"]}
    a1 = next(r for r in rows if "a1" in r.values())
    assert Decimal(json_rows["a1"]["totalPrice"]) == Decimal(
        next(v for k, v in a1.items() if k.lower().startswith("total")).replace(",", ".")
    )
    assert scan_for_cost(list(rows[0]))  # staff do get the cost columns


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
@pytest.mark.parametrize("report", ["licence", "revenue"])
def test_a_customer_users_downloads_hold_its_own_rows_and_no_cost_column(world, report, fmt):
    params = {"format": fmt} if report == "revenue" else {"format": fmt, "month": "2026-01"}
    resp = _get(world, report, "CustomerAdmin", **params)

    assert resp.status_code == 200, resp.get_body()
    if fmt == "csv":
        rows = _csv_rows(resp)
        header = list(rows[0]) if rows else []
        cells = [v for r in rows for v in r.values()]
    else:
        sheet = openpyxl.load_workbook(io.BytesIO(resp.get_body()), read_only=True).active
        assert sheet is not None
        values = [list(r) for r in sheet.iter_rows(values_only=True)]
        header, cells = [str(v) for v in values[0]], [v for r in values[1:] for v in r]
        assert any(isinstance(v, int | float) for v in cells)  # numbers are numbers
    assert header and not scan_for_cost(header)
    if report == "licence":
        assert "a1" in cells and "b1" not in cells  # its own customer's rows only


def test_the_revenue_series_downloads_as_xlsx_with_numeric_months(world):
    resp = _get(world, "revenue", "AccountManager", format="xlsx", months="3")

    assert resp.status_code == 200, resp.get_body()
    sheet = openpyxl.load_workbook(io.BytesIO(resp.get_body()), read_only=True).active
    assert sheet is not None
    values = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert len(values) == 1 + 3
    header = [str(v) for v in values[0]]
    mrr = header.index("MRR")
    assert all(isinstance(r[mrr], int | float) for r in values[1:])


def test_a_bad_format_is_a_400_naming_format(world):
    resp = _get(world, "licence", "Sales", format="pdf")

    assert resp.status_code == 400
    assert "format" in json.dumps(json_of(resp))


# --- filters, paging, money as shown, completeness ----------------------------------------


@pytest.mark.parametrize(
    ("report", "params", "field"),
    [
        ("licence", {"customer": "a/b"}, "customer"),
        ("licence", {"customer": "#"}, "customer"),
        ("licence", {"customer": "?"}, "customer"),
        ("licence", {"product": "a/b"}, "product"),
        ("licence", {"product": "CFQ7#"}, "product"),
        ("licence", {"product": "?", "format": "csv"}, "product"),
        ("licence", {"customer": "a\\b", "months": "3"}, "customer"),
        ("revenue", {"customer": "a/b"}, "customer"),
    ],
)
def test_a_filter_a_table_key_cannot_hold_is_a_400_naming_it(world, report, params, field):
    resp = _get(world, report, "Sales", **params)

    assert resp.status_code == 400, resp.get_body()
    assert resp.mimetype == "application/problem+json"
    assert [e["field"] for e in json_of(resp)["errors"]] == [field]


@pytest.mark.parametrize(
    "changed",
    [
        {"month": "2025-12"},
        {"month": "2026-01", "customer": CUST_A},
        {"month": "2026-01", "product": "CFQ7TTC0LH18"},
    ],
)
def test_a_continuation_token_used_with_another_month_or_filter_is_a_400_naming_it(world, changed):
    first = json_of(_get(world, "licence", "Sales", pageSize="1", month="2026-01"))
    assert first["continuationToken"]

    resp = _get(
        world,
        "licence",
        "Sales",
        pageSize="1",
        continuationToken=first["continuationToken"],
        **changed,
    )

    assert resp.status_code == 400, resp.get_body()
    assert [e["field"] for e in json_of(resp)["errors"]] == ["continuationToken"]


def test_a_made_up_continuation_token_is_a_400_naming_it(world):
    first = json_of(_get(world, "licence", "Sales", pageSize="1"))
    _, _, ledgers_own = first["continuationToken"].partition(".")
    for forged in (ledgers_own, "0" * 16 + "." + ledgers_own, "1"):
        resp = _get(world, "licence", "Sales", pageSize="1", continuationToken=forged)

        assert resp.status_code == 400, (forged, resp.get_body())
        assert [e["field"] for e in json_of(resp)["errors"]] == ["continuationToken"]


def test_the_licence_report_says_whether_the_months_opening_finished(world):
    ledger = world.container.ledger_reader
    ledger.opened_months.discard(("demo", "2025-12"))

    assert json_of(_get(world, "licence", "Sales", month="2026-01"))["opened"] is True
    assert json_of(_get(world, "licence", "Sales", month="2025-12"))["opened"] is False
    assert json_of(_get(world, "licence", "CustomerReader", month="2025-12"))["opened"] is False
    series = json_of(_get(world, "licence", "Sales", months="2", month="2026-01"))
    assert [(m["month"], m["opened"]) for m in series["months"]] == [
        ("2025-12", False),
        ("2026-01", True),
    ]


@pytest.fixture
def odd_prices() -> Iterator[World]:
    """Two annual subscriptions of one seat whose monthly amounts do not round evenly: the
    customer pays 120.06 a year (10.005 a month), the reseller 60.05 (5.00416… a month)."""
    w = build_world()
    add_customers(w)
    annual = state(
        1,
        billing_cycle="annual",
        unit_customer_price=Decimal("120.06"),
        unit_reseller_cost=Decimal("60.05"),
    )
    facts = [fact(JAN, CUST_A, "a1", annual), fact(JAN, CUST_B, "b1", annual)]
    install_ledger(w.container, facts, months_ending("2026-01", 2))
    bootstrap.use(w.container)
    yield w
    bootstrap.use(None)


def _adds_up(row: dict[str, Any], price: str, cost: str) -> None:
    assert Decimal(row["margin"]) == Decimal(row[price]) - Decimal(row[cost]), row


def test_each_shown_margin_is_the_shown_price_less_the_shown_cost(odd_prices):
    body = json_of(_get(odd_prices, "licence", "Sales"))
    rows = body["items"]
    assert [(r["monthlyPrice"], r["monthlyCost"], r["margin"]) for r in rows] == [
        ("10.01", "5.00", "5.01"),
        ("10.01", "5.00", "5.01"),
    ]
    for figures in (*rows, *body["customerTotals"], body["totals"]):
        _adds_up(figures, "monthlyPrice", "monthlyCost")
    assert body["customerTotals"][0]["margin"] == "5.01"
    series = json_of(_get(odd_prices, "licence", "Sales", months="1", customer=CUST_B))
    assert series["months"][0]["margin"] == "5.01"
    revenue = json_of(_get(odd_prices, "revenue", "Sales", months="1", customer=CUST_B))
    month = revenue["months"][0]
    assert (month["mrr"], month["resellerCost"], month["margin"]) == ("10.01", "5.00", "5.01")
    assert Decimal(month["netChange"]) == Decimal(month["mrr"]) - Decimal(month["openingMrr"])


def test_a_total_is_rounded_from_the_exact_sum_not_summed_from_the_rows_shown(odd_prices):
    body = json_of(_get(odd_prices, "licence", "Sales"))

    # 2 × 10.005 = 20.01 exactly (the rows show 10.01 each); 2 × 5.00416… = 10.0083… → 10.01.
    totals = body["totals"]
    assert (totals["monthlyPrice"], totals["monthlyCost"], totals["margin"]) == (
        "20.01",
        "10.01",
        "10.00",
    )
    month = json_of(_get(odd_prices, "revenue", "Sales", months="1"))["months"][0]
    assert (month["mrr"], month["resellerCost"], month["margin"]) == ("20.01", "10.01", "10.00")
