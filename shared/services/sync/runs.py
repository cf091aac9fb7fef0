"""Starting and finishing sync runs, and reading them back.

At most one run of a reseller is active at a time: the run that holds the claim row
`Claim("sync", "active")` of the reseller's SyncRuns partition. `start` writes the run, the
claim and the outbox message of its customer phase in one partition transaction, so two
concurrent starts (two clicks on Sync now, the timer meeting a click) make one run: the loser's
transaction fails on the claim and it answers the winner's run. `release` gives the claim up in
the same transaction that records the run as finished, so no finished run keeps holding it and
no active run is ever without it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from datetime import UTC, datetime, timedelta

from pydantic import AwareDatetime

from shared.domain.claims import Claim
from shared.domain.errors import ClaimTaken, ConcurrencyConflict, Conflict, NotFound
from shared.domain.model import Page, WireModel
from shared.domain.outbox import OutboxMessage, Queue
from shared.domain.sync import (
    SyncKind,
    SyncMessage,
    SyncRun,
    SyncStatus,
    SyncTrigger,
    sync_row_key,
)
from shared.ports import Clock, Repository

log = logging.getLogger(__name__)

ACTIVE = Claim("sync", "active")
DEFAULT_COOLDOWN = timedelta(minutes=15)
# Runs are ULIDs; anything else never reaches a table key.
_RUN_ID = re.compile(r"[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}")
# How many times start retries after meeting a claim whose holder finished in between.
_ATTEMPTS = 5
# Chunk messages per write of a run's row (a transaction holds 100 operations).
MESSAGES_PER_WRITE = 90


class SyncCoolingDown(Conflict):
    """Sync now came too soon after the last run finished; `possible_at` says when it may."""

    title = "Sync now is cooling down"

    def __init__(self, possible_at: datetime, last_finished_at: datetime, cooldown: timedelta):
        minutes = math.ceil(cooldown.total_seconds() / 60)
        super().__init__(
            f"Sync now is possible again at {_stamp(possible_at)}: the last sync finished at "
            f"{_stamp(last_finished_at)}, and Sync now waits {minutes} minutes after one."
        )
        self.possible_at = possible_at


def start(
    runs: Repository[SyncRun],
    clock: Clock,
    reseller_slug: str,
    trigger: SyncTrigger,
    requested_by: str | None = None,
    *,
    cooldown: timedelta = DEFAULT_COOLDOWN,
    run_id: str | None = None,
) -> tuple[SyncRun, bool]:
    """Start a run of the reseller, or answer the one active already: (run, whether new).

    A Manual start (Sync now) within `cooldown` of the last finished run is refused with
    SyncCoolingDown; the timer's is not. Kind: Full for Sync now and for a reseller without a
    Succeeded run yet, Delta otherwise. `run_id` is the id a repeated request (the same
    Idempotency-Key) reserved: the run it names, once started, is answered as it is.
    """
    if run_id is not None:
        earlier = runs.find(reseller_slug, sync_row_key(run_id))
        if earlier is not None:
            return earlier, False
    for _ in range(_ATTEMPTS):
        holder = _active(runs, reseller_slug)
        if holder is not None:
            return holder, False
        now = clock.now()
        if trigger is SyncTrigger.MANUAL:
            _check_cooldown(runs, reseller_slug, now, cooldown)
        full = trigger is SyncTrigger.MANUAL or last_complete(runs, reseller_slug) is None
        run = SyncRun(
            reseller=reseller_slug,
            kind=SyncKind.FULL if full else SyncKind.DELTA,
            trigger=trigger,
            requested_by=requested_by,
            queued_at=now,
            created_at=now,
            updated_at=now,
        )
        if run_id is not None:
            run.id = run_id
        try:
            return runs.add(run, messages=[_phase_message(run)], claims=[ACTIVE]), True
        except ClaimTaken:
            continue  # another start won the race: its run is answered on the next pass
    raise ConcurrencyConflict("another sync was starting at the same time; try again")


def release(runs: Repository[SyncRun], run: SyncRun) -> SyncRun:
    """Save a finished run (its final status and `finished_at` set) and give up its claim, in
    one transaction (ConcurrencyConflict when the run changed since it was read)."""
    if not run.status.finished or run.finished_at is None:
        raise ValueError(f"run {run.id} is not finished ({run.status.value})")
    return runs.update(run, releases=[ACTIVE])


def get(runs: Repository[SyncRun], reseller: str, run_id: str) -> SyncRun:
    """One run of the reseller (NotFound for an id that is not one of its runs)."""
    found = runs.find(reseller, sync_row_key(run_id)) if _RUN_ID.fullmatch(run_id) else None
    if found is None:
        raise NotFound("sync run not found")
    return found


def list_runs(
    runs: Repository[SyncRun], reseller: str, page_size: int, token: str | None
) -> Page[SyncRun]:
    """A page of the reseller's runs, newest first."""
    return runs.list(reseller, page_size=page_size, continuation_token=token)


def last_complete(runs: Repository[SyncRun], reseller: str) -> SyncRun | None:
    """The reseller's newest Succeeded run (the watermark of the next delta), or None."""
    return _newest(runs, reseller, SyncStatus.SUCCEEDED)


def _newest(runs: Repository[SyncRun], reseller: str, status: SyncStatus) -> SyncRun | None:
    # Rows sort newest first; a filtered page may come back empty with a token, so follow it.
    token: str | None = None
    while True:
        page = runs.list(reseller, equals={"status": status}, page_size=1, continuation_token=token)
        if page.items:
            return page.items[0]
        token = page.continuation_token
        if token is None:
            return None


def _active(runs: Repository[SyncRun], reseller: str) -> SyncRun | None:
    """The run holding the reseller's claim; a finished holder (finished without `release`)
    gives it up here, so a lost release never blocks the reseller's syncs for good."""
    owner = runs.claim_owner(reseller, ACTIVE)
    if owner is None:
        return None
    holder = runs.find(reseller, owner)
    if holder is None:
        # The claim commits with its run, so this is damage a person should look at.
        log.error("sync claim of %s is held by %s, which is no run", reseller, owner)
        raise ConcurrencyConflict("the reseller's active sync cannot be read; try again later")
    if not holder.status.finished:
        return holder
    log.warning("sync run %s of %s finished without giving up its claim", holder.id, reseller)
    # Changed meanwhile: whoever changed it decides, and start looks again.
    with contextlib.suppress(ConcurrencyConflict):
        runs.update(holder, releases=[ACTIVE])
    return None


def _check_cooldown(
    runs: Repository[SyncRun], reseller: str, now: datetime, cooldown: timedelta
) -> None:
    if cooldown <= timedelta(0):
        return
    # No run is active (start checked), so the newest runs are finished ones.
    recent = runs.list(reseller, page_size=5).items
    finished = [r.finished_at for r in recent if r.finished_at is not None]
    if not finished:
        return
    last = max(finished)
    possible_at = last + cooldown
    if now < possible_at:
        raise SyncCoolingDown(possible_at, last, cooldown)


def _phase_message(run: SyncRun) -> OutboxMessage:
    """The message of the run's customer phase (no chunk)."""
    return OutboxMessage(
        queue=Queue.SYNC_RESELLER,
        body=SyncMessage(reseller=run.reseller, run_id=run.id).body(),
        created_at=run.queued_at,
    )


def chunk_message(run: SyncRun, number: int) -> OutboxMessage:
    """The message of one chunk of the run."""
    body = SyncMessage(reseller=run.reseller, run_id=run.id, chunk=number).body()
    return OutboxMessage(queue=Queue.SYNC_RESELLER, body=body)


def send_chunks(
    runs: Repository[SyncRun], clock: Clock, run: SyncRun, numbers: list[int], *, count: bool
) -> None:
    """Send the messages of chunks `numbers`, MESSAGES_PER_WRITE per write of the run's row
    (If-Match: a run a chunk wrote meanwhile is read again). With `count`, each write records
    the messages sent so far (`chunks_sent`, numbers in order), so a redelivery sends the rest
    and a batch another delivery sent is not sent again. Nothing once the run has finished."""
    for start in range(0, len(numbers), MESSAGES_PER_WRITE):
        batch = numbers[start : start + MESSAGES_PER_WRITE]
        for _ in range(_ATTEMPTS * 2):
            if run.status.finished or (count and (run.chunks_sent or 0) > batch[-1]):
                break
            if count:
                run.chunks_sent = batch[-1] + 1
            run.updated_at = clock.now()
            try:
                run = runs.update(run, messages=[chunk_message(run, n) for n in batch])
                break
            except ConcurrencyConflict:
                found = runs.find(run.reseller, sync_row_key(run.id))
                if found is None:
                    return
                run = found
        else:
            raise ConcurrencyConflict(f"sync run {run.id} kept changing")


def _stamp(moment: datetime) -> str:
    """An instant as `2026-11-30T04:15:00Z`, rounded up to the second (never too early)."""
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- What the API shows -----------------------------------------------------------------------


class SyncCountsPublic(WireModel):
    """What a run changed, and what it cost (Partner Center calls, throttling)."""

    customers_added: int
    customers_updated: int
    customers_unassociated: int
    subscriptions_added: int
    subscriptions_updated: int
    subscriptions_ended: int
    licences_updated: int
    customers_refreshed: int
    partner_center_calls: int
    throttled_waits: int
    throttled_seconds: float
    records_written: int


class SyncErrorPublic(WireModel):
    """Something a run could not do, and the customer it concerns."""

    customer_id: str | None
    customer_name: str | None
    tenant_id: str | None
    message: str
    at: AwareDatetime


class SyncRunPublic(WireModel):
    """A sync run as the API shows it."""

    id: str
    reseller: str
    status: SyncStatus
    kind: SyncKind
    trigger: SyncTrigger
    requested_by: str | None
    queued_at: AwareDatetime
    started_at: AwareDatetime | None
    finished_at: AwareDatetime | None
    counts: SyncCountsPublic
    errors: list[SyncErrorPublic]
    errors_total: int
    chunks_total: int | None
    chunks_done: int
    chunks_failed: int
    failure_reason: str | None


def present(run: SyncRun) -> SyncRunPublic:
    """The API's view of a run."""
    return SyncRunPublic.model_validate(run, from_attributes=True)


def present_page(page: Page[SyncRun]) -> Page[SyncRunPublic]:
    """The API's view of a page of runs."""
    return Page[SyncRunPublic](
        items=[present(r) for r in page.items], continuation_token=page.continuation_token
    )
