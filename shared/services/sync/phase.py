"""A run's first message: mark it Running, reconcile the customers, choose whom to refresh,
write the chunks and send one message per chunk.

Full (the first run, Sync now): every Active customer still associated. Delta: the customers
Partner Center's audit records name since the last complete run's watermark, the ones this
run added, the ones with a live subscription whose commitment has ended (renewed or expired
without an audit record), the ones the last complete run could not refresh, and, for their
licence counts only, each day's rotating share since the last complete run (`licence_slice`),
so that no customer's counts are older than SYNC_LICENCE_MAX_AGE_DAYS.

The chunks are written before the run's update that carries their messages (one transaction
with the run's checkpoint `chunks_total`, and the first `runs.MESSAGES_PER_WRITE` messages; the rest
follow in further writes, each counting them in `chunks_sent`): a redelivery before that update
writes the same chunks again; one after it finds `chunks_total` set and sends what is unsent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from shared.domain.customers import Customer, CustomerStatus
from shared.domain.errors import Conflict
from shared.domain.identity import RESELLER_PARTITION, Reseller
from shared.domain.sync import (
    ChunkCustomer,
    SyncChange,
    SyncChunk,
    SyncKind,
    SyncMessage,
    SyncRun,
    SyncStatus,
    licence_slice,
    sync_marks,
    sync_row_key,
)
from shared.ports import PartnerCenter
from shared.services.sync import runs
from shared.services.sync.book import SyncBook
from shared.services.sync.chunks import ENDED_STATUSES
from shared.services.sync.finish import finish
from shared.services.sync.tenants import reconcile

log = logging.getLogger(__name__)

_CHUNKS_PER_BATCH = 50
# Partner Center keeps 90 days of audit records; a delta needs every one since its watermark.
AUDIT_KEPT = timedelta(days=89)
# A delta reads from this long before the last run's watermark: a record Partner Center
# stamps a little before our clock said "until" (clock skew, a record that shows up late) is
# then read by the next run rather than never. Reading a customer twice changes nothing.
AUDIT_OVERLAP = timedelta(minutes=15)
# Microsoft renews or expires a subscription from 00:00 UTC the day after its (inclusive)
# commitment end date, and may take up to 24 h: a commitment that ended up to this long before
# a run's window may have been renewed or expired within it.


def customer_phase(book: SyncBook, partner_center: PartnerCenter, message: SyncMessage) -> None:
    """The run's customer phase (idempotent: a redelivery redoes or skips what is done)."""
    run = book.runs.find(message.reseller, sync_row_key(message.run_id))
    if run is None:
        log.warning("sync run %s/%s no longer exists", message.reseller, message.run_id)
        return
    if run.status.finished:
        return
    if run.chunks_total is not None:
        _send_rest(book, run)  # a crash came between two writes of its messages
        return
    reseller = book.resellers.get(RESELLER_PARTITION, run.reseller)
    reseller.require_tenant_id()
    reseller.require_mpn_id()  # the chunks keep only the subscriptions it is reseller of record of
    run = _begin(book, run)
    with book.meter() as meter:
        found = reconcile(book, partner_center, reseller, run)
        targets = _targets(book, partner_center, reseller, run, found.customers)
        chunks = _write_chunks(book, run, targets)
        counts = found.counts
        counts.partner_center_calls += meter.calls
        counts.throttled_waits += meter.throttled
        counts.throttled_seconds += meter.waited_seconds
    run.counts = counts
    for error in found.errors:
        run.add_error(error)
    run.chunks_total = len(chunks)
    run.chunks_sent = min(len(chunks), runs.MESSAGES_PER_WRITE)
    run.updated_at = book.clock.now()
    messages = [runs.chunk_message(run, c.number) for c in chunks[: run.chunks_sent]]
    book.step_done("customers")
    if not chunks:
        finish(book, run)
        return
    _send_rest(book, book.runs.update(run, messages=messages))


def _send_rest(book: SyncBook, run: SyncRun) -> None:
    """The chunk messages not sent yet (none unsent on a run from before `chunks_sent`)."""
    if run.chunks_sent is not None and run.chunks_total is not None:
        unsent = list(range(run.chunks_sent, run.chunks_total))
        runs.send_chunks(book.runs, book.clock, run, unsent, count=True)


def _begin(book: SyncBook, run: SyncRun) -> SyncRun:
    """Running, with the audit window fixed once (a redelivery reads the same window)."""
    if run.status is SyncStatus.RUNNING and run.audit_until is not None:
        return run
    now = book.clock.now()
    run.status = SyncStatus.RUNNING
    run.started_at = run.started_at or now
    run.audit_until = now
    if run.kind is SyncKind.DELTA:
        previous = runs.last_complete(book.runs, run.reseller)
        run.audit_since = (
            previous.audit_until - AUDIT_OVERLAP
            if previous is not None and previous.audit_until is not None
            else None
        )
        lost = previous is not None and previous.failed_customers_lost
        if run.audit_since is None or now - run.audit_since > AUDIT_KEPT or lost:
            # Nothing to start a delta from, or audit records older than Partner Center keeps,
            # or more customers the last run could not refresh than it could name.
            run.kind, run.audit_since = SyncKind.FULL, None
    run.updated_at = now
    return book.runs.update(run)


def _targets(
    book: SyncBook,
    partner_center: PartnerCenter,
    reseller: Reseller,
    run: SyncRun,
    customers: list[Customer],
) -> list[ChunkCustomer]:
    """Whom the chunks refresh, in a stable order (everything first, then licences only)."""
    live = {
        c.id: c
        for c in customers
        if c.status is CustomerStatus.ACTIVE and c.tenant_id and c.unassociated_since is None
    }
    added = {c for c in live if _added(live[c], run.id)}
    # Listed as ours again in this run: what changed meanwhile left no audit record we read.
    back = {c for c in live if SyncChange.REASSOCIATED in _marks(live[c], run.id)}
    if run.kind is SyncKind.FULL:
        full = set(live)
        licences: set[str] = set()
    else:
        assert run.audit_since is not None and run.audit_until is not None
        full = added | back | _audited(partner_center, live, run.audit_since, run.audit_until)
        full |= _commitment_ended(book, reseller, live, run.audit_until)
        full |= _failed_last_time(book, run.reseller, live)
        watermark = run.audit_since + AUDIT_OVERLAP  # the last run's own, where its days ended
        licences = _licence_share(book, live, watermark, run.audit_until) - full
    ordered = sorted(full) + sorted(licences)
    return [
        ChunkCustomer(
            customer_id=cid,
            tenant_id=live[cid].tenant_id or "",
            licences_only=cid in licences,
            new=cid in added,
        )
        for cid in ordered
    ]


def _added(customer: Customer, run_id: str) -> bool:
    return SyncChange.ADDED in _marks(customer, run_id)


def _marks(customer: Customer, run_id: str) -> set[SyncChange]:
    return sync_marks(customer.sync_run, customer.sync_change, run_id)


def _audited(
    partner_center: PartnerCenter, live: dict[str, Customer], since: datetime, until: datetime
) -> set[str]:
    """Customers Partner Center's audit records of [since, until) name."""
    by_tenant = {(c.tenant_id or "").lower(): cid for cid, c in live.items()}
    named: set[str] = set()
    for event in partner_center.audit_events(since, until):
        cid = by_tenant.get((event.customer_tenant_id or "").lower())
        if cid is not None:
            named.add(cid)
    return named


def _commitment_ended(
    book: SyncBook, reseller: Reseller, live: dict[str, Customer], until: datetime
) -> set[str]:
    """Customers with a live subscription whose commitment ended before `until`: renewed or
    expired at Microsoft (at 00:00 after its end date), which leaves no audit record. Such a
    record is stale by definition, whenever it ended: one read before the renewal, or a
    missed run, is healed by the next run. One filtered query, but over the whole
    Subscriptions table (no PartitionKey: partitions are customers); a per-reseller index of
    commitment ends would make it a partition query."""
    found = book.subscriptions.iterate(
        equals={"reseller": reseller.slug}, before={"commitment_end_date": until}
    )
    return {
        s.customer_id
        for s in found
        if s.customer_id in live and s.status.lower() not in ENDED_STATUSES
    }


def _failed_last_time(book: SyncBook, reseller: str, live: dict[str, Customer]) -> set[str]:
    """Customers the last complete run could not refresh (its audit records are behind the
    watermark now, so only this brings them back)."""
    previous = runs.last_complete(book.runs, reseller)
    return set(previous.failed_customers) & set(live) if previous is not None else set()


def _licence_share(
    book: SyncBook, live: dict[str, Customer], since: datetime, until: datetime
) -> set[str]:
    """Every customer in the rotating licence share of a day since the last complete run."""
    days = book.policy.licence_max_age_days
    first = (since + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    span = list(_days(first, until))
    if len(span) >= max(days, 1):
        return set(live)
    return {cid for cid in live if any(licence_slice(cid, day, days) for day in span)}


def _days(first: datetime, until: datetime) -> Iterable[datetime]:
    day = first
    while day <= until:
        yield day
        day += timedelta(days=1)


def _write_chunks(book: SyncBook, run: SyncRun, targets: list[ChunkCustomer]) -> list[SyncChunk]:
    """The run's chunks, written (again, after a crash: nothing has read them yet)."""
    size = max(book.policy.chunk_size, 1)
    now = book.clock.now()
    chunks = [
        SyncChunk(
            run_id=run.id,
            reseller=run.reseller,
            number=n,
            customers=targets[start : start + size],
            created_at=now,
            updated_at=now,
        )
        for n, start in enumerate(range(0, len(targets), size))
    ]
    earlier = {c.number: c for c in book.chunks.iterate(run.id)}
    for start in range(0, len(chunks), _CHUNKS_PER_BATCH):
        batch = chunks[start : start + _CHUNKS_PER_BATCH]
        adds = [c for c in batch if c.number not in earlier]
        updates = []
        for c in batch:
            if c.number in earlier:
                c.etag = earlier[c.number].etag
                updates.append(c)
        try:
            book.chunks.save_all(run.id, adds=adds, updates=updates)
        except Conflict:
            # Another delivery of this message wrote them meanwhile: theirs are the same work.
            log.warning("chunks of run %s written concurrently", run.id)
    stale = [c for n, c in earlier.items() if n >= len(chunks)]
    for c in stale:
        book.chunks.delete(c)
    return chunks
