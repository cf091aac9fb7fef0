"""The sync through the services with real parts: records in Azurite, Partner Center the
simulator over HTTPS. A few customers of the demo reseller and one of a reseller whose id begins
with demo's; a full run, then a delta after a change in the simulator."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from localdev.azurite import Azurite
from localdev.partner_center_sim import SimulatorHandle
from shared.bootstrap import Container
from shared.config import Settings
from shared.domain.customers import CustomerOrigin, CustomerStatus
from shared.domain.outbox import Queue
from shared.domain.subscriptions import SubscriptionOrigin
from shared.domain.sync import (
    SyncKind,
    SyncMessage,
    SyncRun,
    SyncStatus,
    SyncTrigger,
    sync_row_key,
)
from shared.services import catalog_import, sync
from shared.services.sync import runs
from tests.fakes import onboard, reseller_ids
from tests.integration.test_partner_center_contract import pc_settings
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


class RecordingQueues:
    """The queue sender, in memory: this test delivers the messages itself."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def send(self, queue: str, text: str, *, delay_seconds: float = 0) -> None:
        with self._lock:
            self.sent.append((queue, text))

    def take(self, queue: Queue) -> list[str]:
        with self._lock:
            mine = [t for q, t in self.sent if q == queue.value]
            self.sent = [(q, t) for q, t in self.sent if q != queue.value]
        return mine


@pytest.fixture
def stack(
    azurite: Azurite,
    table_prefix: str,
    tmp_path: Path,
    fresh_partner_center_sim: SimulatorHandle,
) -> Iterator[tuple[Container, SimulatorHandle, RecordingQueues]]:
    values: dict[str, Any] = {
        **pc_settings(fresh_partner_center_sim).model_dump(by_alias=True, exclude_none=True),
        "AzureWebJobsStorage": azurite.connection_string,
        "TABLE_PREFIX": table_prefix,
        "MAIL_DROP_DIR": str(tmp_path / "mail"),
        "SYNC_CHUNK_SIZE": "2",
    }
    values = {
        k: (v.get_secret_value() if hasattr(v, "get_secret_value") else v)
        for k, v in values.items()
    }
    c = Container(Settings(**values))
    queues = RecordingQueues()
    c.__dict__["queues"] = queues
    reseller = onboard(c.resellers, c.clock, "demo")
    reseller.settings.notifications.extra_recipients = ["ops@demo.example"]  # someone to tell
    c.resellers.update(reseller)
    catalog_import.import_market(c.partner_center, c.products, c.market_stamps, c.clock, "CZ")
    yield c, fresh_partner_center_sim, queues
    c.partner_center.close()  # type: ignore[attr-defined]


def _run(c: Container, queues: RecordingQueues, trigger: SyncTrigger) -> SyncRun:
    """Start a run and deliver every sync-reseller message until none is left."""
    run, _ = runs.start(c.sync_runs, c.clock, "demo", trigger, cooldown=timedelta(0))
    for _ in range(200):
        pending = queues.take(Queue.SYNC_RESELLER)
        if not pending:
            break
        for text in pending:
            sync.handle(c.sync_book, c.partner_center, SyncMessage.model_validate(json.loads(text)))
    return c.sync_runs.get("demo", sync_row_key(run.id))


def test_full_then_delta_sync_against_the_simulator_and_azurite(
    stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    c, sim, queues = stack
    demo_tenant, demo_mpn = reseller_ids("demo")
    sim.add_reseller(demo_tenant, demo_mpn, "demo")  # its subscriptions then name its MPN id
    mine = sim.seed(3, reseller_id=demo_tenant, subscriptions_per_customer=2, seed=7)
    theirs = sim.seed(1, reseller_id=demo_tenant + "0", subscriptions_per_customer=1, seed=8)

    full = _run(c, queues, SyncTrigger.MANUAL)

    assert full.status is SyncStatus.SUCCEEDED, (full.failure_reason, full.errors)
    found = {cu.tenant_id: cu for cu in c.customers.iterate("demo")}
    assert set(found) == set(mine["customerIds"])
    assert not set(found) & set(theirs["customerIds"])
    for customer in found.values():
        assert customer.status is CustomerStatus.ACTIVE
        assert customer.origin is CustomerOrigin.EXISTING_TENANT
        subs = list(c.subscriptions.iterate(customer.id))
        assert len(subs) == 2
        assert all(s.origin is SubscriptionOrigin.SYNCED for s in subs)
        assert all(s.priced is not None or s.note for s in subs)
    counts = full.counts
    assert (counts.customers_added, counts.subscriptions_added) == (3, 6)
    assert counts.records_written == 9 and counts.partner_center_calls >= 0
    assert full.chunks_total == 2 and full.chunks_done == 2
    assert [n.id for n in c.notifications.iterate("demo")] == [f"sync-{full.id}-customers"]

    # Sync now again with nothing changed: everything read, nothing written, no e-mail.
    before = {(s.customer_id, s.id): s.etag for s in c.subscriptions.iterate()}
    again = _run(c, queues, SyncTrigger.MANUAL)
    assert again.status is SyncStatus.SUCCEEDED and again.counts.customers_refreshed == 3
    assert again.counts.records_written == 0
    assert {(s.customer_id, s.id): s.etag for s in c.subscriptions.iterate()} == before
    assert len(list(c.notifications.iterate("demo"))) == 1

    # A change made in Partner Center (a subscription's seats), then the nightly delta.
    customer = next(iter(found.values()))
    assert customer.tenant_id is not None
    state = sim.customer_state(customer.tenant_id)
    sid = state["subscriptions"][0]["id"]
    client: Any = c.partner_center
    current = client.subscription(customer.tenant_id, sid).quantity
    client.set_subscription_quantity(customer.tenant_id, sid, current + 1)
    sim.advance_clock(seconds=3600)
    moved = datetime.fromisoformat(sim.now().replace("Z", "+00:00"))
    # The platform's clock follows the simulator's within about a second.
    wait_until(lambda: c.clock.now() >= moved, what="the platform clock to follow")
    delta = _run(c, queues, SyncTrigger.NIGHTLY)
    assert delta.kind is SyncKind.DELTA
    assert delta.status is SyncStatus.SUCCEEDED, (delta.failure_reason, delta.errors)
    assert c.subscriptions.get(customer.id, sid.lower()).quantity == current + 1
    assert delta.counts.subscriptions_updated == 1
    assert delta.counts.customers_added == 0
    assert delta.counts.records_written == 1
    assert len(list(c.notifications.iterate("demo"))) == 1
