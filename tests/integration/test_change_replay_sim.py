"""What the simulator answers a repeated MS-RequestId of a subscription change that was refused
without being applied: the first answer again (it keeps every answer below 500), so a change
sent again after a lost ETag race or a "not now" needs a new request id. The applying step
relies on this (shared/services/subscriptions/applying.py), and `FakeOrderPartnerCenter` copies
it (tests/unit/test_fake_partner_center_subscriptions.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest

from localdev.partner_center_sim import SimulatorHandle
from shared.adapters.partner_center import PartnerCenterClient, build_partner_center
from shared.adapters.partner_center.wire import Subscription
from shared.domain.errors import ConcurrencyConflict, UpstreamUnavailable
from shared.domain.subscriptions import SubscriptionChange, SubscriptionFacts
from tests.integration.test_partner_center_contract import bought, pc_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def client(fresh_partner_center_sim: SimulatorHandle) -> Iterator[PartnerCenterClient]:
    pc = build_partner_center(pc_settings(fresh_partner_center_sim))
    yield pc
    pc.close()


def test_a_lost_etag_race_is_replayed_for_its_request_id_and_a_new_id_applies_the_change(
    client: PartnerCenterClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant, sid = bought(client, quantity=2)
    read = client.get_subscription

    def raced(customer_id: str, subscription_id: str) -> Subscription:
        current = read(customer_id, subscription_id)
        monkeypatch.undo()  # once: someone else changes it between our read and our write
        client.set_subscription_quantity(customer_id, subscription_id, 3)
        return current

    monkeypatch.setattr(client, "get_subscription", raced)
    request_id = str(uuid.uuid4())
    with pytest.raises(ConcurrencyConflict):
        client.change_subscription(
            tenant, sid, SubscriptionChange(quantity=5), request_id=request_id
        )

    # The same id, with a fresh read and ETag: the 412 again, nothing applied.
    with pytest.raises(ConcurrencyConflict):
        client.change_subscription(
            tenant, sid, SubscriptionChange(quantity=5), request_id=request_id
        )
    assert client.subscription(tenant, sid).quantity == 3

    applied = client.change_subscription(
        tenant, sid, SubscriptionChange(quantity=5), request_id=str(uuid.uuid4())
    )
    assert isinstance(applied, SubscriptionFacts) and applied.quantity == 5


def test_renewal_in_progress_is_replayed_for_its_request_id_after_the_renewal_is_over(
    client: PartnerCenterClient, fresh_partner_center_sim: SimulatorHandle
) -> None:
    sim = fresh_partner_center_sim
    tenant, sid = bought(client, quantity=2)
    sim.configure(renewalLagHours=12)
    end = client.subscription(tenant, sid).commitment_end_date
    assert end is not None
    now = datetime.fromisoformat(sim.now().replace("Z", "+00:00"))
    sim.advance_clock(seconds=(end - now).total_seconds() + 86400 + 3600)  # renewal running
    request_id = str(uuid.uuid4())
    with pytest.raises(UpstreamUnavailable) as renewing:
        client.change_subscription(
            tenant, sid, SubscriptionChange(quantity=3), request_id=request_id
        )
    assert renewing.value.code == "800082"

    sim.advance_clock(hours=12)  # the renewal is done
    with pytest.raises(UpstreamUnavailable) as replayed:
        client.change_subscription(
            tenant, sid, SubscriptionChange(quantity=3), request_id=request_id
        )
    assert replayed.value.code == "800082"

    applied = client.change_subscription(
        tenant, sid, SubscriptionChange(quantity=3), request_id=str(uuid.uuid4())
    )
    assert isinstance(applied, SubscriptionFacts) and applied.quantity == 3
