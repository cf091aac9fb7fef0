"""Runs as the watchdog (`services/watchdog.py`) sees them: Queued or Running with no progress.

Progress is the newest write of the run or of any of its chunks (a chunk checkpoints every few
customers). A run with none for the deadline has its pending messages sent again once (the
customer phase, or each chunk not yet ended, resuming from its checkpoint); still none a
deadline later, it is Failed with the reason, what its chunks did kept and counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from shared.domain.errors import ConcurrencyConflict
from shared.domain.failures import Failure
from shared.domain.outbox import OutboxMessage, Queue
from shared.domain.sync import ChunkStatus, SyncMessage, SyncRun, SyncStatus, sync_row_key
from shared.services.sync import runs
from shared.services.sync.book import SyncBook
from shared.services.sync.finish import fail_run
from shared.services.watchdog import InFlight


class StaleRuns:
    """The watchdog's source of sync runs in flight."""

    kind = "sync-run"

    def __init__(self, book: SyncBook) -> None:
        self.book = book

    @property
    def deadline(self) -> timedelta:
        """How long a run may go without progress before the watchdog acts."""
        return self.book.policy.stuck_after

    def in_flight(self) -> Iterator[InFlight]:
        """Every run Queued or Running (one filtered query per status), with its last progress."""
        for status in (SyncStatus.QUEUED, SyncStatus.RUNNING):
            for run in self.book.runs.iterate(equals={"status": status}):
                yield InFlight(
                    kind=self.kind,
                    partition=run.reseller,
                    id=run.id,
                    status=run.status.value,
                    since=self._progress(run),
                    nudged_at=run.nudged_at,
                )

    def _progress(self, run: SyncRun) -> datetime:
        latest = run.updated_at
        if run.chunks_total:
            for chunk in self.book.chunks.iterate(run.id):
                latest = max(latest, chunk.updated_at)
        return latest

    def nudge(self, item: InFlight) -> None:
        """Send the run's pending messages again, once (through the outbox, with the mark)."""
        for _ in range(3):
            run = self.book.runs.find(item.partition, sync_row_key(item.id))
            if run is None or run.status.finished or run.nudged_at is not None:
                return
            if run.chunks_total is None:
                pending: list[int | None] = [None]
            else:
                pending = [
                    c.number
                    for c in self.book.chunks.iterate(run.id)
                    if c.status is ChunkStatus.PENDING
                ]
            run.nudged_at = run.updated_at = self.book.clock.now()
            first = pending[: runs.MESSAGES_PER_WRITE]
            messages = [
                OutboxMessage(
                    queue=Queue.SYNC_RESELLER,
                    body=SyncMessage(reseller=run.reseller, run_id=run.id, chunk=n).body(),
                )
                for n in first
            ]
            try:
                run = self.book.runs.update(run, messages=messages)
            except ConcurrencyConflict:
                continue  # it moved meanwhile: look again
            # More chunks than one write holds: the rest in further writes (lost in a crash
            # here, the run is failed a deadline later, as any run without progress).
            rest = [n for n in pending[len(first) :] if n is not None]
            runs.send_chunks(self.book.runs, self.book.clock, run, rest, count=False)
            return

    def fail(self, item: InFlight, failure: Failure) -> None:
        """End the run Failed with the reason (if it is still in flight)."""
        run = self.book.runs.find(item.partition, sync_row_key(item.id))
        if run is not None and not run.status.finished:
            fail_run(self.book, run, failure.reason)
