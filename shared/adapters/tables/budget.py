"""The Partner Center request budget shared by every instance: one row in `RequestBudgets`.

The row (PartitionKey `partner-center`, RowKey the partner tenant id) holds the bucket of
`shared/domain/budget.py`: `Tokens`, `UpdatedAt` and `PausedUntil`, times as epoch seconds of
each instance's wall clock: the instances must agree on time, so neither `monotonic` nor the
simulated clock of local runs (Partner Center and its simulator throttle in real time).

Writes are few: a worker takes a block of tokens (a lease) with one optimistic-concurrency
replace (If-Match the ETag it read) and spends it locally; a lost race reads the row again. A
worker that must wait does not write, and a process reads the row about once per block: it
knows from the row when the next block can be had, and its threads wait until then. So the
table sees about `rate / lease_size` writes per second in all (about one per second at
500/min), whatever the number of workers.

Within a process one `SharedRequestBudget` serves every thread (the transport is shared), and
it knows at once of a 429 any of them got. Other instances learn of a pause when they next take
a lease, that is within `lease_seconds` and at most `lease_size` requests later.

Waiting is sleeping in steps of at most a second, re-asking in between: the sync handler is
the main user and its waits are bounded by the minute. A wait that would pass
`max_wait_seconds` raises `Throttled` (an `UpstreamUnavailable`) with `retry_after`, so a queue
step re-enqueues itself instead of holding its message. When the table cannot be reached the
call goes ahead (logged): Partner Center's own 429s, honoured by the transport, still protect
it, and an outage of storage should not also stop every Partner Center call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import UpdateMode

from shared.adapters.tables.store import TableStore
from shared.domain.budget import BucketState, BudgetPolicy, Grant, Lease, take
from shared.domain.errors import Throttled

log = logging.getLogger(__name__)

BUDGET_TABLE = "RequestBudgets"
PARTITION = "partner-center"

# Lost optimistic-concurrency races before a worker stops trying for now and waits a moment.
_MAX_RACES = 8
_STEP_SECONDS = 1.0


class BucketStore(Protocol):
    """Where the shared bucket lives: read with its ETag, write only if unchanged since."""

    def read(self) -> tuple[BucketState, str] | None:
        """The bucket and its ETag, or None if it was never written."""
        ...

    def write(self, state: BucketState, etag: str | None) -> bool:
        """Insert (no ETag) or replace (If-Match `etag`); False when another writer won."""
        ...


class TableBucketStore:
    """The bucket as one row of `RequestBudgets`."""

    def __init__(self, store: TableStore, key: str) -> None:
        self.store = store
        self.key = key or "partner"

    def read(self) -> tuple[BucketState, str] | None:
        """The bucket and its ETag, or None if it was never written."""
        try:
            row = self.store.table(BUDGET_TABLE).get_entity(PARTITION, self.key)
        except ResourceNotFoundError:
            return None
        state = BucketState(
            tokens=float(row["Tokens"]),
            updated_at=float(row["UpdatedAt"]),
            paused_until=float(row.get("PausedUntil") or 0.0),
        )
        return state, str(row.metadata["etag"])

    def write(self, state: BucketState, etag: str | None) -> bool:
        """Insert (no ETag) or replace (If-Match `etag`); False when another writer won."""
        entity: dict[str, Any] = {
            "PartitionKey": PARTITION,
            "RowKey": self.key,
            "Tokens": float(state.tokens),
            "UpdatedAt": float(state.updated_at),
            "PausedUntil": float(state.paused_until),
        }
        table = self.store.table(BUDGET_TABLE)
        try:
            if etag is None:
                table.create_entity(entity)
            else:
                table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            return False
        return True


class SharedRequestBudget:
    """Tokens for Partner Center requests from the shared bucket, leased in blocks."""

    def __init__(
        self,
        buckets: BucketStore,
        policy: BudgetPolicy,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.buckets = buckets
        self.policy = policy
        self.clock = clock
        self.sleep = sleep
        self._lease = Lease()
        self._paused_until = 0.0
        # Before this moment no block is to be had (the row said so): the process's other
        # threads wait without reading the row again, so a process reads it about once per
        # block, however many of its threads are waiting.
        self._next_block_at = 0.0
        self._lock = threading.Lock()

    @classmethod
    def in_table(
        cls, store: TableStore, partner_tenant: str, limit_per_minute: int
    ) -> SharedRequestBudget:
        """The budget of `partner_tenant` kept in the account's `RequestBudgets` table."""
        return cls(
            TableBucketStore(store, partner_tenant), BudgetPolicy.for_limit(limit_per_minute)
        )

    def acquire(self) -> float:
        """Wait for a request's token; the seconds waited (Throttled if too long)."""
        started = self.clock()
        while True:
            wait = self.try_acquire()
            if wait <= 0:
                return self.clock() - started
            waited = self.clock() - started
            if waited + wait > self.policy.max_wait_seconds:
                raise Throttled(
                    f"Partner Center request budget exhausted: next request possible in "
                    f"{wait:.0f}s (waited {waited:.0f}s)",
                    retry_after=wait,
                )
            self.sleep(min(wait, _STEP_SECONDS))

    def try_acquire(self) -> float:
        """Take a token if one is to be had now: 0.0, or the seconds until it is worth asking."""
        with self._lock:
            now = self.clock()
            if now < self._paused_until:
                return self._paused_until - now
            if self._lease.spend(now):
                return 0.0
            if now < self._next_block_at:
                return self._next_block_at - now
            try:
                grant = self._take_block(now)
            except AzureError as exc:
                log.warning("request budget unavailable, sending without it: %s", exc)
                return 0.0
            if grant.tokens:
                self._lease = Lease(grant.tokens - 1, now + self.policy.lease_seconds)
                # The row as written holds no next block before this (other instances only
                # take from it): no need to read it again until then.
                after = take(grant.state, self.policy, now, self.policy.lease_size)
                self._next_block_at = now + after.wait_seconds
                return 0.0
            self._paused_until = max(self._paused_until, grant.state.paused_until)
            self._next_block_at = now + grant.wait_seconds
            return grant.wait_seconds

    def throttled(self, retry_after: float) -> None:
        """Partner Center answered 429: every instance pauses for `retry_after` seconds."""
        with self._lock:
            now = self.clock()
            self._paused_until = max(self._paused_until, now + retry_after)
            self._lease.drop()
            try:
                for _ in range(_MAX_RACES):
                    found = self.buckets.read()
                    state, etag = found if found else (BucketState.full(self.policy, now), None)
                    paused = state.paused(now, retry_after)
                    if paused.paused_until <= state.paused_until:
                        return  # another worker already set as long a pause
                    if self.buckets.write(paused, etag):
                        return
            except AzureError as exc:
                log.warning("could not share a Partner Center pause: %s", exc)
                return
            log.warning("could not share a Partner Center pause: %d lost races", _MAX_RACES)

    def _take_block(self, now: float) -> Grant:
        """One lease block from the shared bucket (one conditional write), or a wait."""
        for _ in range(_MAX_RACES):
            found = self.buckets.read()
            state, etag = found if found else (BucketState.full(self.policy, now), None)
            grant = take(state, self.policy, now, self.policy.lease_size)
            if not grant.tokens:
                return grant  # nothing to write: the bucket is unchanged by waiting
            if self.buckets.write(grant.state, etag):
                return grant
            now = self.clock()
        # Many workers at once: step back a moment rather than hammering the row.
        return Grant(BucketState(0.0, now), 0, 1.0 / self.policy.rate_per_second)
