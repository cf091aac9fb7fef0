"""Starting and finishing sync runs.

PLACEHOLDER for the engine branch: the syncapi branch owns this module (start with the cooldown
and its 409, release, last_complete). At merge take theirs; the engine relies only on these
signatures: `start(runs, clock, reseller_slug, trigger, requested_by=None, *, cooldown)`,
`release(runs, run)`, `last_complete(runs, reseller)`.
"""

from __future__ import annotations

from datetime import timedelta

from shared.domain.claims import Claim
from shared.domain.errors import ClaimTaken, Conflict
from shared.domain.outbox import OutboxMessage, Queue
from shared.domain.sync import (
    SyncKind,
    SyncMessage,
    SyncRun,
    SyncStatus,
    SyncTrigger,
)
from shared.ports import Clock, Repository

ACTIVE = Claim("sync", "active")


def start(
    runs: Repository[SyncRun],
    clock: Clock,
    reseller_slug: str,
    trigger: SyncTrigger,
    requested_by: str | None = None,
    *,
    cooldown: timedelta,
) -> tuple[SyncRun, bool]:
    """Queue a run (and its message, and the reseller's "active" claim, atomically); while one
    is active, that one. Whether a new run was queued."""
    holder = runs.claim_owner(reseller_slug, ACTIVE)
    if holder is not None and (current := runs.find(reseller_slug, holder)) is not None:
        return current, False
    previous = last_complete(runs, reseller_slug)
    kind = SyncKind.FULL if previous is None or trigger is SyncTrigger.MANUAL else SyncKind.DELTA
    now = clock.now()
    run = SyncRun(
        reseller=reseller_slug,
        kind=kind,
        trigger=trigger,
        requested_by=requested_by,
        queued_at=now,
        created_at=now,
        updated_at=now,
    )
    message = SyncMessage(reseller=reseller_slug, run_id=run.id)
    try:
        saved = runs.add(
            run,
            messages=[OutboxMessage(queue=Queue.SYNC_RESELLER, body=message.body())],
            claims=[ACTIVE],
        )
    except ClaimTaken as exc:
        current = runs.find(reseller_slug, exc.owner)
        if current is None:
            raise Conflict("another sync is starting; try again") from exc
        return current, False
    return saved, True


def release(runs: Repository[SyncRun], run: SyncRun) -> SyncRun:
    """Store the finished run and give up the reseller's "active" claim, in one transaction."""
    return runs.update(run, releases=[ACTIVE])


def last_complete(runs: Repository[SyncRun], reseller: str) -> SyncRun | None:
    """The newest Succeeded run of the reseller."""
    for run in runs.iterate(reseller, equals={"status": SyncStatus.SUCCEEDED}):
        return run
    return None
