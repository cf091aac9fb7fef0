"""The order fake's audit events, qualifications and outside-the-platform helpers behave like
the client against the simulator (tests/integration/test_partner_center_sync_reads.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.customers import Qualification
from shared.domain.errors import NotFound, UpstreamUnavailable
from shared.domain.subscriptions import SubscriptionChange
from tests.fakes import FakeCustomerPartnerCenter
from tests.order_fakes import FakeOrderPartnerCenter

RESELLER = "3f2c6a1e-8d4b-4c1a-9b7e-2a5d0c9e4f10"
ITEM = "CFQ7TTC0LH18:0001:CFQ7TTC0LDJ4"


class Clock:
    def __init__(self) -> None:
        self.moment = datetime(2026, 3, 1, 9, tzinfo=UTC)

    def now(self) -> datetime:
        return self.moment


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pc(clock: Clock) -> FakeOrderPartnerCenter:
    return FakeOrderPartnerCenter(fallback=FakeCustomerPartnerCenter(), clock=clock)


def test_a_tenant_accepting_the_reseller_and_its_outside_order_are_listed_and_audited(
    pc: FakeOrderPartnerCenter, clock: Clock
) -> None:
    tenant = pc.accept_reseller(RESELLER, "contoso.onmicrosoft.com", "Contoso")
    clock.moment += timedelta(hours=1)
    order = pc.place_order_outside(tenant.id, ITEM, 3)

    events = list(pc.audit_events(clock.moment - timedelta(days=1), clock.moment + timedelta(1)))

    assert [t.id for t in pc.customer_tenants(indirect_reseller_id=RESELLER)] == [tenant.id]
    assert [(e.operation, e.customer_tenant_id) for e in events] == [
        ("add_customer", tenant.id),
        ("create_order", tenant.id),
    ]
    assert events[1].resource_id == order.id
    assert [f.quantity for f in pc.subscription_facts(tenant.id)] == [3]
    assert pc.subscription_facts("another-tenant") == []


def test_a_change_is_audited_and_expiry_is_not(pc: FakeOrderPartnerCenter, clock: Clock) -> None:
    tenant = pc.accept_reseller(RESELLER, "contoso.onmicrosoft.com")
    sid = pc.place_order_outside(tenant.id, ITEM, 3).lines[0].subscription_id
    assert sid is not None

    pc.change_subscription(tenant.id, sid, SubscriptionChange(quantity=4), request_id="r1")
    pc.expire(sid)

    operations = [e.operation for e in pc.audit_events(clock.moment, clock.moment + timedelta(1))]
    assert operations == ["add_customer", "create_order", "update_subscription"]
    assert pc.subscription(tenant.id, sid).status == "Expired"


def test_audit_events_before_90_days_are_gone_and_failures_surface(
    pc: FakeOrderPartnerCenter, clock: Clock
) -> None:
    pc.accept_reseller(RESELLER, "old.onmicrosoft.com")
    clock.moment += timedelta(days=100)
    pc.accept_reseller(RESELLER, "new.onmicrosoft.com")

    events = list(pc.audit_events(clock.moment - timedelta(days=200), clock.moment + timedelta(1)))

    assert len(events) == 1
    pc.fail_next.append(UpstreamUnavailable("throttled", retry_after=1))
    with pytest.raises(UpstreamUnavailable):
        pc.audit_events(clock.moment, clock.moment)


def test_qualification_is_none_until_microsoft_vets_and_unknown_tenants_are_not_found(
    pc: FakeOrderPartnerCenter,
) -> None:
    tenant = pc.accept_reseller(RESELLER, "school.onmicrosoft.com")
    assert pc.customer_qualification(tenant.id, "education") is Qualification.NONE

    pc.set_qualification(tenant.id, "Education", Qualification.APPROVED)

    assert pc.customer_qualification(tenant.id, "education") is Qualification.APPROVED
    with pytest.raises(NotFound):
        pc.customer_qualification("unknown", "education")
