"""Housekeeping: the watchdog, poison queues, and retention (`timer_housekeeping`).

- Watchdog: every registered kind of record with transient states (see `services/watchdog.py`)
  is looked after, so nothing stays Provisioning silently.
- Poison queues: a message the host gave up on (one that never parsed, or whose `give_up`
  itself failed) is counted and logged as an error on every pass and shown by
  `GET /api/health?deep=1`; its record, if it was left in a transient state, is failed by the
  watchdog.
- Retention: expired Idempotency rows, accepted or expired invitations and sent notifications
  are deleted `RETENTION_DAYS` after they stopped mattering; so are the reminders' claim rows
  (`~claim~reminder~…` in each reseller's Notifications partition) once their day has passed
  by as long: one range query of each reseller's reminder claims (no record is read), so the
  cost follows the claims of the last weeks, not the subscriptions nor history. Finished sync
  runs are deleted `SYNC_RUN_RETENTION_DAYS` after they finished, their chunks first (one
  filtered query of `SyncRuns` on `finished_at`; a run whose chunks are gone but which is not
  is found again by the next pass).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain.errors import ConcurrencyConflict
from shared.domain.idempotency import IdempotencyRecord
from shared.domain.identity import RESELLER_PARTITION, Invitation, Reseller
from shared.domain.model import Record, WireModel
from shared.domain.notifications import Notification, NotificationStatus
from shared.domain.sync import SyncChunk, SyncRun
from shared.ports import Clock, Repository
from shared.services import reminders, watchdog
from shared.services.watchdog import TransientRecords

log = logging.getLogger(__name__)


@dataclass
class Housekeeping:
    """What the housekeeping pass works on."""

    idempotency: Repository[IdempotencyRecord]
    invitations: Repository[Invitation]
    notifications: Repository[Notification]
    transient: Sequence[TransientRecords]
    clock: Clock
    retention: timedelta
    # Approximate depth of each `<queue>-poison` queue.
    poison_depths: Callable[[], Mapping[str, int]]
    # The resellers, whose Notifications partitions hold the reminders' claim rows.
    resellers: Repository[Reseller]
    # Sync runs and their chunks, deleted `sync_retention` after the run finished.
    sync_runs: Repository[SyncRun] | None = None
    sync_chunks: Repository[SyncChunk] | None = None
    sync_retention: timedelta = timedelta(days=90)


class Operations(WireModel):
    """What `GET /api/health?deep=1` adds: poison queues and records stuck in flight."""

    poison_queues: dict[str, int]
    in_flight: dict[str, int]
    stale: dict[str, int]


class Purged(WireModel):
    """Rows deleted by retention, per table."""

    idempotency: int = 0
    invitations: int = 0
    notifications: int = 0
    reminder_claims: int = 0
    sync_runs: int = 0


def _pages(repo: Repository[Any], **query: Any) -> Iterator[Any]:
    token: str | None = None
    while True:
        page = repo.list(page_size=1000, continuation_token=token, **query)
        yield from page.items
        token = page.continuation_token
        if token is None:
            return


def _delete_all(repo: Repository[Any], rows: Iterator[Record]) -> int:
    deleted = 0
    for row in list(rows):
        try:
            repo.delete(row)
            deleted += 1
        except ConcurrencyConflict:
            pass  # changed or deleted meanwhile: the next pass decides again
    return deleted


def purge(h: Housekeeping) -> Purged:
    """Delete what retention lets go of (each table queried on its date, not read whole)."""
    cutoff = h.clock.now() - h.retention
    purged = Purged(
        idempotency=_delete_all(
            h.idempotency, _pages(h.idempotency, before={"expires_at": cutoff})
        ),
        invitations=_delete_all(
            h.invitations,
            _distinct(
                _pages(h.invitations, before={"expires_at": cutoff}),
                _pages(h.invitations, before={"accepted_at": cutoff}),
            ),
        ),
        notifications=_delete_all(
            h.notifications,
            _pages(
                h.notifications,
                equals={"status": NotificationStatus.SENT},
                before={"sent_at": cutoff},
            ),
        ),
        reminder_claims=_purge_reminder_claims(h, cutoff),
        sync_runs=_purge_sync_runs(h),
    )
    if any(purged.model_dump().values()):
        log.info("retention deleted %s", purged.model_dump())
    return purged


def _purge_reminder_claims(h: Housekeeping, cutoff: datetime) -> int:
    """Delete the reminders' claims whose day is before `cutoff` (one range query and a few
    batch deletes per reseller)."""
    last_day = cutoff.astimezone(UTC).date()
    deleted = 0
    for reseller in h.resellers.iterate(RESELLER_PARTITION):
        gone = [
            told
            for told, _ in h.notifications.claims(reseller.slug, reminders.CLAIM_KIND)
            if (day := reminders.claim_day(told)) is not None and day < last_day
        ]
        if gone:
            deleted += h.notifications.drop_claims(reseller.slug, gone)
    return deleted


def _purge_sync_runs(h: Housekeeping) -> int:
    """Delete the sync runs that finished more than `sync_retention` ago, each after its chunks
    (only finished runs have `finished_at`; a run in flight is never touched)."""
    if h.sync_runs is None or h.sync_chunks is None:
        return 0
    cutoff = h.clock.now() - h.sync_retention
    deleted = 0
    for run in list(_pages(h.sync_runs, before={"finished_at": cutoff})):
        if not run.status.finished:
            continue
        _delete_all(h.sync_chunks, h.sync_chunks.iterate(run.id))
        deleted += _delete_all(h.sync_runs, iter([run]))
    return deleted


def _distinct(*streams: Iterator[Invitation]) -> Iterator[Invitation]:
    seen: set[tuple[str, str]] = set()
    for stream in streams:
        for item in stream:
            if (item.reseller, item.token_hash) not in seen:
                seen.add((item.reseller, item.token_hash))
                yield item


def operations(h: Housekeeping, *, now: datetime | None = None) -> Operations:
    """Poison-queue depths and records in flight (and how many are stale); logs poison."""
    report = watchdog.watch(h.transient, now or h.clock.now(), act=False)
    return Operations(poison_queues=_poison(h), in_flight=report.in_flight, stale=report.stale)


def _poison(h: Housekeeping) -> dict[str, int]:
    depths = dict(h.poison_depths())
    full = {q: n for q, n in depths.items() if n}
    if full:
        log.error(
            "poison queues hold messages the host gave up on: %s; read them, fix the cause, "
            "and retry or fail their records",
            full,
        )
    return depths


def run(h: Housekeeping) -> tuple[watchdog.WatchReport, Purged]:
    """One housekeeping pass: watchdog, poison queues, retention."""
    report = watchdog.watch(h.transient, h.clock.now())
    _poison(h)
    return report, purge(h)
