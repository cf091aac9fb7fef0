"""The catalog's HTTP triggers, called directly with fakes behind the container."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from functions._http import encode_etag
from shared import bootstrap
from tests.catalog_fakes import (
    BOTH,
    COMMERCIAL_ONLY,
    EDU_ONLY,
    CatalogWorld,
    cost_fields,
    install_catalog,
)
from tests.functions.helpers import call, json_of
from tests.functions.world import CUST_A, CUST_B, World, build_world


@pytest.fixture
def world() -> Iterator[tuple[World, CatalogWorld]]:
    w = build_world()
    cw = install_catalog(
        w.container, w.clock, {("demo", CUST_A): "education", ("demo", CUST_B): "commercial"}
    )
    bootstrap.use(w.container)
    yield w, cw
    bootstrap.use(None)


def public(reseller: str, **params: str) -> Any:
    return call(
        "http_public_catalog",
        "GET",
        f"resellers/{reseller}/catalog",
        route={"r": reseller},
        params=params,
    )


def customer(w: World, role: str, c: str = CUST_A, **params: str) -> Any:
    return call(
        "http_customer_catalog",
        "GET",
        f"resellers/demo/customers/{c}/catalog",
        route={"r": "demo", "c": c},
        token=w.token(role),
        params=params,
    )


def test_the_public_catalog_ignores_campaign_tags_and_the_customer_catalog_refuses_them(world):
    w, _ = world
    tagged = public("demo", utm_source="newsletter", _="1764460000")
    assert tagged.status_code == 200 and json_of(tagged)["items"]
    refused = customer(w, "Sales", utm_source="newsletter")
    assert refused.status_code == 400
    assert [e["field"] for e in json_of(refused)["errors"]] == ["utm_source"]


def test_anonymous_public_catalog_has_prices_and_no_cost_or_margin_anywhere(world):
    resp = public("demo")
    assert resp.status_code == 200
    body = json_of(resp)
    assert body["items"] and cost_fields(body) == []
    assert any(o["recommendedRetailPrice"] for i in body["items"] for o in i["offers"])
    assert "public" in resp.headers["Cache-Control"]
    detail = call(
        "http_public_catalog_product",
        "GET",
        f"resellers/demo/catalog/products/{world[1].pid(BOTH)}",
        route={"r": "demo", "p": world[1].pid(BOTH)},
    )
    assert detail.status_code == 200 and cost_fields(json_of(detail)) == []


def test_filters_on_the_wire(world):
    _, cw = world
    edu = {i["id"] for i in json_of(public("demo", segment="education"))["items"]}
    assert cw.pid(EDU_ONLY) in edu and cw.pid(COMMERCIAL_ONLY) not in edu
    found = json_of(public("demo", q="visio"))["items"]
    assert [i["id"] for i in found] == [cw.pid(COMMERCIAL_ONLY)]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"pageSize": "0"}, "pageSize"),
        ({"continuationToken": "%%%"}, "continuationToken"),
        ({"category": "Not/A Category"}, "category"),
        ({"segment": "x" * 60}, "segment"),
    ],
)
def test_bad_query_is_a_problem_naming_the_field(world, params, field):
    resp = public("demo", **params)
    assert resp.status_code == 400 and resp.mimetype == "application/problem+json"
    assert field in {e["field"] for e in json_of(resp)["errors"]}


def test_unknown_reseller_and_product_are_404_problems(world):
    assert public("nobody").status_code == 404
    resp = call(
        "http_public_catalog_product",
        "GET",
        "resellers/demo/catalog/products/NOPE",
        route={"r": "demo", "p": "NOPE"},
    )
    assert resp.status_code == 404 and resp.mimetype == "application/problem+json"


def test_customer_users_see_only_their_price_and_staff_the_breakdown(world):
    w, _ = world
    for role in ("CustomerAdmin", "CustomerReader"):
        body = json_of(customer(w, role))
        assert body["items"] and cost_fields(body) == [], role
    staff = json_of(customer(w, "Sales"))
    offer = staff["items"][0]["offers"][0]
    assert {
        "resellerCost",
        "recommendedRetailPrice",
        "customerPrice",
        "margin",
        "marginPercent",
        "markupPercent",
        "belowCost",
    } <= set(offer)
    assert offer["customerPrice"]["currency"] == "CZK"
    assert isinstance(offer["customerPrice"]["amount"], str)
    assert cost_fields(staff)  # the scan does find them when they are there


def test_education_customer_gets_education_offers_only(world):
    w, cw = world
    edu = {i["id"] for i in json_of(customer(w, "Sales", CUST_A))["items"]}
    com = {i["id"] for i in json_of(customer(w, "Sales", CUST_B))["items"]}
    assert cw.pid(EDU_ONLY) in edu and cw.pid(EDU_ONLY) not in com
    assert cw.pid(COMMERCIAL_ONLY) in com and cw.pid(COMMERCIAL_ONLY) not in edu


def put_entry(w: World, cw: CatalogWorld, slug: str, body: Any, etag: str | None) -> Any:
    headers = {"If-Match": etag} if etag else {}
    pid = cw.pid(slug)
    return call(
        "http_put_catalog_entry",
        "PUT",
        f"resellers/demo/catalog/products/{pid}",
        route={"r": "demo", "p": pid},
        token=w.token("AccountManager"),
        body=body,
        headers=headers,
    )


def test_entry_writes_need_if_match_and_report_every_bad_field(world):
    w, cw = world
    current = cw.store.entries[("demo", cw.pid(BOTH))]
    assert put_entry(w, cw, BOTH, {"visible": True}, None).status_code == 428
    assert put_entry(w, cw, BOTH, {"visible": True}, '"c3RhbGU"').status_code == 412
    bad = put_entry(
        w, cw, BOTH, {"categories": ["nope"], "markupPercent": "-5"}, encode_etag(current.etag)
    )
    assert bad.status_code == 400
    assert {e["field"] for e in json_of(bad)["errors"]} == {"categories.0", "markupPercent"}
    unknown = put_entry(w, cw, BOTH, {"colour": "red"}, encode_etag(current.etag))
    assert unknown.status_code == 400
    ok = put_entry(
        w, cw, BOTH, {"categories": ["m365"], "name": "E3 by Demo"}, encode_etag(current.etag)
    )
    assert ok.status_code == 200 and ok.headers["ETag"]


def test_an_edit_by_demo_shows_in_demos_public_catalog_and_not_others(world):
    w, cw = world
    current = cw.store.entries[("demo", cw.pid(BOTH))]
    resp = put_entry(
        w, cw, BOTH, {"categories": ["m365"], "name": "E3 by Demo"}, encode_etag(current.etag)
    )
    assert resp.status_code == 200
    assert "E3 by Demo" in {i["name"] for i in json_of(public("demo"))["items"]}
    assert "E3 by Demo" not in {i["name"] for i in json_of(public("other"))["items"]}


def test_categories_round_trip_with_etags(world):
    w, _ = world
    token = w.token("Sales")
    got = call(
        "http_get_catalog_categories",
        "GET",
        "resellers/demo/catalog/categories",
        route={"r": "demo"},
        token=token,
    )
    body = {"categories": [{"id": "new", "name": "New"}, *json_of(got)["categories"]]}
    put = call(
        "http_put_catalog_categories",
        "PUT",
        "resellers/demo/catalog/categories",
        route={"r": "demo"},
        token=token,
        body=body,
        headers={"If-Match": got.headers["ETag"]},
    )
    assert put.status_code == 200
    assert json_of(public("demo"))["categories"][0]["id"] == "new"
    again = call(
        "http_put_catalog_categories",
        "PUT",
        "resellers/demo/catalog/categories",
        route={"r": "demo"},
        token=token,
        body=body,
        headers={"If-Match": got.headers["ETag"]},
    )
    assert again.status_code == 412


def test_import_on_demand_reports_what_changed(world):
    w, _ = world
    resp = call(
        "http_import_catalog",
        "POST",
        "catalog/imports",
        token=w.token("DistributorAdmin"),
        params={"market": "CZ"},
    )
    assert resp.status_code == 200
    body = json_of(resp)
    assert body["unchanged"] == body["products"] > 0 and body["stampChanged"] is False
    bad = call(
        "http_import_catalog",
        "POST",
        "catalog/imports",
        token=w.token("DistributorAdmin"),
        params={"market": "cz1"},
    )
    assert bad.status_code == 400


# --- prices: pinned, round trip, currency, the distributor's mark-up --------------------------

PINNED = {
    "skuId": "0001",
    "segment": "commercial",
    "term": "P1M",
    "billingCycle": "monthly",
    "price": {"amount": "999.99", "currency": "CZK"},
}


def get_entry(w: World, cw: CatalogWorld, slug: str) -> Any:
    pid = cw.pid(slug)
    return call(
        "http_get_catalog_entry",
        "GET",
        f"resellers/demo/catalog/entries/{pid}",
        route={"r": "demo", "p": pid},
        token=w.token("AccountManager"),
    )


def offer_of(w: World, cw: CatalogWorld, role: str, term: str, cycle: str) -> dict[str, Any]:
    body = json_of(customer(w, role, CUST_B))
    item = next(i for i in body["items"] if i["id"] == cw.pid(BOTH))
    return next(
        o
        for o in item["offers"]
        if (o["skuId"], o["term"], o["billingCycle"]) == ("0001", term, cycle)
    )


def without_stamp(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != "updatedAt"}


def test_a_pinned_price_survives_a_get_put_round_trip_and_a_microsoft_cost_change(world):
    w, cw = world
    got = get_entry(w, cw, BOTH)
    body = {**json_of(got), "customerPrices": [PINNED], "markupPercent": "25"}
    assert put_entry(w, cw, BOTH, body, got.headers["ETag"]).status_code == 200

    shown = get_entry(w, cw, BOTH)
    assert json_of(shown)["customerPrices"] == [PINNED]
    # What GET answers, PUT takes back unchanged, and nothing is lost.
    back = put_entry(w, cw, BOTH, json_of(shown), shown.headers["ETag"])
    assert back.status_code == 200
    assert without_stamp(json_of(get_entry(w, cw, BOTH))) == without_stamp(json_of(shown))

    monthly = offer_of(w, cw, "Sales", "P1M", "monthly")
    annual = offer_of(w, cw, "Sales", "P1Y", "annual")
    assert monthly["customerPrice"] == PINNED["price"] and monthly["pinned"] is True
    # Microsoft raises its price: the pinned price stays, the mark-up follows the cost.
    cw.pc.catalog.sku_by_slug(BOTH).erp_month_eur *= 2
    cw.run_import()
    monthly_after = offer_of(w, cw, "Sales", "P1M", "monthly")
    annual_after = offer_of(w, cw, "Sales", "P1Y", "annual")
    assert Decimal(monthly_after["resellerCost"]["amount"]) > Decimal(
        monthly["resellerCost"]["amount"]
    )
    assert monthly_after["customerPrice"] == PINNED["price"]
    assert Decimal(annual_after["customerPrice"]["amount"]) > Decimal(
        annual["customerPrice"]["amount"]
    )
    assert annual_after["markupPercent"] == "25"
    assert json_of(get_entry(w, cw, BOTH))["customerPrices"] == [PINNED]


def test_a_pinned_price_in_another_currency_is_refused_naming_the_field(world):
    w, cw = world
    got = get_entry(w, cw, BOTH)
    eur = {**PINNED, "price": {"amount": "40.00", "currency": "EUR"}}
    resp = put_entry(w, cw, BOTH, {**json_of(got), "customerPrices": [eur]}, got.headers["ETag"])
    assert resp.status_code == 400
    assert [e["field"] for e in json_of(resp)["errors"]] == ["customerPrices.0.price.currency"]


def patch_reseller(w: World, body: dict[str, Any], role: str = "DistributorAdmin") -> Any:
    got = call(
        "http_get_reseller", "GET", "resellers/demo", route={"r": "demo"}, token=w.token(role)
    )
    return call(
        "http_update_reseller",
        "PATCH",
        "resellers/demo",
        route={"r": "demo"},
        token=w.token(role),
        body=body,
        headers={"If-Match": got.headers["ETag"]},
    )


def test_changing_currency_or_market_with_priced_entries_is_a_409_that_says_why(world):
    w, cw = world
    got = get_entry(w, cw, BOTH)
    body = {**json_of(got), "customerPrices": [PINNED]}
    assert put_entry(w, cw, BOTH, body, got.headers["ETag"]).status_code == 200
    for change in ({"currency": "EUR"}, {"country": "SK"}):
        resp = patch_reseller(w, change)
        assert resp.status_code == 409 and resp.mimetype == "application/problem+json"
        detail = json_of(resp)["detail"]
        assert next(iter(change)) in detail and cw.pid(BOTH) in detail and "CZK" in detail
    # The same currency again is no change; other fields still change.
    assert patch_reseller(w, {"currency": "CZK", "name": "Demo 2"}).status_code == 200


def test_a_currency_change_without_priced_entries_goes_through(world):
    w, _ = world
    resp = patch_reseller(w, {"currency": "EUR"})
    # demo's entries show products but set no prices or mark-ups.
    assert resp.status_code == 200 and json_of(resp)["currency"] == "EUR"


def test_reseller_staff_see_the_distributor_markup_only_as_their_cost(world):
    w, cw = world
    before = offer_of(w, cw, "Sales", "P1Y", "annual")
    resp = patch_reseller(w, {"distributorMarkupPercent": "5"})
    assert resp.status_code == 200 and json_of(resp)["distributorMarkupPercent"] == "5"
    w.clock.advance(seconds=120)  # past the catalog's profile cache
    for role in ("Sales", "AccountManager", "ReadOnly"):
        staff = offer_of(w, cw, role, "P1Y", "annual")
        assert "microsoftCost" not in staff and "distributorMarkupPercent" not in staff, role
        microsoft = Decimal(before["resellerCost"]["amount"])  # no mark-up before
        expected = (microsoft * Decimal("1.05")).quantize(Decimal("0.01"), ROUND_HALF_UP)
        assert Decimal(staff["resellerCost"]["amount"]) == expected
        assert "distributorMarkupPercent" not in json_of(
            call(
                "http_get_reseller",
                "GET",
                "resellers/demo",
                route={"r": "demo"},
                token=w.token(role),
            )
        )
    admin = offer_of(w, cw, "DistributorAdmin", "P1Y", "annual")
    assert admin["microsoftCost"] == before["resellerCost"]
    assert admin["distributorMarkupPercent"] == "5"
    # Only the distributor may set it.
    assert patch_reseller(w, {"distributorMarkupPercent": "0"}, "AccountManager").status_code == 403


def test_a_null_distributor_markup_puts_the_reseller_back_on_the_default(world):
    w, _ = world
    assert patch_reseller(w, {"distributorMarkupPercent": "7"}).status_code == 200
    resp = patch_reseller(w, {"distributorMarkupPercent": None})
    assert resp.status_code == 200, resp.get_body()
    assert json_of(resp)["distributorMarkupPercent"] is None
