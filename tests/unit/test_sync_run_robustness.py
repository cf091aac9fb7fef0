"""Sync runs that meet trouble: customers whose reads failed, Partner Center's rate limit, long
chunks, the watchdog, stale commitments, many chunks, the licence share, retention."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.domain import sync as sync_domain
from shared.domain.errors import Throttled, UpstreamUnavailable
from shared.domain.outbox import Queue
from shared.domain.sync import (
    ChunkStatus,
    SyncCounts,
    SyncKind,
    SyncMessage,
    SyncRun,
    SyncStatus,
    SyncTrigger,
    licence_slice,
    sync_row_key,
)
from shared.services import sync
from shared.services.sync import runs
from shared.services.watchdog import watch
from tests.order_fakes import FakeScheduler
from tests.unit.test_sync_engine import Harness, _sub, make_harness


@pytest.fixture
def h() -> Harness:
    return make_harness()


def _scheduled(h: Harness) -> list[tuple[dict[str, Any], float]]:
    """The sync messages sent for later, taken off the fake scheduler."""
    scheduler = h.book.scheduler
    assert isinstance(scheduler, FakeScheduler)
    found = [(body, delay) for q, body, delay in scheduler.sent if q is Queue.SYNC_RESELLER]
    scheduler.sent = [s for s in scheduler.sent if s[0] is not Queue.SYNC_RESELLER]
    return found


def _pump_all(h: Harness) -> None:
    """Deliver every message, those sent for later too (their delay passed), until none is left."""
    h.pump()
    while later := _scheduled(h):
        h.queue.extend((body, 1) for body, _ in later)
        h.pump()


def _run(h: Harness, trigger: SyncTrigger = SyncTrigger.NIGHTLY) -> SyncRun:
    started = h.start(trigger)
    _pump_all(h)
    return h.runs.get("demo", sync_row_key(started.id))


# --- customers whose reads failed (review item 2) --------------------------------------------


def test_a_customer_whose_read_failed_is_refreshed_by_the_next_delta(h: Harness) -> None:
    bad, good = h.add_tenant("bad"), h.add_tenant("good")
    _run(h)
    customer = h.customer_of(bad.id)
    s = _sub(h, customer.id)
    h.subs.delete(h.subs.get(customer.id, s.id.lower()))
    h.give(bad.id, s)  # bought in Partner Center; its audit record falls in the failed run
    h.pc.fail_tenants[bad.id] = UpstreamUnavailable("Partner Center is busy")
    failed = _run(h, SyncTrigger.MANUAL)
    assert failed.status is SyncStatus.SUCCEEDED and failed.errors_total == 1
    assert failed.failed_customers == [customer.id]
    assert [c.failed_customers for c in h.chunks.iterate(failed.id) if c.failed_customers] == [
        [customer.id]
    ]
    del h.pc.fail_tenants[bad.id]
    h.clock.advance(days=1)
    delta = _run(h)  # no audit record names it any more
    assert delta.kind is SyncKind.DELTA and delta.failed_customers == []
    assert h.subs.find(customer.id, s.id.lower()) is not None
    assert delta.counts.subscriptions_added == 1
    assert h.customer_of(good.id).unassociated_since is None


def test_more_failed_customers_than_a_run_keeps_make_the_next_nightly_run_full(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync_domain, "MAX_FAILED_KEPT", 1)
    tenants = [h.add_tenant(f"busy{i}") for i in range(3)]
    _run(h)
    for t in tenants[:2]:
        h.pc.fail_tenants[t.id] = UpstreamUnavailable("Partner Center is busy")
    failed = _run(h, SyncTrigger.MANUAL)
    assert failed.failed_customers_total == 2 and len(failed.failed_customers) == 1
    h.pc.fail_tenants.clear()
    h.clock.advance(days=1)
    nightly = _run(h)
    assert nightly.kind is SyncKind.FULL and nightly.counts.customers_refreshed == 3


def test_a_rate_limit_wait_longer_than_a_minute_re_enqueues_the_chunk_with_the_delay(
    h: Harness,
) -> None:
    first, second = h.add_tenant("first"), h.add_tenant("second")  # one chunk of two
    _run(h)
    h.pc.fail_tenants[second.id] = Throttled("request budget exhausted", retry_after=120.0)
    started = h.start(SyncTrigger.MANUAL)
    h.pump()
    later = _scheduled(h)
    assert [(body.get("chunk"), delay) for body, delay in later] == [(0, 120.0)]
    (chunk,) = h.chunks.iterate(started.id)
    assert chunk.status is ChunkStatus.PENDING and chunk.position == 1  # checkpointed
    assert chunk.errors_total == 0 and chunk.failed_customers == []
    assert chunk.counts.throttled_waits == 1 and chunk.counts.throttled_seconds == 120.0
    del h.pc.fail_tenants[second.id]
    h.queue.extend((body, 1) for body, _ in later)  # two minutes later
    _pump_all(h)
    run = h.runs.get("demo", sync_row_key(started.id))
    assert run.status is SyncStatus.SUCCEEDED and run.errors_total == 0
    assert run.counts.customers_refreshed == 2
    assert h.customer_of(first.id).unassociated_since is None


# --- long chunks and the watchdog (review item 4) ---------------------------------------------


def test_a_chunk_past_its_time_budget_checkpoints_and_goes_on_in_a_new_message(
    h: Harness,
) -> None:
    for i in range(3):
        h.add_tenant(f"slow{i}")
    h.book.policy.chunk_size = 3
    _run(h)
    h.book.policy.chunk_time_budget = timedelta(0)  # time is up after every checkpoint
    started = h.start(SyncTrigger.MANUAL)
    h.pump()
    later = _scheduled(h)
    assert [(body.get("chunk"), delay) for body, delay in later] == [(0, 0.0)]
    (chunk,) = h.chunks.iterate(started.id)
    assert chunk.status is ChunkStatus.PENDING and chunk.position == 1
    h.queue.extend((body, 1) for body, _ in later)
    _pump_all(h)
    run = h.runs.get("demo", sync_row_key(started.id))
    assert run.status is SyncStatus.SUCCEEDED and run.counts.customers_refreshed == 3
    assert run.counts.throttled_waits == 0  # its own time budget is no throttling


def test_a_run_making_progress_after_the_watchdogs_nudge_is_not_failed(h: Harness) -> None:
    h.add_tenant("late")
    started = h.start()
    h.runs.sent.clear()  # the message is late, not lost
    source = sync.StaleRuns(h.book)
    h.clock.advance(minutes=31)
    assert [i.id for i in watch([source], h.clock.now()).nudged] == [started.id]
    h.clock.advance(minutes=20)
    h.queue.clear()
    run = h.runs.get("demo", sync_row_key(started.id))
    run.updated_at = h.clock.now()  # a chunk checkpoints: progress
    h.runs.update(run)
    h.clock.advance(minutes=15)  # 35 minutes after the nudge, 15 after the progress
    report = watch([source], h.clock.now())
    assert report.failed == [] and report.stale == {"sync-run": 0}
    assert not h.runs.get("demo", sync_row_key(started.id)).status.finished


# --- commitments that ended (review item 3) ---------------------------------------------------


def test_a_live_subscription_whose_commitment_ended_before_the_last_run_is_refreshed_next_time(
    h: Harness,
) -> None:
    tenant = h.add_tenant("renewing")
    _run(h)
    customer = h.customer_of(tenant.id)
    ended = h.clock.now() - timedelta(hours=1)
    s = _sub(h, customer.id, commitment_end_date=ended)
    h.give(tenant.id, s)
    _run(h, SyncTrigger.MANUAL)  # read before Microsoft renewed it
    fake = h.pc.tenant(tenant.id)
    renewed = ended + timedelta(days=365)
    fake.subscriptions[s.id] = replace(fake.subscriptions[s.id], commitment_end_date=renewed)
    h.clock.advance(days=1)
    run = _run(h)
    assert run.kind is SyncKind.DELTA
    assert h.subs.get(customer.id, s.id.lower()).commitment_end_date == renewed


# --- many chunks (review item 9) --------------------------------------------------------------


def test_a_run_with_more_chunks_than_a_transaction_holds_sends_every_chunk_message(
    h: Harness,
) -> None:
    h.book.policy.chunk_size = 1
    for i in range(150):
        h.add_tenant(f"many{i:03d}")
    real_update = h.runs.update
    crashed: list[int] = []

    def update(item: SyncRun, **kw: Any) -> SyncRun:
        # The host dies once between the first and the second write of the chunk messages.
        if (item.chunks_sent or 0) > 90 and not crashed:
            crashed.append(item.chunks_sent or 0)
            raise ConnectionError("host killed")
        return real_update(item, **kw)

    h.runs.update = update  # type: ignore[method-assign]
    run = _run(h)
    assert crashed == [150]
    assert run.status is SyncStatus.SUCCEEDED, run.failure_reason
    assert run.chunks_total == 150 and run.chunks_sent == 150
    assert all(len(c.customers) == 1 for c in h.chunks.iterate(run.id))
    assert run.counts.customers_refreshed == 150


# --- the licence share (review item 14) -------------------------------------------------------


def test_a_nights_licence_share_is_one_days_slice_when_the_last_run_began_just_after_midnight(
    h: Harness,
) -> None:
    h.clock.current = datetime(2026, 3, 1, 0, 5, tzinfo=UTC)
    for i in range(49):
        h.add_tenant(f"share{i}")
    _run(h)
    h.clock.advance(days=1)
    run = _run(h)
    share = {
        cc.customer_id for c in h.chunks.iterate(run.id) for cc in c.customers if cc.licences_only
    }
    day = datetime(2026, 3, 2, tzinfo=UTC)
    ids = [c.id for c in h.c.customers.iterate("demo")]
    assert share == {cid for cid in ids if licence_slice(cid, day, 7)}


# --- counts (review item 7) -------------------------------------------------------------------


def test_a_run_counts_the_data_records_it_wrote_as_records_written() -> None:
    stored = SyncCounts.model_validate({"table_writes": 4})  # a run stored before the rename
    assert stored.records_written == 4
    run = SyncRun(
        reseller="demo",
        kind=SyncKind.FULL,
        trigger=SyncTrigger.MANUAL,
        queued_at=datetime(2026, 1, 1, tzinfo=UTC),
        counts=stored,
    )
    shown = runs.present(run).model_dump(by_alias=True)["counts"]
    assert shown["recordsWritten"] == 4 and "tableWrites" not in shown


# --- retention (review item 8) ----------------------------------------------------------------


def test_housekeeping_deletes_finished_runs_and_their_chunks_after_the_retention(
    h: Harness,
) -> None:
    from shared.services import housekeeping

    for i in range(3):
        h.add_tenant(f"old{i}")
    old = _run(h)
    h.clock.advance(days=60)
    recent = _run(h, SyncTrigger.MANUAL)
    active = h.start(SyncTrigger.MANUAL)  # in flight: never deleted
    h.clock.advance(days=31)
    keeping = housekeeping.Housekeeping(
        idempotency=h.c.idempotency,
        invitations=h.c.invitations,
        notifications=h.c.notifications,
        transient=[],
        clock=h.clock,
        retention=timedelta(days=30),
        poison_depths=dict,
        resellers=h.c.resellers,
        sync_runs=h.runs,
        sync_chunks=h.chunks,
        sync_retention=timedelta(days=90),
    )
    assert housekeeping.purge(keeping).sync_runs == 1
    assert h.runs.find("demo", sync_row_key(old.id)) is None
    assert list(h.chunks.iterate(old.id)) == []
    assert h.runs.find("demo", sync_row_key(recent.id)) is not None
    assert list(h.chunks.iterate(recent.id)) != []
    assert h.runs.find("demo", sync_row_key(active.id)) is not None
    assert housekeeping.purge(keeping).sync_runs == 0


def test_the_container_deletes_sync_runs_after_the_retention_setting(h: Harness) -> None:
    c = h.c
    c.__dict__.update(sync_runs=h.runs, sync_chunks=h.chunks)
    c.settings.sync_run_retention_days = 45
    kept = c.housekeeping
    assert kept.sync_runs is h.runs and kept.sync_chunks is h.chunks
    assert kept.sync_retention == timedelta(days=45)


def test_a_run_the_watchdog_fails_keeps_its_chunks_error_lines_and_failed_customers(
    h: Harness,
) -> None:
    tenants = [h.add_tenant(f"gone{i}") for i in range(3)]  # two chunks
    _run(h)
    for t in tenants:
        h.pc.fail_tenants[t.id] = UpstreamUnavailable("Partner Center is busy")
    started = h.start(SyncTrigger.MANUAL)
    phase = h.runs.sent.pop(0).body
    sync.handle(h.book, h.pc, SyncMessage.model_validate(phase))
    first = next(m.body for m in h.runs.sent if m.body.get("chunk") == 0)
    h.runs.sent.clear()  # chunk 1's message is lost
    sync.handle(h.book, h.pc, SyncMessage.model_validate(first))
    source = sync.StaleRuns(h.book)
    for _ in range(2):  # nudged once (lost again), then Failed
        h.clock.advance(minutes=31)
        watch([source], h.clock.now())
        h.runs.sent.clear()
    run = h.runs.get("demo", sync_row_key(started.id))
    assert run.status is SyncStatus.FAILED
    assert run.errors_total == 2 and len(run.failed_customers) == 2


def test_the_watchdog_resends_more_chunk_messages_than_one_write_holds(h: Harness) -> None:
    h.book.policy.chunk_size = 1
    for i in range(105):
        h.add_tenant(f"lost{i:03d}")
    started = h.start()
    phase = h.runs.sent.pop(0).body
    sync.handle(h.book, h.pc, SyncMessage.model_validate(phase))
    h.runs.sent.clear()  # its chunk messages never arrive
    h.clock.advance(minutes=31)
    report = watch([sync.StaleRuns(h.book)], h.clock.now())
    assert [i.id for i in report.nudged] == [started.id]
    assert sorted(m.body["chunk"] for m in h.runs.sent) == list(range(105))
    _pump_all(h)
    run = h.runs.get("demo", sync_row_key(started.id))
    assert run.status is SyncStatus.SUCCEEDED and run.counts.customers_refreshed == 105
