"""Orders through the local host, Azurite, the local issuer and the Partner Center simulator.

Draft → submit → Completed with one Partner Center order and one subscription record; the host
killed right after each recorded sub-step of provision-order (ORDER_STEP_CRASH_AFTER) and the
message redelivered to a fresh host; faults on carts, checkout and orders.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from localdev.seed import (
    DEMO_SEAT_INCREASE,
    seed_catalog,
    seed_customers,
    seed_orders,
    seed_subscriptions,
)
from shared.domain.orders import order_row_key
from shared.services.renewals import renewing
from tests.catalog_fakes import cost_fields
from tests.integration.test_customers_local_host import Stack
from tests.integration.test_customers_local_host import stack as stack_fixture
from tests.order_fakes import offer_line
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
stack = stack_fixture  # the customers tests' Azurite + simulator + issuer + hosts
OWNER = "owner@demo.example"
FAST = {"ORDER_POLL_SECONDS": "1", "ORDER_CUSTOMER_WAIT_SECONDS": "1"}
FINAL = ("Completed", "CompletedWithErrors", "Failed")


def _setup(stack: Stack) -> tuple[str, dict[str, Any]]:
    seed_catalog(stack.c)
    customer = seed_customers(stack.c)[0]
    reseller = stack.c.resellers.get("reseller", "demo")
    market = stack.c.products.list(reseller.country, page_size=1000).items
    product = next(p for p in market if p.title == "Microsoft 365 E3")
    return customer.id, offer_line(None, customer, product, quantity=3)


def _place(stack: Stack, customer_id: str, line: dict[str, Any]) -> dict[str, Any]:
    base = f"resellers/demo/customers/{customer_id}/orders"
    status, headers, draft = stack.call("POST", base, OWNER, {"lines": [line]})
    assert status == 201, draft
    assert headers["location"].endswith(draft["id"]) and draft["status"] == "Draft"
    status, _, submitted = stack.call(
        "POST", f"{base}/{draft['id']}/submit", OWNER, None, {"If-Match": headers["etag"]}
    )
    assert status == 202 and submitted["status"] == "Submitted", submitted
    return submitted


def _status(stack: Stack, order_id: str) -> str:
    return stack.c.orders.get("demo", order_row_key(order_id)).status.value


def _pc_orders(stack: Stack, tenant: str) -> list[dict[str, Any]]:
    with stack.sim.client() as client:
        reply = client.get(
            f"/v1/customers/{tenant}/orders",
            headers={"Authorization": f"Bearer {stack.sim.token(app_user=True)}"},
        )
    reply.raise_for_status()
    items: list[dict[str, Any]] = reply.json()["items"]
    return items


def test_draft_submit_completes_in_seconds_with_one_partner_center_order(stack):
    customer_id, line = _setup(stack)
    stack.start_host(**FAST)
    started = time.monotonic()
    order = _place(stack, customer_id, line)
    wait_until(lambda: _status(stack, order["id"]) in FINAL, what="the order to finish")
    assert _status(stack, order["id"]) == "Completed"
    assert time.monotonic() - started < 20
    tenant = stack.c.customers.get("demo", customer_id).tenant_id
    assert len(_pc_orders(stack, tenant)) == 1
    status, _, subs = stack.call(
        "GET", f"resellers/demo/customers/{customer_id}/subscriptions", OWNER
    )
    assert status == 200 and len(subs["items"]) == 1
    assert subs["items"][0]["orderId"] == order["id"] and subs["items"][0]["quantity"] == 3
    # The customer's own user sees the order at its price only.
    status, _, seen = stack.call(
        "GET", f"resellers/demo/customers/{customer_id}/orders", "it@customer.example"
    )
    assert status == 200 and [o["id"] for o in seen["items"]] == [order["id"]]
    assert cost_fields(seen) == []
    # Another reseller's staff learn nothing of it.
    status, _, _ = stack.call(
        "GET", f"resellers/demo/customers/{customer_id}/orders/{order['id']}", "owner@other.example"
    )
    assert status == 404


def test_bad_lines_are_refused_naming_the_line_and_field(stack):
    customer_id, line = _setup(stack)
    stack.start_host(**FAST)
    path = f"resellers/demo/customers/{customer_id}/orders"
    for lines, field in (
        ([line, {**line, "quantity": 0}], "lines[1].quantity"),  # the body's schema
        ([line, line, {**line, "termDuration": "P9M"}], "lines[2].billingCycle"),  # the offer
    ):
        status, _, problem = stack.call("POST", path, OWNER, {"lines": lines})
        assert status == 400 and [e["field"] for e in problem["errors"]] == [field], problem
    assert not list(stack.c.orders.iterate("demo"))


# Every boundary provision-order records: after the cart, after checkout, after a poll that
# found Partner Center still provisioning (the next poll queued), after the subscription records,
# after the final status.
BOUNDARIES = ["cart", "checkout", "poll", "subscriptions", "completed"]


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_host_killed_at_a_step_boundary_still_ends_completed_with_one_order(stack, boundary):
    customer_id, line = _setup(stack)
    # Partner Center takes a moment to provision, so the step polls at least once.
    stack.sim.configure(orderProvisioningSeconds=2)
    first = stack.start_host(ORDER_STEP_CRASH_AFTER=boundary, **FAST)
    order = _place(stack, customer_id, line)
    wait_until(lambda: not first.is_running(), what=f"the host to die after {boundary}")
    stack.start_host(**FAST)
    wait_until(lambda: _status(stack, order["id"]) in FINAL, what="the order to finish")
    assert _status(stack, order["id"]) == "Completed"
    tenant = stack.c.customers.get("demo", customer_id).tenant_id
    assert len(_pc_orders(stack, tenant)) == 1 and stack.sim.summary()["carts"] == 1
    assert len(list(stack.c.subscriptions.iterate(customer_id))) == 1


# 30 % of requests to carts, checkout and orders fail: 10 % a 500, 10 % of the rest a 429 with
# Retry-After, 12.5 % of the rest held back past the client's timeout (carried out before the
# wait or after it). 1 - 0.9 × 0.889 × 0.875 = 0.30.
FAULTS = {"errorRate": 0.1, "errorStatus": 500, "throttleRate": 0.1111, "retryAfterSeconds": 1}
TIMEOUT = {"timeoutRate": 0.125, "timeoutMs": 1500}
FAST_RETRIES = {
    "PARTNER_CENTER_TIMEOUT_SECONDS": "1",
    "PARTNER_CENTER_BACKOFF_BASE_SECONDS": "0.05",
    "PARTNER_CENTER_BACKOFF_CAP_SECONDS": "0.2",
    "PARTNER_CENTER_MAX_ATTEMPTS": "8",
}


def test_twenty_orders_under_thirty_percent_faults_all_complete_each_placed_once(stack):
    customer_id, line = _setup(stack)
    tenant = stack.c.customers.get("demo", customer_id).tenant_id
    # Carts and checkout: a timed-out request was carried out; order reads: carried out late.
    for path, phase in (("carts", "after"), ("orders", "before")):
        prefix = f"/v1/customers/{tenant}/{path}"
        stack.sim.inject_faults(pathPrefix=prefix, **FAULTS, **TIMEOUT, timeoutPhase=phase)
    stack.start_host(**FAST, **FAST_RETRIES)
    # Quantities 1..20 tell the orders apart in Partner Center.
    placed = [_place(stack, customer_id, {**line, "quantity": n}) for n in range(1, 21)]
    wait_until(
        lambda: all(_status(stack, o["id"]) in FINAL for o in placed),
        timeout=120,
        what="the 20 orders to finish",
    )
    assert [_status(stack, o["id"]) for o in placed] == ["Completed"] * 20
    stack.sim.clear_faults()  # the check below reads Partner Center itself
    in_pc = _pc_orders(stack, tenant)
    quantities = sorted(li["quantity"] for o in in_pc for li in o["lineItems"])
    assert quantities == list(range(1, 21))  # every order's line, exactly once
    ours = [stack.c.orders.get("demo", order_row_key(o["id"])) for o in placed]
    assert sorted(i for o in ours for i in o.partner_center_order_ids) == sorted(
        o["id"] for o in in_pc
    )
    assert len(list(stack.c.subscriptions.iterate(customer_id))) == 20
    faults = {r["fault"] for r in stack.sim.requests(path_prefix=f"/v1/customers/{tenant}")}
    assert {"error", "throttle", "timeout-after"} <= faults  # the faults did happen


def test_seed_places_orders_a_seat_increase_and_a_trial_and_a_rerun_adds_none(stack):
    customer_id, _ = _setup(stack)
    customer = stack.c.customers.get("demo", customer_id)
    seeded = seed_orders(stack.c, customer)
    assert sorted(o.status.value for o in seeded) == ["Completed", "Draft"]
    assert {o.id for o in seed_orders(stack.c, customer)} == {o.id for o in seeded}
    [completed] = [o for o in seeded if o.status.value == "Completed"]
    in_pc = _pc_orders(stack, customer.tenant_id or "")
    assert [o["id"] for o in in_pc] == completed.partner_center_order_ids
    [sub] = list(stack.c.subscriptions.iterate(customer_id))
    assert sub.order_id == completed.id and sub.quantity == completed.lines[0].quantity
    # Subscriptions: a Completed seat increase, and a trial renewing within 30 days.
    changed = seed_subscriptions(stack.c, customer)
    assert [(o.kind.value, o.status.value) for o in changed] == [
        ("Change", "Completed"),
        ("Purchase", "Completed"),
    ]
    assert {o.id for o in seed_subscriptions(stack.c, customer)} == {o.id for o in changed}
    more = stack.c.subscriptions.get(customer_id, sub.id.lower())
    assert more.quantity == sub.quantity + DEMO_SEAT_INCREASE
    in_pc = stack.sim.customer_state(customer.tenant_id or "")["subscriptions"]
    assert next(s for s in in_pc if s["id"] == sub.id)["quantity"] == more.quantity
    soon = renewing(stack.c.order_book, "demo", stack.c.clock.now().date(), 30)
    assert any(s.is_trial for s in soon)
