"""Starting sync runs against Azurite: concurrent starts make one run and one message; the
claim is given up with the finished run; a run's figures survive storage."""

from __future__ import annotations

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from azure.storage.queue import TextBase64DecodePolicy

from shared.bootstrap import Container
from shared.config import Settings
from shared.domain.outbox import Queue
from shared.domain.sync import SyncCounts, SyncError, SyncStatus, SyncTrigger, sync_row_key
from shared.services.sync import runs
from tests.fakes import FakeClock

pytestmark = pytest.mark.integration

THREADS = 20


@pytest.fixture
def reseller() -> str:
    """A reseller slug of this test only (the queue is shared by the session's tests)."""
    return f"r{uuid.uuid4().hex[:10]}"


def _sync_messages(container: Container, reseller: str) -> list[dict[str, object]]:
    client = container.queues.service.get_queue_client(
        Queue.SYNC_RESELLER.value, message_decode_policy=TextBase64DecodePolicy()
    )
    found = [json.loads(m.content) for m in client.peek_messages(max_messages=32)]
    return [m for m in found if m.get("reseller") == reseller]


def test_twenty_concurrent_sync_nows_make_one_run_and_one_message(
    settings: Settings, container: Container, reseller: str
):
    clock = FakeClock()
    # One container per thread: twenty instances of the app, each with its own clients.
    instances = [Container(settings, clock=clock) for _ in range(THREADS)]
    barrier = threading.Barrier(THREADS)

    def click(c: Container) -> tuple[str, bool]:
        barrier.wait()
        run, created = runs.start(
            c.sync_runs, c.clock, reseller, SyncTrigger.MANUAL, "owner@demo.example"
        )
        return run.id, created

    with ThreadPoolExecutor(THREADS) as pool:
        answers = list(pool.map(click, instances))

    assert len({run_id for run_id, _ in answers}) == 1, answers
    assert sum(created for _, created in answers) == 1
    (run_id,) = {run_id for run_id, _ in answers}
    stored = list(container.sync_runs.iterate(reseller))
    assert [r.id for r in stored] == [run_id]
    assert container.sync_runs.claim_owner(reseller, runs.ACTIVE) == sync_row_key(run_id)
    (message,) = _sync_messages(container, reseller)
    assert {k: v for k, v in message.items() if k != "messageId"} == {
        "reseller": reseller,
        "runId": run_id,
    }


def test_a_released_run_frees_the_reseller_for_the_next_and_keeps_its_figures(
    container: Container, reseller: str
):
    c = Container(container.settings, clock=FakeClock())
    first, created = runs.start(c.sync_runs, c.clock, reseller, SyncTrigger.NIGHTLY)
    assert created
    first.status, first.started_at = SyncStatus.SUCCEEDED, c.clock.now()
    first.finished_at = c.clock.now() + timedelta(minutes=4)
    first.counts = SyncCounts(customers_added=3, throttled_seconds=2.25, partner_center_calls=41)
    first.chunks_total, first.chunks_done = 2, 2
    first.add_error(
        SyncError(customer_id="C1", customer_name="Alfa", message="boom", at=c.clock.now())
    )
    runs.release(c.sync_runs, first)

    assert c.sync_runs.claim_owner(reseller, runs.ACTIVE) is None
    kept = runs.get(c.sync_runs, reseller, first.id)
    assert kept.counts == first.counts
    assert kept.errors == first.errors and kept.errors_total == 1
    assert runs.last_complete(c.sync_runs, reseller) == kept

    c.clock.advance(minutes=5)  # within the cooldown: a nightly start is not refused
    second, created = runs.start(c.sync_runs, c.clock, reseller, SyncTrigger.NIGHTLY)
    assert created and second.id != first.id
    assert second.kind.value == "Delta"
    second.status, second.finished_at = SyncStatus.FAILED, c.clock.now()
    runs.release(c.sync_runs, second)
    with pytest.raises(runs.SyncCoolingDown):  # Sync now is, after the run that just ended
        runs.start(c.sync_runs, c.clock, reseller, SyncTrigger.MANUAL)
    page = runs.list_runs(c.sync_runs, reseller, 10, None)
    assert [r.id for r in page.items] == [second.id, first.id]  # newest first
    assert runs.last_complete(c.sync_runs, reseller).id == first.id  # type: ignore[union-attr]
