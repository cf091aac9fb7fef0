"""The request budget in Azurite: two workers with their own clients share one bucket row.

Time runs eight times faster than the wall clock (both workers read the same scaled clock, and
their sleeps shrink to match), so 75 budget seconds take under 10 real ones while the table
calls, the ETag races and the threads are real.
"""

from __future__ import annotations

import threading
import time

from localdev.azurite import Azurite
from shared.adapters.tables.budget import BUDGET_TABLE, SharedRequestBudget, TableBucketStore
from shared.adapters.tables.store import TableStore
from shared.config import Settings
from shared.domain.budget import BucketState, BudgetPolicy
from tests.unit.test_request_budget import most_in_any_minute

SPEED = 8.0
LIMIT = 300


class FastClock:
    """Budget time: the wall clock sped up `SPEED` times, shared by the threads."""

    def __init__(self) -> None:
        self.origin = time.time()

    def __call__(self) -> float:
        return self.origin + (time.time() - self.origin) * SPEED

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds / SPEED)


class CountingStore(TableBucketStore):
    """The table row, counting successful writes."""

    writes = 0
    lock = threading.Lock()

    def write(self, state: BucketState, etag: str | None) -> bool:
        done = super().write(state, etag)
        if done:
            with CountingStore.lock:
                CountingStore.writes += 1
        return done


def test_two_workers_sharing_the_table_stay_under_the_limit_in_any_minute_and_pause_together(
    azurite: Azurite, table_prefix: str
) -> None:
    settings = Settings(AzureWebJobsStorage=azurite.connection_string, TABLE_PREFIX=table_prefix)
    clock = FastClock()
    policy = BudgetPolicy.for_limit(LIMIT)
    workers = [
        SharedRequestBudget(
            CountingStore(TableStore.from_settings(settings), "partner-tenant"),
            policy,
            clock=clock,
            sleep=clock.sleep,
        )
        for _ in range(2)
    ]
    sent: list[list[float]] = [[], []]
    start = clock()
    duration, pause_at, pause_for = 75.0, 40.0, 10.0
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            while clock() < start + duration:
                workers[i].acquire()
                sent[i].append(clock())
                time.sleep(0.002)  # the request itself
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(pause_at / SPEED)
    throttled_at = clock()
    workers[0].throttled(pause_for)  # worker 0 got a 429
    for thread in threads:
        thread.join(timeout=30)

    assert not errors
    everything = sent[0] + sent[1]
    assert most_in_any_minute(everything) <= LIMIT * 0.95
    # Not starved: close to the steady rate over the run, less the pause.
    assert len(everything) >= 0.8 * policy.rate_per_second * (duration - pause_for)
    assert sent[0] and sent[1]  # both got their share
    # The pause held for both: at most the rest of worker 1's lease went out during it.
    during = [t for t in sent[1] if throttled_at + 0.5 <= t < throttled_at + pause_for]
    assert len(during) < policy.lease_size
    assert all(not (throttled_at + 0.5 <= t < throttled_at + pause_for) for t in sent[0])
    assert all(t < throttled_at + policy.lease_seconds + 0.5 for t in during)
    # A few writes per lease block, not one per request.
    assert CountingStore.writes <= len(everything) / policy.lease_size * 1.5 + 4
    row = (
        TableStore.from_settings(settings)
        .table(BUDGET_TABLE)
        .get_entity("partner-center", "partner-tenant")
    )
    assert row["PausedUntil"] >= throttled_at + pause_for - 0.01
