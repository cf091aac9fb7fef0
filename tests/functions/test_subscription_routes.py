"""Subscription routes through the real HTTP triggers: reading (refresh, views), requesting
changes (rules, 202 + Change order, 412/409/400/404), the watchdog's write 2."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from functions._http import encode_etag
from shared import bootstrap
from shared.domain.customers import Qualification
from shared.domain.errors import UpstreamRejected, UpstreamUnavailable
from shared.domain.orders import OrderKind, OrderStatus, order_row_key
from shared.domain.outbox import Queue
from shared.domain.subscriptions import NextTerm, Subscription, TransitionOption
from shared.services import watchdog
from shared.services.subscriptions import requests as sub_requests
from shared.services.subscriptions.requests import PendingChanges
from tests.catalog_fakes import install_catalog
from tests.functions.helpers import call, json_of
from tests.functions.world import CUST_A, CUST_B, CUST_OTHER, World, add_customers, build_world
from tests.order_fakes import FakeOrderPartnerCenter, install_orders
from tests.subscription_fakes import facts_of, seed_subscription

BASE = "resellers/{r}/customers/{c}/subscriptions"


@pytest.fixture
def world() -> Iterator[World]:
    w = build_world()
    install_catalog(
        w.container,
        w.clock,
        {("demo", CUST_A): "commercial", ("demo", CUST_B): "commercial", ("other", CUST_OTHER): ""},
    )
    add_customers(w)
    install_orders(w.container)
    c = w.container
    for reseller, cid in (("demo", CUST_A), ("demo", CUST_B), ("other", CUST_OTHER)):
        customer = c.customers.get(reseller, cid)
        customer.tenant_id, customer.qualification = str(uuid.uuid4()), Qualification.APPROVED
        c.customers.update(customer)
    bootstrap.use(c)
    yield w
    bootstrap.use(None)


def pc(world: World) -> FakeOrderPartnerCenter:
    found: FakeOrderPartnerCenter = world.container.partner_center
    return found


def _route(sub: Subscription, reseller: str | None = None) -> dict[str, str]:
    return {"r": reseller or sub.reseller, "c": sub.customer_id, "s": sub.id}


def get(world: World, sub: Subscription, role: str = "AccountManager", **kw: Any) -> Any:
    route = _route(sub, kw.pop("reseller", None))
    return call(
        "http_get_subscription",
        "GET",
        f"{BASE}/{{s}}".format(**route),
        route=route,
        token=world.token(role),
        **kw,
    )


def patch(
    world: World,
    sub: Subscription,
    body: Any,
    role: str = "AccountManager",
    etag: str | None = None,
) -> Any:
    route = _route(sub)
    if etag is None:
        etag = encode_etag(world.container.subscriptions.get(sub.customer_id, sub.id.lower()).etag)
    return call(
        "http_change_subscription",
        "PATCH",
        f"{BASE}/{{s}}".format(**route),
        route=route,
        token=world.token(role),
        body=body,
        headers={"If-Match": etag},
    )


def post(
    world: World, sub: Subscription, what: str, body: Any, role: str = "AccountManager"
) -> Any:
    route = _route(sub)
    return call(
        f"http_{what}_subscription",
        "POST",
        f"{BASE}/{{s}}/{what}".format(**route),
        route=route,
        token=world.token(role),
        body=body,
    )


def next_term(world: World, sub: Subscription, method: str, body: Any = None) -> Any:
    route = _route(sub)
    current = world.container.subscriptions.get(sub.customer_id, sub.id.lower())
    name = (
        "http_schedule_subscription_change"
        if method == "PUT"
        else "http_unschedule_subscription_change"
    )
    return call(
        name,
        method,
        f"{BASE}/{{s}}/next-term".format(**route),
        route=route,
        token=world.token("AccountManager"),
        body=body,
        headers={"If-Match": encode_etag(current.etag)},
    )


def record(world: World, sub: Subscription) -> Subscription:
    return world.container.subscriptions.get(sub.customer_id, sub.id.lower())


def orders_of(world: World) -> list[Any]:
    return list(world.container.orders.iterate())


# --- reading ----------------------------------------------------------------------------------


def test_a_subscription_read_after_a_minute_is_refreshed_from_partner_center_with_its_licences(
    world: World,
):
    c = world.container
    sub = seed_subscription(c, "demo", CUST_A)
    pc(world).add_subscription(facts_of(sub, quantity=12, auto_renew=False))
    pc(world).assigned[sub.id] = 7  # counted per SKU under the catalog's part number

    fresh = get(world, sub)
    assert json_of(fresh)["quantity"] == 10, "facts read within a minute are served as stored"
    assert "subscription" not in pc(world).calls

    world.clock.advance(seconds=61)
    resp = get(world, sub)
    body = json_of(resp)
    assert resp.status_code == 200 and resp.headers["ETag"]
    assert (body["quantity"], body["autoRenew"], body["assignedLicences"]) == (12, False, 7)
    assert body["refreshedAt"].startswith(world.clock.now().isoformat()[:19])
    end = sub.commitment_end_date
    assert end is not None and body["renewsOn"] == (end.date() + timedelta(days=1)).isoformat()
    assert body["refundableQuantity"]["total"] == 10
    assert [d["quantity"] for d in body["refundableQuantity"]["details"]] == [10]
    stored = record(world, sub)
    assert (stored.quantity, stored.assigned_licences) == (12, 7)


def test_a_subscription_is_served_from_the_record_when_partner_center_is_unavailable(
    world: World,
):
    sub = seed_subscription(world.container, "demo", CUST_A)
    world.clock.advance(minutes=5)
    pc(world).fail_next.append(UpstreamUnavailable("Partner Center is down"))
    resp = get(world, sub)
    assert resp.status_code == 200
    assert json_of(resp)["refreshedAt"] is not None and json_of(resp)["quantity"] == 10


def test_licences_partner_center_refuses_leave_the_read_refreshed_with_the_stored_licences(
    world: World,
):
    sub = seed_subscription(world.container, "demo", CUST_A)
    stored = record(world, sub)
    stored.assigned_licences = 4
    world.container.subscriptions.update(stored)
    pc(world).add_subscription(facts_of(sub, quantity=12))
    world.clock.advance(minutes=5)
    licences = pc(world).licence_counts

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise UpstreamRejected("This operation needs an app+user token.", code="403", status=403)

    pc(world).licence_counts = refused  # type: ignore[method-assign]
    resp = get(world, sub)
    pc(world).licence_counts = licences  # type: ignore[method-assign]

    assert resp.status_code == 200, resp.get_body()
    body = json_of(resp)
    assert (body["quantity"], body["assignedLicences"]) == (12, 4)
    assert body["refreshedAt"].startswith(world.clock.now().isoformat()[:19])
    assert (record(world, sub).quantity, record(world, sub).assigned_licences) == (12, 4)


def test_staff_see_cost_and_margin_and_customer_users_only_their_own_subscriptions_at_their_price(
    world: World,
):
    c = world.container
    mine = seed_subscription(c, "demo", CUST_A)
    seed_subscription(c, "demo", CUST_B)

    def listed(role: str, customer: str, reseller: str = "demo") -> Any:
        return call(
            "http_list_subscriptions",
            "GET",
            BASE.format(r=reseller, c=customer),
            route={"r": reseller, "c": customer},
            token=world.token(role),
        )

    staff = json_of(listed("Sales", CUST_A))["items"]
    assert [s["id"] for s in staff] == [mine.id]
    assert {"unitCost", "totalCost", "margin"} <= set(staff[0])
    assert staff[0]["totalPrice"]["amount"] == str(mine.priced.unit.customer_price.amount * 10)  # type: ignore[union-attr]
    public = json_of(listed("CustomerReader", CUST_A))["items"]
    assert [s["id"] for s in public] == [mine.id]
    assert not {"unitCost", "totalCost", "margin"} & set(public[0])
    assert "resellerCost" not in str(public[0]["priced"])
    assert listed("CustomerReader", CUST_B).status_code == 404
    assert listed("AccountManager", CUST_OTHER, "other").status_code == 404
    assert get(world, mine, reseller="other").status_code == 404


def test_a_list_with_an_unknown_parameter_is_a_400_naming_it(world: World):
    seed_subscription(world.container, "demo", CUST_A)
    resp = call(
        "http_list_subscriptions",
        "GET",
        BASE.format(r="demo", c=CUST_A),
        route={"r": "demo", "c": CUST_A},
        token=world.token("Sales"),
        params={"pagesize": "5"},  # not `pageSize`: silently ignored it would mislead
    )
    assert resp.status_code == 400
    assert [e["field"] for e in json_of(resp)["errors"]] == ["pagesize"]


def test_an_unknown_subscription_is_a_404(world: World):
    sub = seed_subscription(world.container, "demo", CUST_A)
    ghost = sub.model_copy(update={"id": str(uuid.uuid4())})
    assert get(world, ghost).status_code == 404
    resp = patch(world, ghost, {"quantity": 11}, etag='"bm90LW91cnM"')
    assert resp.status_code == 404, resp.get_body()
    assert get(world, sub.model_copy(update={"id": "../../x"})).status_code == 404


# --- requesting changes -----------------------------------------------------------------------


def test_an_increase_answers_202_with_the_change_order_and_the_subscription_shows_it_pending(
    world: World,
):
    sub = seed_subscription(world.container, "demo", CUST_A)
    resp = patch(world, sub, {"quantity": 12})
    assert resp.status_code == 202, resp.get_body()
    order = json_of(resp)
    assert order["kind"] == "Change" and order["status"] == "Submitted"
    assert order["change"]["summary"] == "quantity 10 → 12" and order["change"]["quantity"] == 12
    assert (order["lines"][0]["quantity"], order["lines"][0]["subscriptionQuantity"]) == (2, 12)
    # The customer's price per seat stays as sold.
    assert order["lines"][0]["priced"]["customerPrice"] == json_of(get(world, sub))["unitPrice"]
    assert resp.headers["Location"].endswith(f"/orders/{order['id']}")
    stored = world.container.orders.get("demo", order_row_key(order["id"]))
    assert stored.kind is OrderKind.CHANGE and stored.change is not None
    assert [m.queue for m in world.container.orders.sent] == [Queue.PROVISION_ORDER]
    pending = json_of(get(world, sub))["pendingChange"]
    assert pending["orderId"] == order["id"] and pending["order"].endswith(order["id"])
    assert pc(world).calls == [], "an increase needs nothing from Partner Center"


def _money(value: dict[str, str]) -> Decimal:
    return Decimal(value["amount"])


@pytest.mark.parametrize(("quantity", "delta"), [(12, 2), (8, -2)])
def test_a_change_orders_line_is_worth_the_seats_it_changes_not_the_whole_subscription(
    world: World, quantity: int, delta: int
):
    sub = seed_subscription(world.container, "demo", CUST_A)
    unit = sub.priced.unit  # type: ignore[union-attr]

    staff = json_of(patch(world, sub, {"quantity": quantity}))

    (line,) = staff["lines"]
    assert (line["quantity"], line["subscriptionQuantity"]) == (delta, quantity)
    assert _money(line["priced"]["customerPrice"]) == unit.customer_price.amount
    assert line["priced"]["quantity"] == delta
    assert _money(line["priced"]["totals"]["customerPrice"]) == unit.customer_price.amount * delta
    assert _money(staff["total"]) == unit.customer_price.amount * delta
    assert _money(staff["totalCost"]) == unit.reseller_cost.amount * delta
    route = {"r": "demo", "c": CUST_A, "o": staff["id"]}
    public = json_of(
        call(
            "http_get_order",
            "GET",
            f"resellers/demo/customers/{CUST_A}/orders/{staff['id']}",
            route=route,
            token=world.token("CustomerReader"),
        )
    )
    (seen,) = public["lines"]
    assert (seen["quantity"], seen["subscriptionQuantity"]) == (delta, quantity)
    assert _money(seen["priced"]["totalPrice"]) == unit.customer_price.amount * delta
    assert _money(public["total"]) == unit.customer_price.amount * delta


def test_a_refresh_that_finds_another_term_and_billing_cycle_prices_the_subscription_at_it(
    world: World,
):
    sub = seed_subscription(world.container, "demo", CUST_A)
    assert sub.priced is not None and sub.priced.price_sheet.billing_cycle == "monthly"
    # Microsoft applied a next-term change at renewal: another term and billing cycle.
    pc(world).add_subscription(facts_of(sub, term_duration="P1Y", billing_cycle="annual"))
    world.clock.advance(seconds=61)

    body = json_of(get(world, sub))

    priced = record(world, sub).priced
    assert priced is not None
    assert (priced.price_sheet.term, priced.price_sheet.billing_cycle) == ("P1Y", "annual")
    assert priced.quantity == 10
    assert priced.unit.customer_price != sub.priced.unit.customer_price
    assert _money(body["unitPrice"]) == priced.unit.customer_price.amount


def test_a_refresh_that_finds_an_offer_it_cannot_price_keeps_the_snapshot_and_says_so(
    world: World, caplog: pytest.LogCaptureFixture
):
    sub = seed_subscription(world.container, "demo", CUST_A)
    pc(world).add_subscription(facts_of(sub, term_duration="P1Y", billing_cycle="triennial"))
    world.clock.advance(seconds=61)

    resp = get(world, sub)

    assert resp.status_code == 200, resp.get_body()
    stored = record(world, sub)
    assert (stored.term_duration, stored.billing_cycle) == ("P1Y", "triennial")
    assert stored.priced == sub.priced
    assert "cannot be priced" in caplog.text


def _asked_by_customer_admin(world: World, body: dict[str, Any]) -> dict[str, Any]:
    """A change a customer's admin asks for (the reseller allows it): waiting for approval."""
    c = world.container
    demo = c.resellers.get("reseller", "demo")
    demo.settings.customer_subscription_changes_enabled = True
    c.resellers.update(demo)
    sub = seed_subscription(c, "demo", CUST_A)
    order: dict[str, Any] = json_of(patch(world, sub, body, role="CustomerAdmin"))
    assert order["status"] == "PendingApproval"
    return order


def _approve(world: World, order: dict[str, Any]) -> Any:
    stored = world.container.orders.get("demo", order_row_key(order["id"]))
    return call(
        "http_approve_order",
        "POST",
        f"resellers/demo/customers/{CUST_A}/orders/{order['id']}/approve",
        route={"r": "demo", "c": CUST_A, "o": order["id"]},
        token=world.token("AccountManager"),
        body={},
        headers={"If-Match": encode_etag(stored.etag)},
    )


def test_a_decrease_a_customer_admin_asked_for_is_approved_at_the_price_it_was_ordered_at(
    world: World,
):
    order = _asked_by_customer_admin(world, {"quantity": 8})
    assert order["lines"][0]["quantity"] == -2

    approved = _approve(world, order)

    assert approved.status_code == 202, approved.get_body()
    assert json_of(approved)["status"] == "Submitted"


@pytest.mark.parametrize("body", [{"quantity": 8}, {"autoRenew": False}])
def test_a_change_a_customer_admin_asked_for_is_approved_though_prices_moved_since(
    world: World, body: dict[str, Any]
):
    order = _asked_by_customer_admin(world, body)
    c = world.container
    demo = c.resellers.get("reseller", "demo")
    demo.distributor_markup_percent = Decimal("37")  # the reseller's cost moves meanwhile
    c.resellers.update(demo)

    approved = _approve(world, order)

    # A Change order is no draft to edit: a "prices changed, edit the draft" 409 would hold
    # the subscription until someone rejected it.
    assert approved.status_code == 202, approved.get_body()
    assert json_of(approved)["status"] == "Submitted"


def test_a_second_change_while_one_is_pending_is_refused_naming_the_order(world: World):
    sub = seed_subscription(world.container, "demo", CUST_A)
    first = json_of(patch(world, sub, {"quantity": 12}))
    resp = patch(world, sub, {"autoRenew": False})
    assert resp.status_code == 409
    assert json_of(resp)["type"] == "/problems/change-in-progress"
    assert first["id"] in json_of(resp)["detail"]


def test_a_stale_if_match_is_a_412_and_writes_nothing(world: World):
    sub = seed_subscription(world.container, "demo", CUST_A)
    stale = encode_etag(record(world, sub).etag or "")
    world.container.subscriptions.update(record(world, sub))  # someone else wrote meanwhile
    resp = patch(world, sub, {"quantity": 12}, etag=stale)
    assert resp.status_code == 412
    assert orders_of(world) == [] and record(world, sub).pending_change is None


def test_a_decrease_past_the_refundable_seats_is_refused_with_the_rule_and_nothing_is_called(
    world: World,
):
    sub = seed_subscription(world.container, "demo", CUST_A)
    world.clock.advance(days=8)  # every window closed
    resp = patch(world, sub, {"quantity": 9})
    assert resp.status_code == 409
    problem = json_of(resp)
    assert problem["type"] == "/problems/reduce-beyond-refundable"
    assert "no seats can be removed now" in problem["detail"]
    cancel = patch(world, sub, {"status": "Cancelled"})
    assert json_of(cancel)["type"] == "/problems/cancellation-window-closed"
    assert pc(world).calls == [] and orders_of(world) == []
    assert record(world, sub).pending_change is None


def test_a_decrease_below_the_assigned_licences_is_refused(world: World):
    sub = seed_subscription(world.container, "demo", CUST_A)
    pc(world).assigned[sub.id] = 8
    resp = patch(world, sub, {"quantity": 7})
    assert resp.status_code == 409
    assert json_of(resp)["type"] == "/problems/below-assigned-licences"
    assert patch(world, sub, {"quantity": 8}).status_code == 202


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"quantity": 0}, "quantity"),
        ({"quantity": "many"}, "quantity"),
        ({"status": "Deleted"}, "status"),
        ({"autoRenew": "maybe"}, "autoRenew"),
        ({"colour": "red"}, "colour"),
        ({}, "body"),
        ({"status": "Suspended", "quantity": 3}, "body"),
        ({"quantity": 10}, "body"),  # changes nothing
        ({"quantity": 100000}, "quantity"),  # above the SKU's maximum
    ],
)
def test_a_bad_body_is_a_400_naming_the_field(world: World, body: Any, field: str):
    sub = seed_subscription(world.container, "demo", CUST_A)
    resp = patch(world, sub, body)
    assert resp.status_code == 400, resp.get_body()
    assert field in [e["field"] for e in json_of(resp)["errors"]]
    assert orders_of(world) == [] and record(world, sub).pending_change is None


def test_a_mid_term_change_says_it_removes_the_scheduled_change(world: World):
    scheduled = NextTerm(catalog_item_id=None, quantity=20, term_duration=None, billing_cycle=None)
    sub = seed_subscription(world.container, "demo", CUST_A, next_term=scheduled)
    resp = patch(world, sub, {"quantity": 11})
    assert resp.status_code == 202
    assert any("quantity 20" in w for w in json_of(resp)["change"]["warnings"])


def test_customer_admins_change_only_where_the_reseller_allows_and_then_await_approval(
    world: World,
):
    c = world.container
    sub = seed_subscription(c, "demo", CUST_A)
    refused = patch(world, sub, {"quantity": 12}, role="CustomerAdmin")
    assert refused.status_code == 403
    demo = c.resellers.get("reseller", "demo")
    demo.settings.customer_subscription_changes_enabled = True
    c.resellers.update(demo)
    assert patch(world, sub, {"quantity": 12}, role="CustomerReader").status_code == 403
    resp = patch(world, sub, {"quantity": 12}, role="CustomerAdmin")
    assert resp.status_code == 202
    order = json_of(resp)
    assert order["status"] == "PendingApproval" and "totalCost" not in order
    assert c.orders.sent == [], "nothing is provisioned before approval"

    stored = c.orders.get("demo", order_row_key(order["id"]))
    rejected = call(
        "http_reject_order",
        "POST",
        f"resellers/demo/customers/{CUST_A}/orders/{order['id']}/reject",
        route={"r": "demo", "c": CUST_A, "o": order["id"]},
        token=world.token("AccountManager"),
        body={"reason": "not now"},
        headers={"If-Match": encode_etag(stored.etag)},
    )
    assert rejected.status_code == 200, rejected.get_body()
    assert record(world, sub).pending_change is None, "a rejected change frees the subscription"


def test_an_ineligible_conversion_is_refused_naming_partner_centers_reason(world: World):
    sub = seed_subscription(
        world.container, "demo", CUST_A, is_trial=True, quantity=25, refundable=[]
    )
    target = sub.catalog_item_id or ""
    pc(world).transition_targets[sub.id] = [
        TransitionOption(target, "Paid", eligible=False, reasons=("Trial already converted",))
    ]
    resp = post(world, sub, "convert", {})
    assert resp.status_code == 409
    assert json_of(resp)["type"] == "/problems/not-eligible"
    assert "Trial already converted" in json_of(resp)["detail"]
    pc(world).transition_targets[sub.id] = [TransitionOption(target, "Paid", eligible=True)]
    ok = post(
        world,
        sub,
        "convert",
        {"billingCycle": sub.billing_cycle, "termDuration": sub.term_duration},
    )
    assert ok.status_code == 202, ok.get_body()
    assert json_of(ok)["change"]["kind"] == "Convert"


def test_an_upgrade_goes_only_to_an_eligible_target(world: World):
    sub = seed_subscription(world.container, "demo", CUST_A)
    target = sub.catalog_item_id or ""
    pc(world).transition_targets[sub.id] = [TransitionOption(target, "E5", eligible=True)]
    missing = post(world, sub, "upgrade", {"toCatalogItemId": "AAAA:0001:BBBB", "quantity": 5})
    assert missing.status_code == 409 and target in json_of(missing)["detail"]
    bad = post(world, sub, "upgrade", {"toCatalogItemId": target})
    assert bad.status_code == 400 and [e["field"] for e in json_of(bad)["errors"]] == ["quantity"]
    ok = post(world, sub, "upgrade", {"toCatalogItemId": target, "quantity": 5})
    assert ok.status_code == 202, ok.get_body()
    assert json_of(ok)["change"]["toCatalogItemId"] == target


def test_a_change_at_renewal_needs_auto_renew_and_removing_it_needs_one_scheduled(world: World):
    c = world.container
    off = seed_subscription(c, "demo", CUST_A, auto_renew=False)
    resp = next_term(world, off, "PUT", {"quantity": 5})
    assert resp.status_code == 409
    assert json_of(resp)["type"] == "/problems/auto-renew-required"
    assert json_of(next_term(world, off, "DELETE"))["type"] == "/problems/not-eligible"

    on = seed_subscription(c, "demo", CUST_A)
    assert next_term(world, on, "PUT", {}).status_code == 400
    scheduled = next_term(world, on, "PUT", {"quantity": 5})
    assert scheduled.status_code == 202, scheduled.get_body()
    assert json_of(scheduled)["change"]["kind"] == "Schedule"

    planned = NextTerm(catalog_item_id=None, quantity=5, term_duration=None, billing_cycle=None)
    other = seed_subscription(c, "demo", CUST_B, next_term=planned)
    removed = next_term(world, other, "DELETE")
    assert removed.status_code == 202 and json_of(removed)["change"]["kind"] == "Unschedule"


@pytest.mark.parametrize(
    ("catalog_item_id", "body"),
    [
        (None, {"status": "Cancelled"}),  # found in Partner Center, no catalog item known
        ("DZH318Z0BQ3Q:0001:0001", {"status": "Suspended"}),  # an offer no longer sold
        (None, {"autoRenew": False}),
    ],
)
def test_a_change_that_moves_no_price_is_ordered_at_the_price_sold_whatever_the_catalog_says(
    world: World, catalog_item_id: str | None, body: dict[str, Any]
):
    sub = seed_subscription(world.container, "demo", CUST_A, catalog_item_id=catalog_item_id)

    resp = patch(world, sub, body)

    assert resp.status_code == 202, resp.get_body()
    (order,) = [o for o in orders_of(world) if o.kind is OrderKind.CHANGE]
    (line,) = order.lines
    assert line.priced == record(world, sub).priced
    assert (line.quantity, line.subscription_quantity) == (0, 10)
    assert line.unit_price == line.priced.unit.customer_price
    shown = json_of(resp)
    assert _money(shown["total"]) == 0 and _money(shown["totalCost"]) == 0
    assert _money(shown["lines"][0]["priced"]["totals"]["customerPrice"]) == 0


# --- a crash between the two writes -----------------------------------------------------------


def test_the_watchdog_writes_the_change_order_a_crash_left_behind_under_the_same_id(
    world: World, monkeypatch: pytest.MonkeyPatch
):
    c = world.container
    sub = seed_subscription(c, "demo", CUST_A)

    def crash(*_: Any) -> Any:
        raise RuntimeError("process died between write 1 and write 2")

    monkeypatch.setattr(sub_requests, "open_change_order", crash)
    assert patch(world, sub, {"quantity": 12}).status_code == 500
    monkeypatch.undo()
    pending = record(world, sub).pending_change
    assert pending is not None and orders_of(world) == []

    source = PendingChanges(c.order_book)
    report = watchdog.watch([source], world.clock.now())
    assert report.stale == {"subscription-change": 0}, "a fresh pending change is left alone"
    world.clock.advance(seconds=source.deadline.total_seconds() + 1)
    watchdog.watch([source], world.clock.now())
    order = c.orders.get("demo", order_row_key(pending.order_id))
    assert (order.kind, order.status, order.change and order.change.quantity) == (
        OrderKind.CHANGE,
        OrderStatus.SUBMITTED,
        12,
    )
    assert [m.queue for m in c.orders.sent] == [Queue.PROVISION_ORDER]
    # Its order in flight, the pending change is the orders' watchdog's, not this one's.
    assert list(source.in_flight()) == []


def test_a_request_after_a_crash_between_the_two_writes_writes_the_order_it_is_refused_for(
    world: World, monkeypatch: pytest.MonkeyPatch
):
    c = world.container
    sub = seed_subscription(c, "demo", CUST_A)

    def crash(*_: Any) -> Any:
        raise RuntimeError("process died between write 1 and write 2")

    monkeypatch.setattr(sub_requests, "open_change_order", crash)
    assert patch(world, sub, {"quantity": 12}).status_code == 500
    monkeypatch.undo()
    pending = record(world, sub).pending_change
    assert pending is not None and orders_of(world) == []

    resp = patch(world, sub, {"quantity": 14})

    assert resp.status_code == 409
    assert json_of(resp)["type"] == "/problems/change-in-progress"
    assert pending.order_id in json_of(resp)["detail"]
    order = c.orders.get("demo", order_row_key(pending.order_id))
    assert (order.status, order.change and order.change.quantity) == (OrderStatus.SUBMITTED, 12)
    assert [m.queue for m in c.orders.sent] == [Queue.PROVISION_ORDER]


def test_the_watchdog_forgets_a_pending_change_whose_order_has_ended(world: World):
    c = world.container
    sub = seed_subscription(c, "demo", CUST_A)
    order_id = json_of(patch(world, sub, {"quantity": 12}))["id"]
    order = c.orders.get("demo", order_row_key(order_id))
    order.status = OrderStatus.FAILED
    c.orders.update(order)
    source = PendingChanges(c.order_book)
    world.clock.advance(seconds=source.deadline.total_seconds() + 1)
    watchdog.watch([source], world.clock.now())
    assert record(world, sub).pending_change is None and not record(world, sub).changing
    assert patch(world, sub, {"quantity": 12}).status_code == 202


# --- who is named to whom -------------------------------------------------------------------
def test_a_change_staff_asked_for_names_the_reseller_not_the_staff_email_to_customer_users(
    world: World,
):
    sub = seed_subscription(world.container, "demo", CUST_A)
    order = json_of(patch(world, sub, {"quantity": 12}))
    staff_email = "owner@demo.example"
    route = {"r": "demo", "c": CUST_A, "o": order["id"]}
    orders_path = f"resellers/demo/customers/{CUST_A}/orders"
    for role in ("CustomerReader", "CustomerAdmin"):
        seen = get(world, sub, role)
        assert seen.status_code == 200
        assert json_of(seen)["pendingChange"]["requestedBy"] == "Demo Reseller"
        one = call(
            "http_get_order",
            "GET",
            f"{orders_path}/{order['id']}",
            route=route,
            token=world.token(role),
        )
        listed = call(
            "http_list_customer_orders",
            "GET",
            orders_path,
            route={"r": "demo", "c": CUST_A},
            token=world.token(role),
        )
        assert one.status_code == 200 and listed.status_code == 200
        assert {e["by"] for e in json_of(one)["history"]} == {"Demo Reseller"}
        for resp in (seen, one, listed):
            assert staff_email not in resp.get_body().decode()
    # Staff still see who it was.
    assert json_of(get(world, sub))["pendingChange"]["requestedBy"] == staff_email
