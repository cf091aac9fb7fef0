"""The sync through the local host, Azurite, the local issuer and the Partner Center simulator
(issue 14's "Checked by"): tenants, orders and expiries made in the simulator alone reach the
platform's API after Sync now or the nightly run; a host killed mid-run ends with what an
uninterrupted run makes. Sync now's access rules are in test_sync_api_local_host.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from localdev.azurite import Azurite
from localdev.partner_center_sim import SimulatorHandle
from localdev.seed import PREFIX_PARTNER_ID
from shared.bootstrap import Container
from shared.domain.identity import RESELLER_PARTITION
from shared.domain.sync import SyncRun
from shared.services import catalog_import, sync
from tests.azurite_fixtures import new_table_prefix
from tests.integration.test_customers_local_host import Stack, open_stack
from tests.integration.test_subscriptions_local_host import CLOCK_FOLLOWS_WITHIN
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
OWNER = "owner@demo.example"
FINISHED = ("Succeeded", "Failed")
# Small chunks so a handful of tenants make several chunk messages; no cooldown, no budget.
FAST = {
    "SYNC_CHUNK_SIZE": "2",
    "SYNC_NOW_COOLDOWN_MINUTES": "0",
    "PARTNER_CENTER_REQUESTS_PER_MINUTE": "0",
}
E3, BASIC = "Microsoft 365 E3", "Microsoft 365 Business Basic"


@pytest.fixture
def stack(
    azurite: Azurite, table_prefix: str, tmp_path: Path, fresh_partner_center_sim: SimulatorHandle
) -> Iterator[Stack]:
    with open_stack(azurite, table_prefix, tmp_path, fresh_partner_center_sim) as s:
        _import_catalog(s.c)
        yield s


# --- helpers ------------------------------------------------------------------------------


def _import_catalog(c: Container) -> None:
    """Partner Center's CZ market, as the catalog timer imports it (the sync prices what it
    finds at it; no reseller's catalog layout is needed)."""
    catalog_import.import_market(c.partner_center, c.products, c.market_stamps, c.clock, "CZ")


def _line(stack: Stack, title: str, quantity: int, term: str = "P1Y") -> dict[str, Any]:
    """An order line of the demo reseller's market: `title`'s paid commercial `term`."""
    reseller = stack.c.resellers.get(RESELLER_PARTITION, "demo")
    market = stack.c.products.list(reseller.country, page_size=1000).items
    product = next(p for p in market if p.title == title and not p.withdrawn)
    for sku in product.skus:
        availability = sku.availability("commercial") if not sku.is_trial else None
        for t in availability.terms if availability is not None else ():
            if t.duration == term:
                assert availability is not None
                return {
                    "catalogItemId": availability.catalog_item_id,
                    "quantity": quantity,
                    "termDuration": t.duration,
                    "billingCycle": t.billing_cycle,
                }
    raise LookupError(f"{title} has no paid {term} offer")


def _tenant(stack: Stack, partner_id: str, domain: str, *lines: dict[str, Any]) -> dict[str, Any]:
    """A tenant that accepts `partner_id` as reseller in the simulator, with subscriptions."""
    made = stack.sim.accept_reseller(partner_id, domain, subscriptions=list(lines))
    customer: dict[str, Any] = made["customer"]
    return customer


def _pc_subscriptions(stack: Stack, tenant: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = stack.sim.customer_state(tenant)["subscriptions"]
    return found


def _sync_now(stack: Stack) -> dict[str, Any]:
    """Sync now through the host; the run once finished."""
    status, _, run = stack.call("POST", "resellers/demo/sync", OWNER)
    assert status == 202, run
    return _finished(stack, run["id"])


def _nightly(stack: Stack) -> dict[str, Any]:
    """Start the runs as the timer does (against the stack's tables); demo's, once finished."""
    started: list[SyncRun] = sync.start_nightly(stack.c.sync_book)
    [run] = [r for r in started if r.reseller == "demo"]
    return _finished(stack, run.id)


def _finished(stack: Stack, run_id: str, timeout: float = 60) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        status, _, run = stack.call("GET", f"resellers/demo/sync/runs/{run_id}", OWNER)
        assert status == 200, run
        return run if run["status"] in FINISHED else None

    run: dict[str, Any] = wait_until(done, timeout=timeout, what=f"sync run {run_id} to finish")
    return run


def _customers(stack: Stack) -> dict[str, dict[str, Any]]:
    """Demo's customers through the API, by tenant id."""
    status, _, page = stack.call("GET", "resellers/demo/customers?pageSize=100", OWNER)
    assert status == 200, page
    return {c["tenantId"]: c for c in page["items"]}


def _subscriptions(stack: Stack, customer_id: str) -> dict[str, dict[str, Any]]:
    """A customer's subscriptions through the API, by id."""
    path = f"resellers/demo/customers/{customer_id}/subscriptions?pageSize=100"
    status, _, page = stack.call("GET", path, OWNER)
    assert status == 200, page
    return {s["id"].lower(): s for s in page["items"]}


def _counts(run: dict[str, Any], *names: str) -> dict[str, int]:
    return {n: run["counts"][n] for n in names}


def _advance(stack: Stack, seconds: float) -> None:
    """Move the simulator's clock; the platform's follows within about a second."""
    stack.sim.advance_clock(seconds=seconds)
    time.sleep(CLOCK_FOLLOWS_WITHIN)


def _sim_now(stack: Stack) -> datetime:
    return datetime.fromisoformat(stack.sim.now().replace("Z", "+00:00")).astimezone(UTC)


# --- the checks ---------------------------------------------------------------------------


def test_sync_now_adds_only_the_tenant_of_demo_not_the_one_whose_partner_id_shares_its_prefix(
    stack: Stack,
):
    demo = stack.demo_partner_id()
    assert PREFIX_PARTNER_ID.startswith(demo) and demo != PREFIX_PARTNER_ID
    mine = _tenant(
        stack, demo, "fresh-tenant.onmicrosoft.com", _line(stack, E3, 5), _line(stack, BASIC, 3)
    )
    theirs = _tenant(stack, PREFIX_PARTNER_ID, "not-demos.onmicrosoft.com", _line(stack, E3, 2))
    subs = {s["id"].lower(): s for s in _pc_subscriptions(stack, mine["id"])}
    e3 = next(sid for sid, s in subs.items() if s["quantity"] == 5)
    stack.sim.set_consumed_units(mine["id"], e3, 4)
    stack.start_host(**FAST)

    run = _sync_now(stack)

    assert run["status"] == "Succeeded", run
    found = _customers(stack)
    assert list(found) == [mine["id"]] and theirs["id"] not in found
    customer = found[mine["id"]]
    assert (customer["status"], customer["origin"]) == ("Active", "ExistingTenant")
    assert customer["domain"] == "fresh-tenant.onmicrosoft.com"
    listed = _subscriptions(stack, customer["id"])
    assert set(listed) == set(subs)
    for sid, sub in listed.items():
        assert sub["origin"] == "Synced" and sub["priced"] is not None, sub
        assert sub["quantity"] == subs[sid]["quantity"]
        assert sub["status"].lower() == "active"
    assert listed[e3]["assignedLicences"] == 4
    assert _counts(
        run, "customersAdded", "subscriptionsAdded", "customersUnassociated", "subscriptionsEnded"
    ) == {
        "customersAdded": 1,
        "subscriptionsAdded": 2,
        "customersUnassociated": 0,
        "subscriptionsEnded": 0,
    }
    assert run["counts"]["partnerCenterCalls"] > 0 and run["errors"] == []
    # The reseller is told, naming the new customer.
    [mail] = wait_until(stack.emails, what="the e-mail about the new customer")
    assert mail["Subject"] == "1 new customer from Partner Center"
    assert customer["name"] in mail.get_payload(decode=True).decode()


def test_an_order_placed_in_partner_center_appears_after_the_nightly_run_and_after_sync_now(
    stack: Stack,
):
    demo = stack.demo_partner_id()
    tenant = _tenant(stack, demo, "orders-there.onmicrosoft.com", _line(stack, E3, 2))
    leaving = _tenant(stack, demo, "leaving.onmicrosoft.com", _line(stack, BASIC, 1))
    stack.start_host(**FAST)
    first = _sync_now(stack)
    assert first["status"] == "Succeeded" and first["counts"]["subscriptionsAdded"] == 2
    customer_id = _customers(stack)[tenant["id"]]["id"]

    # Placed in Partner Center's own UI: the nightly run (a delta) finds it by its audit record.
    # Meanwhile the company was renamed there, and the other customer ended the relationship.
    order = stack.sim.place_order(tenant["id"], _line(stack, BASIC, 7)["catalogItemId"], 7)
    stack.sim.update_company(tenant["id"], companyName="Renamed There a.s.")
    stack.sim.end_relationship(leaving["id"])
    nightly = _nightly(stack)
    assert (nightly["status"], nightly["kind"], nightly["trigger"]) == (
        "Succeeded",
        "Delta",
        "Nightly",
    ), nightly
    assert _counts(nightly, "subscriptionsAdded", "customersUpdated", "customersUnassociated") == {
        "subscriptionsAdded": 1,
        "customersUpdated": 1,
        "customersUnassociated": 1,
    }
    listed = _subscriptions(stack, customer_id)
    [added] = [s for s in listed.values() if s["quantity"] == 7]
    assert added["origin"] == "Synced" and added["priced"] is not None
    [pc_line] = order["lineItems"]
    assert added["id"].lower() == pc_line["subscriptionId"].lower()
    customers = _customers(stack)
    assert customers[tenant["id"]]["name"] == "Renamed There a.s."
    # Flagged, never deleted; the other one is not flagged.
    assert customers[leaving["id"]]["unassociatedSince"] is not None
    assert customers[tenant["id"]]["unassociatedSince"] is None

    # Another one, then Sync now: it refreshes everything and finds it too.
    stack.sim.place_order(tenant["id"], _line(stack, E3, 11)["catalogItemId"], 11)
    again = _sync_now(stack)
    assert (again["status"], again["kind"]) == ("Succeeded", "Full")
    assert _counts(again, "subscriptionsAdded", "customersUnassociated") == {
        "subscriptionsAdded": 1,
        "customersUnassociated": 0,
    }
    assert sorted(s["quantity"] for s in _subscriptions(stack, customer_id).values()) == [2, 7, 11]


def test_a_subscription_that_expired_in_partner_center_shows_expired_after_the_next_run(
    stack: Stack,
):
    tenant = _tenant(
        stack,
        stack.demo_partner_id(),
        "lapsing.onmicrosoft.com",
        _line(stack, BASIC, 4, term="P1M"),
        _line(stack, E3, 2),
    )
    [monthly] = [s for s in _pc_subscriptions(stack, tenant["id"]) if s["quantity"] == 4]
    reply = stack.sim_call(
        "PATCH",
        f"/v1/customers/{tenant['id']}/subscriptions/{monthly['id']}",
        "auto-renew-off-1",
        {"autoRenewEnabled": False},
    )
    assert reply.status_code in (200, 202), reply.text
    stack.start_host(**FAST)
    first = _sync_now(stack)
    assert first["status"] == "Succeeded"
    customer_id = _customers(stack)[tenant["id"]]["id"]
    before = _subscriptions(stack, customer_id)[monthly["id"].lower()]
    assert before["status"].lower() == "active" and before["autoRenew"] is False

    # Microsoft lets it expire at 00:00 UTC the day after the (inclusive) commitment end
    # date, with no audit record. The nightly runs come as they would: one on the last day of
    # the commitment (still active), one the night after (expired).
    end = datetime.fromisoformat(before["commitmentEndDate"]).astimezone(UTC)
    _advance(stack, (end - _sim_now(stack)).total_seconds() + 3600)
    last_day = _nightly(stack)
    assert (last_day["status"], last_day["kind"]) == ("Succeeded", "Delta"), last_day
    assert last_day["counts"]["subscriptionsEnded"] == 0
    assert _subscriptions(stack, customer_id)[monthly["id"].lower()]["status"].lower() == "active"
    _advance(stack, 86400)
    in_pc = {s["id"]: s["status"] for s in _pc_subscriptions(stack, tenant["id"])}
    assert in_pc[monthly["id"]] == "expired"

    run = _nightly(stack)

    assert (run["status"], run["kind"]) == ("Succeeded", "Delta"), run
    assert run["counts"]["subscriptionsEnded"] == 1
    record = stack.c.subscriptions.get(customer_id, monthly["id"].lower())
    assert record.status.lower() == "expired"
    after = _subscriptions(stack, customer_id)
    assert after[monthly["id"].lower()]["status"].lower() == "expired"
    others = [s["status"].lower() for k, s in after.items() if k != monthly["id"].lower()]
    assert others == ["active"]


# Every step the engine records (`SyncBook.step_done`): after the customer phase wrote its chunks
# (before the run's update that sends their messages), after a group of a chunk's customers was
# written (before its checkpoint), after a checkpoint (before the run's progress).
STEPS = ["customers", "chunk-writes", "checkpoint"]
# What differs between two runs of the same data in two sets of tables: our ids, ETags, times,
# which run did it, the Partner Center calls a resumed run repeats.
VOLATILE = {
    "etag",
    "id",
    "customer_id",
    "request_id",
    "created_at",
    "updated_at",
    "refreshed_at",
    "status_since",
    "sync_run",
}
COSTS = {"partnerCenterCalls", "throttledWaits", "throttledSeconds"}


def _data(stack: Stack) -> dict[str, Any]:
    """Demo's customers (by tenant id) with their subscriptions (by id), without VOLATILE."""
    found: dict[str, Any] = {}
    for customer in stack.c.customers.iterate("demo"):
        subs = {
            s.id.lower(): s.model_dump(mode="json", exclude=VOLATILE)
            for s in stack.c.subscriptions.iterate(customer.id)
        }
        found[customer.tenant_id or ""] = {
            "customer": customer.model_dump(mode="json", exclude=VOLATILE),
            "subscriptions": subs,
        }
    return found


def _figures(run: dict[str, Any]) -> dict[str, Any]:
    counts = {k: v for k, v in run["counts"].items() if k not in COSTS}
    return {
        "status": run["status"],
        "kind": run["kind"],
        "counts": counts,
        "errors": run["errors"],
        "chunks": (run["chunksTotal"], run["chunksDone"], run["chunksFailed"]),
    }


def _sync_emails(stack: Stack) -> list[str]:
    return [n.id for n in stack.c.notifications.iterate("demo") if n.id.startswith("sync-")]


@pytest.fixture(scope="module")
def uninterrupted(
    azurite: Azurite,
    partner_center_sim: SimulatorHandle,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[SimulatorHandle, dict[str, Any], dict[str, Any]]]:
    """Tenants of demo (one with an assigned licence) and one of the prefix-sharing partner in
    the simulator, synced once without interruption into tables of their own: the simulator,
    that run and the data it made. Its host is stopped before the tests start theirs (hosts
    share the queues)."""
    sim = partner_center_sim
    sim.reset()
    try:
        tmp = tmp_path_factory.mktemp("sync-uninterrupted")
        with open_stack(azurite, new_table_prefix(), tmp, sim) as ref:
            made = sim.seed(5, reseller_id=ref.demo_partner_id(), subscriptions_per_customer=2)
            sim.seed(1, reseller_id=PREFIX_PARTNER_ID, subscriptions_per_customer=1)
            tenant = made["customerIds"][0]
            sim.set_consumed_units(tenant, _pc_subscriptions(ref, tenant)[0]["id"], 1)
            _import_catalog(ref.c)
            ref.start_host(**FAST)
            run = _sync_now(ref)
            data = _data(ref)
        assert run["status"] == "Succeeded" and run["counts"]["customersAdded"] == 5
        assert run["chunksTotal"] == 3 and len(data) == 5
        yield sim, run, data
    finally:
        sim.reset()


@pytest.mark.parametrize("step", STEPS)
def test_a_host_killed_after_a_step_of_a_run_ends_with_what_an_uninterrupted_run_makes(
    uninterrupted: tuple[SimulatorHandle, dict[str, Any], dict[str, Any]],
    azurite: Azurite,
    table_prefix: str,
    tmp_path: Path,
    step: str,
):
    sim, expected, expected_data = uninterrupted
    with open_stack(azurite, table_prefix, tmp_path, sim) as stack:
        _import_catalog(stack.c)
        crashing = stack.start_host(SYNC_STEP_CRASH_AFTER=step, **FAST)
        status, _, started = stack.call("POST", "resellers/demo/sync", OWNER)
        assert status == 202, started
        wait_until(lambda: not crashing.is_running(), what=f"the host to die after {step}")
        stack.start_host(**FAST)

        run = _finished(stack, started["id"], timeout=90)

        assert _figures(run) == _figures(expected)
        assert _data(stack) == expected_data
        assert _sync_emails(stack) == [f"sync-{run['id']}-customers"]
