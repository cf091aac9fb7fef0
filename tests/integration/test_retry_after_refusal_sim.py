"""Retry after a refusal, through the real Partner Center client and the simulator over HTTPS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localdev.partner_center_sim import SimulatorHandle
from shared.adapters.partner_center import build_partner_center
from shared.domain.customers import CustomerCreate, CustomerStatus, CustomerUpdate
from shared.domain.errors import UpstreamRejected
from shared.domain.failures import Failure, FailureKind
from shared.ports import PartnerCenter
from shared.services import customers
from tests.customer_bodies import new_customer_body
from tests.integration.test_partner_center_contract import new_customer, pc_settings
from tests.unit.test_customers import OWNER, World

pytestmark = pytest.mark.integration


@pytest.fixture
def client(fresh_partner_center_sim: SimulatorHandle) -> Iterator[PartnerCenter]:
    pc = build_partner_center(pc_settings(fresh_partner_center_sim))
    yield pc
    close = getattr(pc, "close", None)
    if close is not None:
        close()


def _step(w: World, pc: PartnerCenter, customer: customers.Customer) -> customers.Customer:
    """The provisioning step as the queue edge runs it: a refusal is recorded with its kind."""
    try:
        customers.provision(w.book, pc, w.mailer, w.message(customer))
    except UpstreamRejected as exc:
        customers.give_up(w.book, w.message(customer), Failure.of(exc))
    return w.repo.get("demo", customer.id)


def test_a_name_refused_by_partner_center_renamed_and_retried_ends_active(client):
    w = World()
    demo = w.resellers.get("reseller", "demo")
    command = CustomerCreate.model_validate(new_customer_body("refusedname"))
    customer = customers.create(w.book, client, OWNER, "demo", command)
    # Between our check and the step, someone else's tenant takes the name.
    other = new_customer("refusedname")
    other.associated_partner_id = None
    client.create_customer(other)

    failed = _step(w, client, customer)
    assert failed.status is CustomerStatus.FAILED
    assert failed.failure_kind is FailureKind.REFUSED
    assert "already exists" in (failed.failure_reason or "")

    renamed = customers.update(
        w.book, OWNER, "demo", failed.id, failed.etag or "", CustomerUpdate(tenant_name="freshname")
    )
    retried = customers.retry(w.book, OWNER, "demo", renamed.id, renamed.etag)
    # Partner Center replays the 409 for the old MS-RequestId: the retry must be a new request.
    assert retried.request_id != failed.request_id

    active = _step(w, client, retried)
    assert active.status is CustomerStatus.ACTIVE, active.failure_reason
    assert active.domain == "freshname.onmicrosoft.com" and active.tenant_id
    assert (
        client.get_customer(active.tenant_id).associated_partner_id == demo.partner_center_tenant_id
    )
