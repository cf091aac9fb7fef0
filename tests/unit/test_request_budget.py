"""The shared request budget: bucket arithmetic, leases, pauses, and workers sharing one row."""

from __future__ import annotations

import heapq
from collections.abc import Callable

import pytest
from azure.core.exceptions import ServiceRequestError

from shared.adapters.tables.budget import SharedRequestBudget
from shared.domain.budget import BucketState, BudgetPolicy, Lease, take
from shared.domain.errors import Throttled


class FakeClock:
    """Epoch seconds that move only when told to (or when the code under test sleeps)."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class MemoryBucketStore:
    """The `RequestBudgets` row in memory, with the table's ETag rules (insert once, If-Match)."""

    def __init__(self) -> None:
        self.row: BucketState | None = None
        self.version = 0
        self.writes = 0
        self.reads = 0
        self.before_write: Callable[[], None] | None = None

    def read(self) -> tuple[BucketState, str] | None:
        self.reads += 1
        if self.row is None:
            return None
        return self.row, str(self.version)

    def write(self, state: BucketState, etag: str | None) -> bool:
        if self.before_write is not None:
            hook, self.before_write = self.before_write, None
            hook()
        if etag is None and self.row is not None:
            return False
        if etag is not None and etag != str(self.version):
            return False
        self.row = state
        self.version += 1
        self.writes += 1
        return True


class BrokenBucketStore:
    """Storage that cannot be reached."""

    def read(self) -> tuple[BucketState, str] | None:
        raise ServiceRequestError("connection refused")

    def write(self, state: BucketState, etag: str | None) -> bool:
        raise ServiceRequestError("connection refused")


def worker(store: MemoryBucketStore, clock: FakeClock, limit: int = 500) -> SharedRequestBudget:
    return SharedRequestBudget(store, BudgetPolicy.for_limit(limit), clock=clock, sleep=clock.sleep)


def most_in_any_minute(times: list[float]) -> int:
    """The largest number of requests in any sliding 60 s (as the simulator's limiter counts)."""
    times = sorted(times)
    most, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= 60:
            start += 1
        most = max(most, end - start + 1)
    return most


def simulate(
    workers: list[tuple[SharedRequestBudget, float]],
    clock: FakeClock,
    seconds: float,
    events: dict[float, Callable[[], None]] | None = None,
) -> list[float]:
    """Each worker sends as fast as its budget lets it (a request takes its latency); the
    send times of all of them. `events` run at their (relative) times."""
    start = clock.now
    queue = [(start, i) for i in range(len(workers))]
    pending = sorted((start + t, fn) for t, fn in (events or {}).items())
    sent: list[float] = []
    while queue:
        at, i = heapq.heappop(queue)
        if at >= start + seconds:
            continue
        while pending and pending[0][0] <= at:
            when, fn = pending.pop(0)
            clock.now = when
            fn()
        clock.now = at
        budget, latency = workers[i]
        wait = budget.try_acquire()
        if wait <= 0:
            sent.append(at)
            heapq.heappush(queue, (at + latency, i))
        else:
            heapq.heappush(queue, (at + min(wait, 1.0), i))
    return sent


# --- the arithmetic ------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [60, 120, 500, 1000, 5000])
def test_policy_keeps_any_sliding_minute_under_the_limit_less_headroom(limit: int) -> None:
    policy = BudgetPolicy.for_limit(limit)

    assert policy.most_in_any_window() <= limit * 0.95 + 1e-9
    assert policy.lease_size <= policy.capacity
    # Not starved either: most of the limit is usable.
    assert policy.rate_per_second * 60 >= limit * 0.85


def test_documented_limit_leases_blocks_of_a_few_requests() -> None:
    policy = BudgetPolicy.for_limit(500)

    assert 5 <= policy.lease_size <= 10
    assert policy.rate_per_second / policy.lease_size <= 2  # table writes per second in all


def test_a_limit_of_zero_is_no_budget_not_a_policy() -> None:
    with pytest.raises(ValueError):
        BudgetPolicy.for_limit(0)


def test_bucket_refills_at_the_rate_up_to_its_capacity() -> None:
    policy = BudgetPolicy.for_limit(500)
    empty = BucketState(tokens=0.0, updated_at=100.0)

    assert empty.refilled(policy, 101.0).tokens == pytest.approx(policy.rate_per_second)
    assert empty.refilled(policy, 10_000.0).tokens == policy.capacity


def test_an_instance_whose_clock_lags_adds_no_tokens() -> None:
    policy = BudgetPolicy.for_limit(500)
    state = BucketState(tokens=2.0, updated_at=100.0)

    lagging = state.refilled(policy, 98.0)

    assert lagging == state  # neither tokens nor a clock moved backwards


def test_taking_a_block_is_all_or_nothing_and_names_the_wait() -> None:
    policy = BudgetPolicy.for_limit(500)
    want = policy.lease_size
    state = BucketState(tokens=want - 1.0, updated_at=100.0)

    refused = take(state, policy, 100.0, want)
    granted = take(state, policy, 100.0 + refused.wait_seconds, want)

    assert refused.tokens == 0
    assert refused.wait_seconds == pytest.approx(1.0 / policy.rate_per_second)
    assert granted.tokens == want
    assert granted.state.tokens == pytest.approx(0.0, abs=1e-6)


def test_a_pause_refuses_every_block_until_it_ends_and_is_never_shortened() -> None:
    policy = BudgetPolicy.for_limit(500)
    state = BucketState.full(policy, 100.0).paused(100.0, 30.0).paused(101.0, 5.0)

    during = take(state, policy, 110.0, policy.lease_size)
    after = take(state, policy, 130.0, policy.lease_size)

    assert state.paused_until == 130.0
    assert (during.tokens, during.wait_seconds) == (0, 20.0)
    assert after.tokens == policy.lease_size


def test_no_tokens_accrue_while_paused() -> None:
    policy = BudgetPolicy.for_limit(500)
    state = BucketState(tokens=0.0, updated_at=100.0).paused(100.0, 30.0)

    assert state.refilled(policy, 131.0).tokens == pytest.approx(policy.rate_per_second)


def test_unused_leased_tokens_expire() -> None:
    lease = Lease(tokens=3, expires_at=102.0)

    assert lease.spend(101.0)
    assert not lease.spend(102.0)
    assert lease.tokens == 0  # what was left is gone, not saved for later


# --- workers sharing the row -----------------------------------------------------------------


def test_several_workers_never_pass_the_limit_in_any_sliding_minute() -> None:
    clock, store = FakeClock(), MemoryBucketStore()
    limit = 500
    # Fast workers, and a slow one whose leases run out before it spends them.
    workers = [(worker(store, clock, limit), latency) for latency in (0.01, 0.02, 0.05, 0.3, 1.5)]

    sent = simulate(workers, clock, seconds=600)

    assert most_in_any_minute(sent) <= limit * 0.95
    assert len(sent) >= limit * 0.85 * 10  # close to the limit, not starved
    assert store.writes / 600 <= 2.0  # a few table writes per second, not one per call


def test_threads_of_one_process_waiting_for_tokens_read_the_row_about_once_per_block() -> None:
    clock, store = FakeClock(), MemoryBucketStore()
    budget = worker(store, clock)
    # Thirty threads of one instance share its budget (as a sync chunk's readers do).
    threads = [(budget, 0.05) for _ in range(30)]

    sent = simulate(threads, clock, seconds=600)

    assert most_in_any_minute(sent) <= 500 * 0.95
    assert len(sent) >= 500 * 0.85 * 10
    blocks = len(sent) / budget.policy.lease_size
    assert store.reads <= blocks * 1.1  # not one read per waiting thread per second


def test_a_small_limit_holds_over_any_sliding_minute_too() -> None:
    clock, store = FakeClock(), MemoryBucketStore()
    workers = [(worker(store, clock, 60), 0.01) for _ in range(4)]

    sent = simulate(workers, clock, seconds=300)

    assert most_in_any_minute(sent) <= 57
    assert len(sent) >= 50 * 5


def test_a_429_on_one_worker_pauses_every_worker_once_its_lease_is_spent() -> None:
    clock, store = FakeClock(), MemoryBucketStore()
    a, b = worker(store, clock), worker(store, clock)
    policy = a.policy
    start = clock.now

    sent_by_b: list[float] = []

    def run_b(seconds: float) -> None:
        until = clock.now + seconds
        while clock.now < until:
            if b.try_acquire() <= 0:
                sent_by_b.append(clock.now)
            clock.now += 0.01

    run_b(5.0)  # b holds a lease
    a.throttled(30.0)
    throttled_at = clock.now
    run_b(40.0)

    during = [t for t in sent_by_b if throttled_at <= t < throttled_at + 30]
    assert len(during) < policy.lease_size  # at most the rest of the lease it held
    assert all(t < throttled_at + policy.lease_seconds for t in during)
    assert any(t >= throttled_at + 30 for t in sent_by_b)  # and on again after the pause
    assert start < throttled_at


def test_the_worker_that_was_throttled_drops_its_lease_at_once() -> None:
    clock, store = FakeClock(), MemoryBucketStore()
    a = worker(store, clock)
    assert a.try_acquire() == 0.0  # holds a lease with tokens left

    a.throttled(10.0)

    assert a.try_acquire() == pytest.approx(10.0)


def test_acquire_waits_in_steps_of_at_most_a_second_and_returns_the_seconds_waited() -> None:
    clock, store = FakeClock(), MemoryBucketStore()
    a, b = worker(store, clock), worker(store, clock)
    b.throttled(4.5)

    waited = a.acquire()

    assert waited == pytest.approx(4.5)
    assert max(clock.sleeps) <= 1.0
    assert sum(clock.sleeps) == pytest.approx(4.5)


def test_acquire_that_would_wait_over_a_minute_asks_to_retry_later_instead() -> None:
    clock, store = FakeClock(), MemoryBucketStore()
    a, b = worker(store, clock), worker(store, clock)
    b.throttled(300.0)

    with pytest.raises(Throttled) as caught:  # an UpstreamUnavailable a chunk waits out
        a.acquire()

    assert caught.value.retry_after == pytest.approx(300.0)
    assert clock.sleeps == []  # gave up at once rather than after a minute of sleeping


def test_a_lost_race_for_the_row_reads_it_again_and_grants_no_token_twice() -> None:
    clock, store = FakeClock(), MemoryBucketStore()
    # A bucket that holds two blocks, so both can be granted.
    a, b = worker(store, clock, 5000), worker(store, clock, 5000)
    policy = a.policy
    # b takes its block between a's read and a's write.
    store.before_write = lambda: b.try_acquire()

    assert a.try_acquire() == 0.0

    assert store.writes == 2
    assert store.row is not None
    assert store.row.tokens == pytest.approx(policy.capacity - 2 * policy.lease_size)


def test_a_pause_set_while_another_pause_is_longer_keeps_the_longer_one() -> None:
    clock, store = FakeClock(), MemoryBucketStore()
    a, b = worker(store, clock), worker(store, clock)

    a.throttled(50.0)
    b.throttled(5.0)

    assert store.row is not None
    assert store.row.paused_until == clock.now + 50.0


def test_budget_storage_unreachable_lets_the_call_go_rather_than_fail_it() -> None:
    clock = FakeClock()
    budget = SharedRequestBudget(BrokenBucketStore(), BudgetPolicy.for_limit(500), clock=clock)

    assert budget.acquire() == 0.0
    budget.throttled(5.0)  # logged, not raised
    assert budget.try_acquire() == pytest.approx(5.0)  # this process still honours it
