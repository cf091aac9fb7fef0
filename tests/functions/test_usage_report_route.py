"""GET /api/resellers/{r}/reports/usage through the real trigger, with an imported month."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date
from typing import Any

import openpyxl
import pytest

from functions._http import encode_etag
from shared import bootstrap
from shared.services import usage_import
from tests.export_rows import scan_for_cost
from tests.functions.helpers import call, json_of
from tests.functions.world import CUST_A, CUST_B, World, add_customers, build_world
from tests.usage_fakes import FakeAzureUsage, usage_line
from tests.usage_report_fakes import claim_tenant, drain, install_usage

TENANT_A = "aaaaaaaa-0000-0000-0000-00000000000a"
TENANT_B = "bbbbbbbb-0000-0000-0000-00000000000b"
MONTH = "2026-01"
FORBIDDEN_WORDS = ("cost", "margin", "markup")


@pytest.fixture
def world() -> Iterator[World]:
    w = build_world()
    add_customers(w)
    claim_tenant(w.container, "demo", CUST_A, TENANT_A)
    claim_tenant(w.container, "demo", CUST_B, TENANT_B)
    book = install_usage(w.container)
    usage = FakeAzureUsage(
        now=w.clock.now,
        usage={
            MONTH: [
                usage_line("sub-a", date(2026, 1, 2), customer=TENANT_A, quantity="3"),
                usage_line("sub-a", date(2026, 1, 2), customer=TENANT_A,
                           meter_category="Storage", quantity="2"),
                usage_line("sub-b", date(2026, 1, 2), customer=TENANT_B, quantity="8"),
            ]
        },
    )  # fmt: skip
    usage_import.begin(book)
    drain(book, usage)
    bootstrap.use(w.container)
    yield w
    bootstrap.use(None)


def get(world: World, role: str, reseller: str = "demo", **params: str) -> Any:
    return call(
        "http_usage_report",
        "GET",
        f"resellers/{reseller}/reports/usage",
        route={"r": reseller},
        token=world.token(role),
        params={"month": MONTH, **params},
    )


def keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield key
            yield from keys(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from keys(inner)


def test_staff_see_reseller_cost_price_and_margin_but_not_microsofts_cost(world: World) -> None:
    resp = get(world, "ReadOnly")

    assert resp.status_code == 200
    body = json_of(resp)
    assert [(r["customerId"], r["group"]) for r in body["rows"]] == [
        (CUST_A, "Storage"),
        (CUST_A, "Virtual Machines"),
        (CUST_B, "Virtual Machines"),
    ]
    assert body["totals"] == [
        {
            "currency": "EUR",
            "lines": 3,
            "customerPrice": "7.15",
            "resellerCost": "6.50",
            "margin": "0.65",
            "marginPercent": "9.09",
        }
    ]
    assert body["usageMarkupPercent"] == "10"
    assert "microsoftCost" not in set(keys(body))


def test_a_distributor_admin_sees_microsofts_cost(world: World) -> None:
    body = json_of(get(world, "DistributorAdmin"))

    assert body["totals"][0]["microsoftCost"] == "6.50"
    assert body["distributorMarkupPercent"] == "0"


def test_a_customer_users_answer_has_its_rows_and_no_cost_margin_or_markup_key(
    world: World,
) -> None:
    resp = get(world, "CustomerReader")

    assert resp.status_code == 200
    body = json_of(resp)
    assert {r["customerId"] for r in body["rows"]} == {CUST_A}
    assert body["totals"][0]["customerPrice"] == "2.75"  # (3 + 2) × 0.5 × 1.10
    found = [k for k in keys(body) if any(w in k.lower() for w in FORBIDDEN_WORDS)]
    assert found == []


def test_a_customer_user_asking_for_another_customer_gets_404(world: World) -> None:
    assert get(world, "CustomerAdmin", customer=CUST_B).status_code == 404


def test_another_resellers_staff_get_404(world: World) -> None:
    resp = call(
        "http_usage_report",
        "GET",
        "resellers/other/reports/usage",
        route={"r": "other"},
        token=world.token("AccountManager"),
    )

    assert resp.status_code == 404


@pytest.mark.parametrize(
    ("params", "field"),
    [({"month": "2026-13"}, "month"), ({"groupBy": "meter"}, "groupBy"), ({"x": "1"}, "x")],
)
def test_a_bad_parameter_is_a_400_naming_it(
    world: World, params: dict[str, str], field: str
) -> None:
    resp = get(world, "AccountManager", **params)

    assert resp.status_code == 400
    assert [e["field"] for e in json_of(resp)["errors"]] == [field]


def test_grouping_by_subscription_for_one_customer(world: World) -> None:
    body = json_of(get(world, "Sales", customer=CUST_A, groupBy="subscription"))

    assert [(r["group"], r["quantity"], r["unit"]) for r in body["rows"]] == [("sub-a", "5", "")]


def test_the_usage_markup_set_in_the_settings_prices_the_report(world: World) -> None:
    etag = world.container.resellers.get("reseller", "demo").etag or ""
    put = call(
        "http_put_settings",
        "PUT",
        "resellers/demo/settings",
        route={"r": "demo"},
        token=world.token("AccountManager"),
        body={"appearance": {"displayName": "Demo"}, "usageMarkupPercent": "20"},
        headers={"If-Match": encode_etag(etag)},
    )
    assert put.status_code == 200, json_of(put)

    body = json_of(get(world, "AccountManager"))

    assert body["usageMarkupPercent"] == "20"
    assert body["totals"][0]["customerPrice"] == "7.80"  # 6.50 × 1.20


def test_a_negative_usage_markup_is_refused_naming_it(world: World) -> None:
    etag = world.container.resellers.get("reseller", "demo").etag or ""
    put = call(
        "http_put_settings",
        "PUT",
        "resellers/demo/settings",
        route={"r": "demo"},
        token=world.token("AccountManager"),
        body={"appearance": {"displayName": "Demo"}, "usageMarkupPercent": "-5"},
        headers={"If-Match": encode_etag(etag)},
    )

    assert put.status_code == 400
    assert [e["field"] for e in json_of(put)["errors"]] == ["usageMarkupPercent"]


def test_a_repeated_customer_parameter_is_a_400(world: World) -> None:
    # The host joins a repeated query parameter's values with commas.
    resp = get(world, "AccountManager", customer=f"{CUST_A},{CUST_B}")

    assert resp.status_code == 400
    assert [e["field"] for e in json_of(resp)["errors"]] == ["customer"]


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_the_usage_report_downloads_and_a_customer_users_file_has_no_cost_column(
    world: World, fmt: str
) -> None:
    staff = get(world, "ReadOnly", format=fmt, customer=CUST_A)
    mine = get(world, "CustomerAdmin", format=fmt)

    assert staff.status_code == mine.status_code == 200, (staff.get_body(), mine.get_body())
    assert 'filename="usage_demo_month-2026-01_' in staff.headers["Content-Disposition"]
    staff_rows, mine_rows = _table(staff, fmt), _table(mine, fmt)
    assert scan_for_cost(staff_rows[0])  # staff do get the cost columns
    assert not scan_for_cost(mine_rows[0])
    assert len(staff_rows) == 1 + 2  # the header and customer A's two groups
    customer_ids = {row[0] for row in mine_rows[1:]}
    assert customer_ids == {CUST_A}  # the customer user's own rows only


def _table(resp: Any, fmt: str) -> list[list[Any]]:
    if fmt == "csv":
        text = resp.get_body().decode("utf-8").removeprefix("\ufeff")
        return list(csv.reader(io.StringIO(text), delimiter=";"))
    sheet = openpyxl.load_workbook(io.BytesIO(resp.get_body()), read_only=True).active
    assert sheet is not None
    return [list(r) for r in sheet.iter_rows(values_only=True)]
