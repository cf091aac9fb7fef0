"""Sync now through the local host, Azurite and the simulator: the demo data `make run` seeds
for it, one run for two clicks, the runs API, another reseller's token."""

from __future__ import annotations

from typing import Any

import pytest

from localdev.seed import PREFIX_PARTNER_ID, SYNC_ONLY_TENANTS, seed_customers, seed_sync_tenants
from tests.integration.test_customers_local_host import Stack
from tests.integration.test_customers_local_host import stack as stack_fixture
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
stack = stack_fixture  # the customers tests' Azurite + simulator + issuer + hosts
OWNER = "owner@demo.example"


def _sim_tenants(stack: Stack, partner_id: str) -> list[dict[str, Any]]:
    with stack.sim.client() as client:
        reply = client.get("/_sim/state/customers", params={"resellerId": partner_id})
    reply.raise_for_status()
    items: list[dict[str, Any]] = reply.json()["items"]
    return items


def test_the_demo_seed_leaves_tenants_only_partner_center_knows_once(stack: Stack):
    demo = stack.demo_partner_id()
    known = {c.tenant_id for c in seed_customers(stack.c)}

    made = seed_sync_tenants(stack.c)

    assert PREFIX_PARTNER_ID.startswith(demo) and demo != PREFIX_PARTNER_ID
    assert {owner: len(ids) for owner, ids in made.items()} == {
        demo: SYNC_ONLY_TENANTS,
        PREFIX_PARTNER_ID: 1,
    }
    only_there = [t for t in _sim_tenants(stack, demo) if t["id"] not in known]
    assert sorted(t["id"] for t in only_there) == sorted(made[demo])
    assert all(t["subscriptions"] > 0 for t in only_there)
    assert [t["id"] for t in _sim_tenants(stack, PREFIX_PARTNER_ID)] == made[PREFIX_PARTNER_ID]
    assert seed_sync_tenants(stack.c) == {}  # a second make run adds nothing


def test_sync_now_twice_through_the_host_is_one_run_and_another_reseller_sees_none(
    stack: Stack,
):
    seed_customers(stack.c)  # and their user, it@customer.example
    stack.start_host()

    status, headers, run = stack.call("POST", "resellers/demo/sync", OWNER)
    assert status == 202, run
    assert headers["location"] == f"/api/resellers/demo/sync/runs/{run['id']}"
    assert (run["status"], run["kind"], run["trigger"]) == ("Queued", "Full", "Manual")

    status, _, again = stack.call("POST", "resellers/demo/sync", OWNER)
    assert status == 202 and again["id"] == run["id"]

    status, _, page = stack.call("GET", "resellers/demo/sync/runs", OWNER)
    assert status == 200 and [r["id"] for r in page["items"]] == [run["id"]]
    status, headers, one = stack.call("GET", f"resellers/demo/sync/runs/{run['id']}", OWNER)
    assert status == 200 and one["id"] == run["id"] and headers["etag"]

    outsider = "owner@other.example"
    assert stack.call("POST", "resellers/demo/sync", outsider)[0] == 404
    assert stack.call("GET", "resellers/demo/sync/runs", outsider)[0] == 404
    assert stack.call("GET", f"resellers/demo/sync/runs/{run['id']}", outsider)[0] == 404
    status, _, theirs = stack.call("GET", "resellers/other/sync/runs", outsider)
    assert status == 200 and theirs["items"] == []

    # A customer's own user does not learn the reseller's runs exist; Sales may not sync.
    for email, refused in (("it@customer.example", 404), ("sales@demo.example", 403)):
        assert stack.call("POST", "resellers/demo/sync", email)[0] == refused, email
        assert stack.call("GET", "resellers/demo/sync/runs", email)[0] == refused, email
        one = f"resellers/demo/sync/runs/{run['id']}"
        assert stack.call("GET", one, email)[0] == refused, email
    status, _, page = stack.call("GET", "resellers/demo/sync/runs", OWNER)
    assert [r["id"] for r in page["items"]] == [run["id"]]  # still the one run

    # One message for the two clicks: the host ran the customer phase once, and each chunk once.
    def finished() -> dict[str, Any] | None:
        found = stack.call("GET", f"resellers/demo/sync/runs/{run['id']}", OWNER)[2]
        return found if found["status"] in ("Succeeded", "Failed") else None

    done = wait_until(finished, what="the run to finish")
    assert done["status"] == "Succeeded" and done["chunksTotal"] == 1, done
    ran = stack.host.logs().count("Executing 'Functions.queue_sync_reseller'")
    assert ran == 1 + done["chunksTotal"]
