"""Subscription changes through the local host, Azurite, the local issuer and the Partner
Center simulator (issue 12's "Checked by").

One stack (tables, seeded demo data, simulator, host) serves the whole module: each test buys
its own subscription through the host first, so the tests do not share records, only the
simulator's clock, which only ever moves forward (a new subscription's windows start at the
simulator's now, and the platform's clock follows the simulator's).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from localdev.azurite import Azurite
from localdev.partner_center_sim import SimulatorHandle
from localdev.seed import demo_line, seed_catalog, seed_customers
from shared.domain.orders import order_row_key
from tests.azurite_fixtures import new_table_prefix
from tests.catalog_fakes import cost_fields
from tests.integration.test_customers_local_host import Stack, open_stack
from tests.integration.test_orders_local_host import FAST, FINAL, OWNER, _place
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
CUSTOMER_USER = "it@customer.example"  # CustomerAdmin of demo's first customer
OTHER_RESELLER = "owner@other.example"
CLOCK_FOLLOWS_WITHIN = 1.2  # seconds: SimulatedPartnerCenterClock's cache, and a margin
E3, BASIC, STANDARD = (
    "Microsoft 365 E3",
    "Microsoft 365 Business Basic",
    "Microsoft 365 Business Standard",
)


@pytest.fixture(scope="module")
def stack(
    azurite: Azurite,
    partner_center_sim: SimulatorHandle,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    partner_center_sim.reset()
    try:
        tmp = tmp_path_factory.mktemp("subscriptions-host")
        with open_stack(azurite, new_table_prefix(), tmp, partner_center_sim) as s:
            seed_catalog(s.c)
            seed_customers(s.c)
            # The ledger's month-opening timer runs often: the reports test moves the clock
            # into the next month, as a real month end does.
            s.start_host(**FAST, LEDGER_SCHEDULE="*/2 * * * * *")
            yield s
    finally:
        partner_center_sim.reset()


# --- helpers ------------------------------------------------------------------------------


class Bought:
    """A subscription of demo's first customer, bought through the host for one test."""

    def __init__(self, stack: Stack, customer_id: str, tenant: str, sub_id: str) -> None:
        self.stack, self.customer_id, self.tenant, self.id = stack, customer_id, tenant, sub_id
        self.path = f"resellers/demo/customers/{customer_id}/subscriptions/{sub_id}"
        self.pc_path = f"/v1/customers/{tenant}/subscriptions/{sub_id}"

    def get(self, email: str = OWNER) -> tuple[int, dict[str, str], Any]:
        return self.stack.call("GET", self.path, email)

    def view(self) -> tuple[dict[str, Any], str]:
        """The subscription as staff see it (refreshed when stale) and its ETag."""
        status, headers, body = self.get()
        assert status == 200, body
        return body, headers["etag"]

    def patch(self, body: dict[str, Any], email: str = OWNER) -> tuple[int, dict[str, str], Any]:
        _, etag = self.view()
        return self.stack.call("PATCH", self.path, email, body, {"If-Match": etag})

    def in_partner_center(self) -> dict[str, Any]:
        state = self.stack.sim.customer_state(self.tenant)
        return next(s for s in state["subscriptions"] if s["id"].lower() == self.id.lower())

    def record(self) -> Any:
        return self.stack.c.subscriptions.get(self.customer_id, self.id.lower())

    def pc_requests(self, method: str | None = None) -> list[dict[str, Any]]:
        found = self.stack.sim.requests(path_prefix=self.pc_path)
        return [r for r in found if method is None or r["method"] == method]

    def updates_in_partner_center(self) -> int:
        """How many times Partner Center changed this subscription (its audit records)."""
        with self.stack.sim.client() as client:
            reply = client.get(
                "/v1/auditrecords",
                # Partner Center keeps 90 days (an older start is a 400); 30 by default.
                params={"startDate": _days_before(self.stack.sim.now(), 89)},
                headers={"Authorization": f"Bearer {self.stack.sim.token(app_user=True)}"},
            )
        reply.raise_for_status()
        return sum(
            1
            for a in reply.json()["items"]
            if a["operationType"].lower() == "update_subscription"
            and {"key": "ResourceId", "value": self.id.lower()} in a["customizedData"]
        )


def _days_before(now: str, days: int) -> str:
    moment = datetime.fromisoformat(now.replace("Z", "+00:00")) - timedelta(days=days)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _buy(stack: Stack, title: str = E3, quantity: int = 3, *, trial: bool = False) -> Bought:
    customer = seed_customers(stack.c)[0]
    order = _place(stack, customer.id, demo_line(stack.c, customer, title, quantity, trial=trial))
    wait_until(lambda: _status(stack, order["id"]) in FINAL, what="the purchase to finish")
    assert _status(stack, order["id"]) == "Completed", stack.c.orders.get(
        "demo", order_row_key(order["id"])
    )
    [sub] = [s for s in stack.c.subscriptions.iterate(customer.id) if s.order_id == order["id"]]
    return Bought(stack, customer.id, customer.tenant_id or "", sub.id)


def _status(stack: Stack, order_id: str) -> str:
    return stack.c.orders.get("demo", order_row_key(order_id)).status.value


def _finished(stack: Stack, answer: tuple[int, dict[str, str], Any]) -> dict[str, Any]:
    """The Change order of a 202 answer, once it has ended Completed."""
    status, headers, order = answer
    assert status == 202, order
    assert headers["location"].endswith(f"/orders/{order['id']}")
    wait_until(lambda: _status(stack, order["id"]) in FINAL, what="the change to finish")
    stored = stack.c.orders.get("demo", order_row_key(order["id"]))
    assert stored.status.value == "Completed", (stored.status, stored.failure_reason)
    return dict(order)


def _refused(answer: tuple[int, dict[str, str], Any], rule: str) -> dict[str, Any]:
    status, _, problem = answer
    assert status == 409 and problem["type"] == f"/problems/{rule}", problem
    assert problem["detail"]
    return dict(problem)


def _advance(stack: Stack, **by: float) -> None:
    """Move the simulator's clock, then let the host's clock follow (it reads the simulator's
    offset at most once a second)."""
    stack.sim.advance_clock(**by)
    time.sleep(CLOCK_FOLLOWS_WITHIN)


def _sim_now(stack: Stack) -> datetime:
    return datetime.fromisoformat(stack.sim.now().replace("Z", "+00:00")).astimezone(UTC)


# --- the checks ---------------------------------------------------------------------------


def test_more_seats_then_fewer_inside_the_window_both_complete_and_partner_center_agrees(stack):
    sub = _buy(stack, quantity=3)
    more = _finished(stack, sub.patch({"quantity": 5}))
    assert more["kind"] == "Change" and sub.in_partner_center()["quantity"] == 5
    assert sub.record().quantity == 5 and sub.record().pending_change is None
    fewer = _finished(stack, sub.patch({"quantity": 4}))
    assert sub.in_partner_center()["quantity"] == sub.record().quantity == 4
    shown, _ = sub.view()
    assert shown["quantity"] == 4 and shown["pendingChange"] is None
    # Both changes are orders like any other, in the customer's list.
    status, _, listed = stack.call(
        "GET", f"resellers/demo/customers/{sub.customer_id}/orders", OWNER
    )
    assert status == 200
    ids = {o["id"] for o in listed["items"] if o["kind"] == "Change"}
    assert {more["id"], fewer["id"]} <= ids


def test_eight_days_on_a_decrease_and_a_cancel_are_refused_without_a_partner_center_call(stack):
    sub = _buy(stack, quantity=3)
    _advance(stack, days=8)
    _, etag = sub.view()  # refreshed: the record knows the windows have closed
    stack.sim.clear_requests()
    for body, rule in (
        ({"quantity": 2}, "reduce-beyond-refundable"),
        ({"status": "Cancelled"}, "cancellation-window-closed"),
    ):
        _refused(stack.call("PATCH", sub.path, OWNER, body, {"If-Match": etag}), rule)
    assert stack.sim.requests(path_prefix=f"/v1/customers/{sub.tenant}") == []
    assert sub.in_partner_center()["quantity"] == 3 and sub.record().pending_change is None


def test_suspend_then_reactivate(stack):
    sub = _buy(stack, quantity=2)
    _finished(stack, sub.patch({"status": "Suspended"}))
    assert sub.in_partner_center()["status"] == "suspended"
    assert sub.record().status.lower() == "suspended"
    _refused(sub.patch({"quantity": 3}), "subscription-suspended")
    _finished(stack, sub.patch({"status": "Active"}))
    assert sub.in_partner_center()["status"] == "active"
    assert sub.view()[0]["status"].lower() == "active"


def test_trial_converts_to_paid(stack):
    trial = _buy(stack, STANDARD, 25, trial=True)
    shown, etag = trial.view()
    assert shown["isTrial"] and shown["trialEndsOn"]
    _refused(trial.patch({"quantity": 30}), "trial-quantity-fixed")
    answer = stack.call("POST", trial.path + "/convert", OWNER, {}, {"If-Match": etag})
    converted = _finished(stack, answer)
    paid = [
        s
        for s in stack.c.subscriptions.iterate(trial.customer_id)
        if s.catalog_item_id
        and s.catalog_item_id.upper() == converted["change"]["toCatalogItemId"].upper()
    ]
    assert paid and all(not s.is_trial for s in paid)
    in_pc = stack.sim.customer_state(trial.tenant)["subscriptions"]
    assert any(s["id"].lower() == paid[0].id.lower() and not s["isTrial"] for s in in_pc)


def test_a_scheduled_change_shows_on_get_and_is_applied_at_renewal(stack):
    sub = _buy(stack, quantity=4)
    _, etag = sub.view()
    answer = stack.call("PUT", sub.path + "/next-term", OWNER, {"quantity": 2}, {"If-Match": etag})
    _finished(stack, answer)
    shown, _ = sub.view()
    assert shown["nextTerm"]["quantity"] == 2 and shown["quantity"] == 4
    status, _, renewals = stack.call("GET", "resellers/demo/renewals?within=40", OWNER)
    assert status == 200
    [renewal] = [r for r in renewals["items"] if r["subscription"]["id"] == shown["id"]]
    assert renewal["nextTerm"]["quantity"] == 2 and renewal["nextTerm"]["changes"]
    end = datetime.fromisoformat(shown["commitmentEndDate"])
    _advance(stack, seconds=(end - _sim_now(stack)).total_seconds() + 2 * 86400)
    renewed, _ = sub.view()  # stale after the jump: read again from Partner Center
    assert renewed["quantity"] == 2 and renewed["nextTerm"] is None
    assert datetime.fromisoformat(renewed["commitmentEndDate"]) > end
    assert sub.in_partner_center()["quantity"] == 2


def test_the_quantity_cannot_go_below_the_assigned_licences(stack):
    sub = _buy(stack, BASIC, quantity=5)
    stack.sim.set_consumed_units(sub.tenant, sub.id, 4)
    problem = _refused(sub.patch({"quantity": 3}), "below-assigned-licences")
    assert "4" in problem["detail"]
    assert sub.view()[0]["assignedLicences"] == 4
    assert sub.pc_requests("PATCH") == [] and sub.record().pending_change is None
    _finished(stack, sub.patch({"quantity": 4}))  # down to the assigned ones is fine
    assert sub.in_partner_center()["quantity"] == 4


def test_customer_users_read_at_their_price_and_change_only_where_allowed(stack):
    sub = _buy(stack, quantity=2)
    status, _, listed = stack.call(
        "GET", f"resellers/demo/customers/{sub.customer_id}/subscriptions", CUSTOMER_USER
    )
    assert status == 200 and sub.id in {s["id"] for s in listed["items"]}
    assert cost_fields(listed) == []
    status, _, one = sub.get(CUSTOMER_USER)
    assert status == 200 and one["unitPrice"] and cost_fields(one) == []
    status, _, problem = sub.patch({"quantity": 3}, CUSTOMER_USER)
    assert status == 403, problem
    assert sub.record().pending_change is None
    # Another reseller learns nothing of it.
    assert sub.get(OTHER_RESELLER)[0] == 404
    assert sub.patch({"quantity": 3}, OTHER_RESELLER)[0] == 404
    # The reseller lets its customers change subscriptions: the change waits for approval.
    status, headers, settings = stack.call("GET", "resellers/demo/settings", OWNER)
    assert status == 200
    allowed = {**settings, "customerSubscriptionChangesEnabled": True}
    status, _, saved = stack.call(
        "PUT", "resellers/demo/settings", OWNER, allowed, {"If-Match": headers["etag"]}
    )
    assert status == 200, saved
    try:
        status, _, order = sub.patch({"quantity": 3}, CUSTOMER_USER)
        assert status == 202 and order["status"] == "PendingApproval", order
        assert sub.record().pending_change is not None
        assert sub.pc_requests("PATCH") == [] and sub.in_partner_center()["quantity"] == 2
    finally:
        _, headers, current = stack.call("GET", "resellers/demo/settings", OWNER)
        back = {**current, "customerSubscriptionChangesEnabled": False}
        stack.call("PUT", "resellers/demo/settings", OWNER, back, {"If-Match": headers["etag"]})


def test_a_202_from_partner_center_is_polled_to_completed(stack):
    sub = _buy(stack, quantity=2)
    stack.sim.configure(asyncPatchNext=1, asyncPatchSeconds=1)
    _finished(stack, sub.patch({"quantity": 6}))
    assert [r["status"] for r in sub.pc_requests("PATCH")] == [202]
    assert sub.in_partner_center()["quantity"] == sub.record().quantity == 6


# Every boundary a Change order's step records: after the PATCH was applied, after a 202 was
# stored, after a poll that found it still running, after a wait (throttled), after the record
# took Partner Center's facts, after the order was saved Completed.
CRASH_SETUPS: dict[str, dict[str, Any]] = {
    "applied": {},
    "accepted": {"config": {"asyncPatchNext": 1, "asyncPatchSeconds": 1}},
    "poll": {"config": {"asyncPatchNext": 1, "asyncPatchSeconds": 1, "asyncPatchPolls": 2}},
    "wait": {"fault": {"throttleRate": 1, "retryAfterSeconds": 1, "count": 1}},
    "record": {},
    "completed": {},
}


@pytest.mark.parametrize("boundary", list(CRASH_SETUPS))
def test_host_killed_at_a_change_boundary_makes_one_change_in_partner_center(stack, boundary):
    sub = _buy(stack, quantity=3)
    _, etag = sub.view()
    setup = CRASH_SETUPS[boundary]
    stack.host.stop()
    try:
        if "config" in setup:
            stack.sim.configure(**setup["config"])
        if "fault" in setup:
            stack.sim.inject_faults(pathPrefix=sub.pc_path, methods=["PATCH"], **setup["fault"])
        # One attempt per call: the throttled PATCH waits by re-enqueueing, not inside the call.
        crashing = stack.start_host(
            ORDER_STEP_CRASH_AFTER=boundary, PARTNER_CENTER_MAX_ATTEMPTS="1", **FAST
        )
        status, _, order = stack.call("PATCH", sub.path, OWNER, {"quantity": 4}, {"If-Match": etag})
        assert status == 202, order
        wait_until(lambda: not crashing.is_running(), what=f"the host to die after {boundary}")
    finally:
        stack.sim.configure(asyncPatchPolls=0)
        stack.sim.clear_faults()
        stack.start_host(**FAST)
    _finished(stack, (202, {"location": f"/orders/{order['id']}"}, order))
    assert sub.in_partner_center()["quantity"] == sub.record().quantity == 4
    assert sub.record().pending_change is None
    assert sub.updates_in_partner_center() == 1
    patches = sub.pc_requests("PATCH")
    assert len({r["requestId"] for r in patches}) == 1, patches


@pytest.mark.parametrize("boundary", [None, "transition-started", "poll"])
def test_an_upgrade_partner_center_answers_started_ends_completed_with_one_transition(
    stack, boundary
):
    sub = _buy(stack, BASIC, quantity=4)
    customer = seed_customers(stack.c)[0]
    target = demo_line(stack.c, customer, STANDARD, 1)["catalogItemId"]
    _, etag = sub.view()
    stack.sim.configure(asyncTransitionNext=1, asyncTransitionPolls=2)
    if boundary is not None:
        stack.host.stop()
        crashing = stack.start_host(ORDER_STEP_CRASH_AFTER=boundary, **FAST)
    try:
        answer = stack.call(
            "POST",
            sub.path + "/upgrade",
            OWNER,
            {"toCatalogItemId": target, "quantity": 3},
            {"If-Match": etag},
        )
        if boundary is not None:
            assert answer[0] == 202, answer
            wait_until(lambda: not crashing.is_running(), what=f"the host to die after {boundary}")
    finally:
        if boundary is not None:
            stack.start_host(**FAST)
    order = _finished(stack, answer)

    stored = stack.c.orders.get("demo", order_row_key(order["id"]))
    new_id = stored.lines[0].result.subscription_id
    assert new_id and new_id.lower() != sub.id.lower()
    assert sub.in_partner_center()["quantity"] == sub.record().quantity == 1
    assert stack.c.subscriptions.get(sub.customer_id, new_id.lower()).quantity == 3
    assert sub.record().pending_change is None
    posts = [r for r in sub.pc_requests("POST") if r["path"].lower().endswith("/transitions")]
    assert len({r["requestId"] for r in posts}) == 1, posts


# --- reports (issue 15's "Checked by"; last: it moves the clock into the next month) ---------


def _licence_rows(stack: Stack, customer_id: str, month: str) -> dict[str, dict[str, Any]]:
    status, _, body = stack.call(
        "GET", f"resellers/demo/reports/licences?month={month}&customer={customer_id}", OWNER
    )
    assert status == 200, body
    return {r["subscriptionId"].lower(): r for r in body["items"]}


def _reported(stack: Stack, sub: Bought, month: str, seats: int) -> dict[str, Any]:
    """The subscription's licence row once the ledger shows `seats` at month end."""
    found: dict[str, Any] = {}

    def shows() -> bool:
        found.update(_licence_rows(stack, sub.customer_id, month).get(sub.id.lower(), {}))
        return found.get("seatsAtEnd") == seats

    wait_until(shows, what=f"the licence report to show {seats} seats")
    return found


def _synced(stack: Stack) -> None:
    status, headers, run = stack.call("POST", "resellers/demo/sync", OWNER)
    assert status == 202, run

    def ended() -> bool:
        return stack.call("GET", headers["location"].removeprefix("/api/"), OWNER)[2]["status"] in (
            "Succeeded",
            "Failed",
        )

    wait_until(ended, what="the sync to end", timeout=120)
    final = stack.call("GET", headers["location"].removeprefix("/api/"), OWNER)[2]
    assert final["status"] == "Succeeded", final


def test_reports_follow_orders_changes_and_a_sync_and_a_mid_month_change_shows_in_its_month(
    stack,
):
    sub = _buy(stack, BASIC, quantity=3)
    _finished(stack, sub.patch({"quantity": 5}))
    _synced(stack)
    month = _sim_now(stack).strftime("%Y-%m")

    # The report equals the subscription records, for every live subscription of the customer.
    record = sub.record()
    row = _reported(stack, sub, month, record.quantity)
    unit = record.priced.unit.customer_price.amount
    assert Decimal(row["unitPrice"]) == unit
    assert Decimal(row["totalPrice"]) == unit * record.quantity
    assert Decimal(row["unitCost"]) == record.priced.unit.reseller_cost.amount
    records = [s for s in stack.c.subscriptions.iterate(sub.customer_id) if s.live]
    wanted = {s.id.lower(): s.quantity for s in records}
    shown: dict[str, int] = {}

    def every_live_one() -> bool:
        rows = _licence_rows(stack, sub.customer_id, month)
        shown.clear()
        shown.update({k: r["seatsAtEnd"] for k, r in rows.items() if r["seatsAtEnd"]})
        return shown == wanted

    wait_until(every_live_one, what="every live subscription in the report with its seats")
    assert shown == wanted

    # Into the next month: the subscription is carried in, then grows mid-month.
    now = _sim_now(stack)
    first_of_next = (now.replace(day=1) + timedelta(days=32)).replace(day=1)
    _advance(stack, seconds=(first_of_next - now).total_seconds() + 3 * 86400)
    next_month = _sim_now(stack).strftime("%Y-%m")
    assert next_month != month
    _finished(stack, sub.patch({"quantity": 7}))
    grown = _reported(stack, sub, next_month, 7)
    assert (grown["seatsAtStart"], grown["seatsAtEnd"]) == (5, 7)
    assert _licence_rows(stack, sub.customer_id, month)[sub.id.lower()]["seatsAtEnd"] == 5

    status, _, revenue = stack.call(
        "GET", f"resellers/demo/reports/revenue?months=2&customer={sub.customer_id}", OWNER
    )
    assert status == 200, revenue
    this = revenue["months"][-1]
    assert this["month"] == next_month
    assert Decimal(this["expansion"]) == (unit * 2).quantize(Decimal("0.01"))
