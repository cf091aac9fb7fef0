"""What the sync reads from Partner Center, through the real client against the simulator:
audit records (one day per query, every page, oldest first, 90 days kept), qualifications, an
indirect reseller's customers page by page, and the states a real sandbox reaches by waiting
(a tenant accepting the reseller, an order placed in Partner Center's UI, expiry)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from urllib.parse import parse_qs

import pytest

from localdev.partner_center_sim import SimulatorHandle
from shared.adapters.partner_center import PartnerCenterClient, audit, build_partner_center
from shared.domain.customers import Qualification
from shared.domain.sync import AuditEvent
from tests.integration.test_partner_center_contract import BASIC, catalog_item, pc_settings

pytestmark = pytest.mark.integration

DEMO = "3f2c6a1e-8d4b-4c1a-9b7e-2a5d0c9e4f10"


@pytest.fixture
def sim(fresh_partner_center_sim: SimulatorHandle) -> SimulatorHandle:
    """The session's simulator, reset for this test."""
    return fresh_partner_center_sim


@pytest.fixture
def client(sim: SimulatorHandle) -> Iterator[PartnerCenterClient]:
    """The production client against the simulator."""
    pc = build_partner_center(pc_settings(sim))
    yield pc
    pc.close()


def sim_now(sim: SimulatorHandle) -> datetime:
    return datetime.fromisoformat(sim.now().replace("Z", "+00:00"))


def events_until_now(client: PartnerCenterClient, sim: SimulatorHandle) -> list[AuditEvent]:
    now = sim_now(sim)
    return list(client.audit_events(now - timedelta(days=3), now + timedelta(seconds=5)))


def accept(sim: SimulatorHandle, reseller: str = DEMO, **kwargs: object) -> dict[str, object]:
    domain = f"t{uuid.uuid4().hex[:12]}.onmicrosoft.com"
    customer: dict[str, object] = sim.accept_reseller(reseller, domain, **kwargs)["customer"]  # type: ignore[arg-type]
    return customer


def audit_queries(sim: SimulatorHandle) -> list[dict[str, list[str]]]:
    return [parse_qs(r["query"]) for r in sim.requests(path_prefix="/v1/auditrecords")]


def test_a_tenant_accepting_the_reseller_is_listed_with_an_add_customer_record(
    client: PartnerCenterClient, sim: SimulatorHandle
) -> None:
    customer = accept(sim)

    listed = list(client.customer_tenants(indirect_reseller_id=DEMO))
    events = events_until_now(client, sim)

    assert [t.id for t in listed] == [customer["id"]]
    assert [(e.operation, e.customer_tenant_id, e.resource_type) for e in events] == [
        ("add_customer", customer["id"], "customer")
    ]


def test_an_order_placed_in_partner_center_shows_as_subscription_and_create_order(
    client: PartnerCenterClient, sim: SimulatorHandle
) -> None:
    customer_id = str(accept(sim)["id"])
    item, term, cycle = catalog_item(client, BASIC)

    order = sim.place_order(customer_id, item, 4, term, cycle)

    facts = client.subscription_facts(customer_id)
    assert [(f.order_id, f.quantity, f.status) for f in facts] == [(order["id"], 4, "Active")]
    created = [e for e in events_until_now(client, sim) if e.operation == "create_order"]
    assert [(e.customer_tenant_id, e.resource_id) for e in created] == [(customer_id, order["id"])]


def test_an_accepted_tenant_with_subscriptions_gets_them_in_one_order(
    client: PartnerCenterClient, sim: SimulatorHandle
) -> None:
    item, term, cycle = catalog_item(client, BASIC)
    line = {"catalogItemId": item, "quantity": 2, "termDuration": term, "billingCycle": cycle}

    customer_id = str(accept(sim, subscriptions=[line, {**line, "quantity": 3}])["id"])

    assert sorted(f.quantity for f in client.subscription_facts(customer_id)) == [2, 3]
    assert [e.operation for e in events_until_now(client, sim)] == ["add_customer", "create_order"]


def test_a_bad_order_line_leaves_no_tenant_behind(sim: SimulatorHandle) -> None:
    bad = {"catalogItemId": "NOPE:0001:0001", "quantity": 1, "termDuration": "P1Y"}

    with pytest.raises(Exception, match="400"):
        accept(sim, subscriptions=[bad])

    assert sim.summary()["customers"] == 0


def test_every_subscription_patch_is_audited_with_old_and_new_values(
    client: PartnerCenterClient, sim: SimulatorHandle
) -> None:
    customer_id = str(accept(sim)["id"])
    item, term, cycle = catalog_item(client, BASIC)
    order = sim.place_order(customer_id, item, 2, term, cycle)
    subscription_id = order["lineItems"][0]["subscriptionId"]

    client.set_subscription_quantity(customer_id, subscription_id, 5)
    client.set_auto_renew(customer_id, subscription_id, False)

    updates = [e for e in events_until_now(client, sim) if e.operation == "update_subscription"]
    assert [e.resource_id for e in updates] == [subscription_id, subscription_id]
    now = sim_now(sim)
    records = [
        r
        for r in client.list_audit_records(now - timedelta(hours=1))
        if r.operation_type == "update_subscription"
    ]
    changes = sorted((r.resource_old_value or "", r.resource_new_value or "") for r in records)
    assert any('"quantity": 2' in old and '"quantity": 5' in new for old, new in changes)


def test_renewal_and_expiry_leave_no_audit_record_and_an_expired_subscription_shows_expired(
    client: PartnerCenterClient, sim: SimulatorHandle
) -> None:
    customer_id = str(accept(sim)["id"])
    item, _, cycle = catalog_item(client, BASIC, term="P1M")
    renewing = sim.place_order(customer_id, item, 1, "P1M", cycle)["lineItems"][0]
    expiring = sim.place_order(customer_id, item, 1, "P1M", cycle)["lineItems"][0]
    client.set_auto_renew(customer_id, expiring["subscriptionId"], False)
    before = sim.summary()["auditRecords"]

    sim.advance_clock(days=40)

    by_id = {f.id: f for f in client.subscription_facts(customer_id)}
    assert by_id[expiring["subscriptionId"]].status == "Expired"
    assert by_id[renewing["subscriptionId"]].status == "Active"
    assert sim.summary()["auditRecords"] == before


def test_audit_events_are_read_one_day_per_query_every_page_oldest_first(
    client: PartnerCenterClient, sim: SimulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit, "PAGE_SIZE", 2)
    start = sim_now(sim)
    made = []
    for _ in range(3):
        made += [accept(sim)["id"] for _ in range(3)]
        sim.advance_clock(days=1)
    sim.clear_requests()

    events = list(client.audit_events(start - timedelta(minutes=1), sim_now(sim)))

    assert [e.customer_tenant_id for e in events] == made
    assert [e.at for e in events] == sorted(e.at for e in events)
    queries = audit_queries(sim)
    firsts = [q for q in queries if "seekOperation" not in q]
    assert len(firsts) == 4  # three days and the minute before them
    for query in firsts:
        begin = datetime.fromisoformat(query["startDate"][0].replace("Z", "+00:00"))
        end = datetime.fromisoformat(query["endDate"][0].replace("Z", "+00:00"))
        assert timedelta(0) < end - begin <= timedelta(days=1)
        assert query["size"] == ["2"]
    assert len(queries) - len(firsts) >= 3  # next pages through MS-ContinuationToken


def test_a_start_older_than_90_days_is_read_from_90_days_back(
    client: PartnerCenterClient, sim: SimulatorHandle, caplog: pytest.LogCaptureFixture
) -> None:
    customer_id = accept(sim)["id"]
    now = sim_now(sim)
    with sim.client() as raw:
        refused = raw.get(
            "/v1/auditrecords",
            params={"startDate": (now - timedelta(days=91)).strftime("%Y-%m-%d")},
            headers={"Authorization": f"Bearer {sim.token()}"},
        )
    assert refused.status_code == 400

    events = list(client.audit_events(now - timedelta(days=200), now + timedelta(seconds=5)))

    assert [e.customer_tenant_id for e in events] == [customer_id]
    assert "90 days" in caplog.text
    assert all(r["status"] == 200 for r in sim.requests(path_prefix="/v1/auditrecords")[1:])


def test_audit_records_filter_by_customer(
    client: PartnerCenterClient, sim: SimulatorHandle
) -> None:
    first, second = accept(sim)["id"], accept(sim)["id"]
    now = sim_now(sim)
    spec = json.dumps({"Field": "CustomerId", "Value": second, "Operator": "equals"})

    records = list(client.list_audit_records(now - timedelta(hours=1), filter=spec))

    assert {r.customer_id for r in records} == {second} and first != second


def test_customer_qualification_follows_microsofts_vetting(
    client: PartnerCenterClient, sim: SimulatorHandle
) -> None:
    customer_id = str(accept(sim)["id"])
    assert client.customer_qualification(customer_id, "education") is Qualification.NONE

    seen = []
    for status in ("underReview", "approved", "rejected"):
        sim.set_qualification(customer_id, "education", status)
        seen.append(client.customer_qualification(customer_id, "education"))

    assert seen == [Qualification.PENDING, Qualification.APPROVED, Qualification.REJECTED]
    assert client.customer_qualification(customer_id, "government") is Qualification.NONE
    operations = [e.operation for e in events_until_now(client, sim)]
    assert operations.count("update_customer_qualification") == 3


def test_company_data_changed_in_partner_center_is_audited_and_read(
    client: PartnerCenterClient, sim: SimulatorHandle
) -> None:
    customer_id = str(accept(sim)["id"])

    sim.update_company(
        customer_id, companyName="Nový název a.s.", billingProfile={"email": "x@y.cz"}
    )
    sim.end_relationship(customer_id)

    tenant = client.customer_tenant(customer_id)
    assert tenant.company_name == "Nový název a.s."
    assert list(client.customer_tenants(indirect_reseller_id=DEMO)) == []
    assert [e.operation for e in events_until_now(client, sim)] == [
        "add_customer",
        "update_customer_billing_profile",
        "remove_partner_customer_relationship",
    ]


def test_an_indirect_resellers_customers_are_listed_500_per_call(
    client: PartnerCenterClient, sim: SimulatorHandle
) -> None:
    sim.seed(1001, DEMO, subscriptions_per_customer=0)
    sim.clear_requests()

    tenants = list(client.customer_tenants(indirect_reseller_id=DEMO))

    calls = sim.requests(path_prefix="/v1/customers")
    assert len(tenants) == 1001
    assert len(calls) == 3
    assert all("size=500" in c["query"] for c in calls[:1])


def test_every_subscription_names_its_resellers_mpn_id_as_reseller_of_record(
    client: PartnerCenterClient, sim: SimulatorHandle
) -> None:
    item, term, cycle = catalog_item(client, BASIC)
    line = {"catalogItemId": item, "quantity": 2, "termDuration": term, "billingCycle": cycle}
    accepted = str(accept(sim, subscriptions=[line])["id"])
    sim.place_order(accepted, item, 1, term, cycle)
    [seeded] = sim.seed(1, DEMO, subscriptions_per_customer=2, seed=7)["customerIds"]
    unknown = str(uuid.uuid4())  # a reseller tenant id Partner Center does not list
    [stray] = sim.seed(1, unknown, subscriptions_per_customer=1, seed=8)["customerIds"]

    mine = [*client.subscription_facts(accepted), *client.subscription_facts(seeded)]
    assert len(mine) == 4
    assert {f.partner_id for f in mine} == {"6412345"}  # the demo reseller's MPN id
    assert [f.partner_id for f in client.subscription_facts(stray)] == [None]
