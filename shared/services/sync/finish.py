"""The end of a run: the last chunk to end adds the figures up and finishes it, exactly once.

Each chunk, once Done or Failed, reads every chunk of its run and writes the run's progress
(`chunks_done`, `chunks_failed`) If-Match; the write that sees every chunk ended also finishes
the run (Succeeded, or Failed naming the failed chunks) and gives up the reseller's "active"
claim (`runs.release`). Of two chunks ending together at least one sees both ended (each reads
after its own write); if both do, the ETag lets one finish it and the other find it finished.
The reseller is told once (a fixed notification id) when the run added customers.
"""

from __future__ import annotations

import contextlib
import logging

from shared.domain.errors import ConcurrencyConflict, Conflict
from shared.domain.failures import Failure
from shared.domain.identity import RESELLER_PARTITION, NotificationEvent
from shared.domain.sync import (
    ChunkStatus,
    SyncChange,
    SyncChunk,
    SyncMessage,
    SyncRun,
    SyncStatus,
    chunk_row_key,
    sync_row_key,
)
from shared.services import notifications
from shared.services.sync import runs
from shared.services.sync.book import SyncBook

log = logging.getLogger(__name__)

# Names listed in the e-mail about new customers (the total is always given).
NAMES_LISTED = 20
_TRIES = 10


def settle(book: SyncBook, reseller: str, run_id: str) -> SyncRun | None:
    """Write the run's progress from its chunks; finish it when every chunk has ended."""
    for _ in range(_TRIES):
        run = book.runs.find(reseller, sync_row_key(run_id))
        if run is None:
            return None
        if run.status.finished:
            notify(book, run)
            return run
        if run.chunks_total is None:
            return run  # the customer phase has not written its chunks yet
        chunks = list(book.chunks.iterate(run.id))
        done = sum(1 for c in chunks if c.status is ChunkStatus.DONE)
        failed = [c for c in chunks if c.status is ChunkStatus.FAILED]
        if (done, len(failed)) == (run.chunks_done, run.chunks_failed) and (
            done + len(failed) < run.chunks_total
        ):
            return run
        run.chunks_done, run.chunks_failed = done, len(failed)
        try:
            if done + len(failed) >= run.chunks_total:
                return finish(book, run, chunks)
            run.updated_at = book.clock.now()
            return book.runs.update(run)
        except ConcurrencyConflict:
            continue  # another chunk wrote the run meanwhile: read both again
    raise ConcurrencyConflict(f"sync run {run_id} kept changing")


def finish(book: SyncBook, run: SyncRun, chunks: list[SyncChunk] | None = None) -> SyncRun:
    """Sum the chunks into the run, mark it Succeeded or Failed, release the claim, notify."""
    chunks = chunks or []
    _sum_chunks(run, chunks)
    failed = [c for c in chunks if c.status is ChunkStatus.FAILED]
    now = book.clock.now()
    run.status = SyncStatus.FAILED if failed else SyncStatus.SUCCEEDED
    if failed:
        run.failure_reason = "; ".join(
            f"chunk {c.number + 1} of {run.chunks_total} failed: {c.failure_reason}" for c in failed
        )[:2000]
    run.finished_at = now
    run.updated_at = now
    saved = runs.release(book.runs, run)
    notify(book, saved)
    return saved


def _sum_chunks(run: SyncRun, chunks: list[SyncChunk]) -> None:
    """Add the chunks' counts, error lines and failed customers to the run's own (its customer
    phase's): done once, as the run is finished."""
    total = run.counts
    for c in chunks:
        total = total + c.counts
        for error in c.errors:
            run.add_error(error)
        run.errors_total += max(c.errors_total - len(c.errors), 0)
        run.add_failed(c.failed_customers)
    run.counts = total


def notification_id(run: SyncRun) -> str:
    """The fixed id of a run's e-mail about new customers (queued once)."""
    return f"sync-{run.id}-customers"


def notify(book: SyncBook, run: SyncRun) -> None:
    """Tell the reseller of the customers the run added (nothing when it added none)."""
    if book.notifications is None or run.counts.customers_added == 0:
        return
    if book.notifications.find(run.reseller, notification_id(run)) is not None:
        return
    reseller = book.resellers.get(RESELLER_PARTITION, run.reseller)
    page = book.customers.list(
        run.reseller,
        equals={"sync_run": run.id, "sync_change": SyncChange.ADDED.value},
        page_size=NAMES_LISTED,
    )
    names = sorted(c.name for c in page.items)
    total = run.counts.customers_added
    more = total - len(names)
    subject = f"{total} new customer{'s' if total != 1 else ''} from Partner Center"
    text = (
        f"The sync of {run.started_at or run.queued_at:%Y-%m-%d %H:%M} UTC found "
        f"{total} customer tenant{'s' if total != 1 else ''} that accepted "
        f"{reseller.settings.appearance.display_name} as their reseller. "
        "They are now Active customers:\n\n"
        + "".join(f"- {n}\n" for n in names)
        + (f"… and {more} more.\n" if more > 0 else "")
        + "\nSet their segment and industry where they are not commercial customers.\n"
    )
    email = notifications.email_to(
        reseller, NotificationEvent.CUSTOMER_PROVISIONED, subject, text, users=book.users
    )
    if email is None:
        return
    with contextlib.suppress(Conflict):  # queued by an earlier delivery
        notifications.queue_email(
            book.notifications, run.reseller, email, notification_id=notification_id(run)
        )


def give_up(book: SyncBook, message: SyncMessage, failure: Failure) -> None:
    """A message that failed for good: its chunk is Failed with the reason (the run ends when
    the others do, Failed naming it); a customer phase that failed ends the run Failed."""
    if message.chunk is None:
        run = book.runs.find(message.reseller, sync_row_key(message.run_id))
        if run is None or run.status.finished or run.chunks_total is not None:
            return
        fail_run(book, run, f"The customer list could not be synced: {failure.reason}")
        return
    for _ in range(_TRIES):
        chunk = book.chunks.find(message.run_id, chunk_row_key(message.chunk))
        if chunk is None or chunk.status is not ChunkStatus.PENDING:
            break
        chunk.status = ChunkStatus.FAILED
        chunk.failure_reason = failure.reason[:1000]
        chunk.updated_at = book.clock.now()
        try:
            book.chunks.update(chunk)
            break
        except ConcurrencyConflict:
            continue
    settle(book, message.reseller, message.run_id)


def fail_run(book: SyncBook, run: SyncRun, reason: str) -> SyncRun:
    """End a run Failed with `reason` (what its chunks did so far is kept and counted)."""
    for _ in range(_TRIES):
        if run.status.finished:
            return run
        chunks = list(book.chunks.iterate(run.id)) if run.chunks_total else []
        run.chunks_done = sum(1 for c in chunks if c.status is ChunkStatus.DONE)
        run.chunks_failed = sum(1 for c in chunks if c.status is ChunkStatus.FAILED)
        _sum_chunks(run, chunks)
        now = book.clock.now()
        run.status, run.failure_reason = SyncStatus.FAILED, reason[:2000]
        run.finished_at = run.updated_at = now
        try:
            return runs.release(book.runs, run)
        except ConcurrencyConflict:
            found = book.runs.find(run.reseller, sync_row_key(run.id))
            if found is None:
                return run
            run = found
    raise ConcurrencyConflict(f"sync run {run.id} kept changing")
