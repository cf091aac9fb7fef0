"""The transport with a request budget and a call meter: tokens per attempt, 429s shared."""

from __future__ import annotations

import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from shared.adapters.partner_center import (
    PartnerCenterClient,
    PartnerCenterTransport,
    RetryPolicy,
)
from shared.adapters.partner_center.metering import carry_meter, count, metered
from shared.adapters.tables.budget import SharedRequestBudget
from shared.bootstrap import Container
from shared.config import Settings
from shared.domain import metering as domain_metering
from shared.domain.budget import BudgetPolicy
from shared.domain.errors import Throttled, UpstreamUnavailable
from tests.unit.test_request_budget import FakeClock, MemoryBucketStore

SCOPE = "https://api.partnercenter.microsoft.com/.default"


class StaticTokens:
    def access_token(self, scope: str, *, user: bool = False) -> str:
        return "token"

    def forget(self, scope: str, *, user: bool = False) -> None:
        pass


class CountingBudget:
    """A budget that always has a token and remembers what it was told."""

    def __init__(self) -> None:
        self.acquired = 0
        self.pauses: list[float] = []

    def acquire(self) -> float:
        self.acquired += 1
        return 0.0

    def throttled(self, retry_after: float) -> None:
        self.pauses.append(retry_after)


def throttled(retry_after: str | None = "7") -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    body = {"statusCode": 429, "message": "Rate limit is exceeded. Try again in 7 seconds."}
    return httpx.Response(429, json=body, headers=headers)


def transport(
    answers: list[httpx.Response],
    clock: FakeClock,
    budget: SharedRequestBudget | CountingBudget | None,
    *,
    max_attempts: int = 5,
    sent_at: list[float] | None = None,
) -> PartnerCenterTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        if sent_at is not None:
            sent_at.append(clock.now)
        return answers.pop(0) if len(answers) > 1 else answers[0]

    http = httpx.Client(base_url="https://pc.test", transport=httpx.MockTransport(handler))
    return PartnerCenterTransport(
        http,
        StaticTokens(),
        retry=RetryPolicy(max_attempts=max_attempts, max_elapsed_seconds=600),
        sleep=clock.sleep,
        clock=clock,
        jitter=lambda: 1.0,
        budget=budget,
    )


def shared_budget(store: MemoryBucketStore, clock: FakeClock) -> SharedRequestBudget:
    return SharedRequestBudget(store, BudgetPolicy.for_limit(500), clock=clock, sleep=clock.sleep)


def test_every_attempt_takes_a_token_retries_included() -> None:
    budget = CountingBudget()
    pc = transport(
        [httpx.Response(503), httpx.Response(503), httpx.Response(200, json={})],
        FakeClock(),
        budget,
    )

    pc.call("GET", "/v1/customers", scope=SCOPE)

    assert budget.acquired == 3


def test_a_429_pauses_the_shared_budget_and_another_worker_waits_for_it() -> None:
    clock, store = FakeClock(), MemoryBucketStore()
    refused = transport([throttled("7")], clock, shared_budget(store, clock), max_attempts=1)
    sent_by_other: list[float] = []
    other = transport(
        [httpx.Response(200, json={})],
        clock,
        shared_budget(store, clock),
        sent_at=sent_by_other,
    )
    throttled_at = clock.now

    with pytest.raises(UpstreamUnavailable):
        refused.call("GET", "/v1/customers", scope=SCOPE)
    with metered() as meter:
        other.call("GET", "/v1/customers", scope=SCOPE)

    assert store.row is not None and store.row.paused_until == throttled_at + 7
    # Not before the pause ends; then as soon as the bucket (which did not fill during the
    # pause: upstream's window was full) holds a block again.
    assert len(sent_by_other) == 1
    assert throttled_at + 7 <= sent_by_other[0] < throttled_at + 8
    assert meter.waited_seconds == pytest.approx(sent_by_other[0] - throttled_at)
    assert meter.throttled == 0


def test_a_429_without_retry_after_pauses_everyone_for_the_backoff() -> None:
    budget = CountingBudget()
    pc = transport([throttled(None), httpx.Response(200, json={})], FakeClock(), budget)

    pc.call("GET", "/v1/customers", scope=SCOPE)

    assert budget.pauses == [1.0]  # the first backoff (base 1 s, jitter 1.0)


def test_other_failures_do_not_pause_anyone() -> None:
    budget = CountingBudget()
    pc = transport([httpx.Response(503), httpx.Response(200, json={})], FakeClock(), budget)

    pc.call("GET", "/v1/customers", scope=SCOPE)

    assert budget.pauses == []


def test_the_throttled_call_sleeps_retry_after_once_not_again_for_its_own_pause() -> None:
    clock, store = FakeClock(), MemoryBucketStore()
    pc = transport(
        [throttled("7"), httpx.Response(200, json={})], clock, shared_budget(store, clock)
    )

    with metered() as meter:
        pc.call("GET", "/v1/customers", scope=SCOPE)

    assert clock.sleeps[0] == 7.0
    assert sum(clock.sleeps) < 8.0  # not Retry-After twice: its own pause had passed
    assert (meter.calls, meter.throttled) == (2, 1)
    assert meter.waited_seconds == pytest.approx(sum(clock.sleeps))


def test_a_budget_wait_over_a_minute_fails_the_call_as_try_later_without_sending() -> None:
    clock, store = FakeClock(), MemoryBucketStore()
    shared_budget(store, clock).throttled(120.0)
    sent: list[float] = []
    pc = transport([httpx.Response(200, json={})], clock, shared_budget(store, clock), sent_at=sent)

    with pytest.raises(Throttled) as caught:
        pc.call("GET", "/v1/customers", scope=SCOPE)

    assert caught.value.retry_after == pytest.approx(120.0)
    assert sent == []


# --- the meter -------------------------------------------------------------------------------


def test_the_meter_counts_attempts_sent_429s_and_seconds_waited() -> None:
    clock = FakeClock()
    pc = transport(
        [throttled("3"), httpx.Response(503), httpx.Response(200, json={})],
        clock,
        CountingBudget(),
    )

    with metered() as meter:
        pc.call("GET", "/v1/customers", scope=SCOPE)

    # The 503's backoff (2 s) is a retry, not throttling: only the 429's wait counts.
    assert (meter.calls, meter.throttled, meter.waited_seconds) == (3, 1, pytest.approx(3.0))


def test_calls_outside_a_meter_are_not_counted_and_nested_meters_add_up() -> None:
    pc = transport([httpx.Response(200, json={})], FakeClock(), None)

    pc.call("GET", "/v1/customers", scope=SCOPE)
    # The name services use (they may not import adapters) is the transport's meter too.
    with domain_metering.metered() as outer:
        pc.call("GET", "/v1/customers", scope=SCOPE)
        with metered() as inner:
            pc.call("GET", "/v1/customers", scope=SCOPE)

    assert (outer.calls, inner.calls) == (2, 1)


def test_a_meter_carried_into_pool_threads_counts_every_thread() -> None:
    def work(_: int) -> None:
        for _ in range(1000):
            count(calls=1)

    with metered() as meter, ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(carry_meter(work), range(8)))
        futures = [pool.submit(contextvars.copy_context().run, work, i) for i in range(4)]
        for future in futures:
            future.result()

    assert meter.calls == 12_000


def test_a_thread_started_without_the_context_is_not_metered() -> None:
    with metered() as meter:
        thread = threading.Thread(target=count, kwargs={"calls": 1})
        thread.start()
        thread.join()

    assert meter.calls == 0


# --- wiring ----------------------------------------------------------------------------------


def settings(limit: str) -> Settings:
    return Settings.model_validate(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "PARTNER_CENTER_API_BASE_URL": "https://pc.example/",
            "PARTNER_CENTER_TENANT_ID": "partner-tenant",
            "PARTNER_CENTER_CLIENT_ID": "c",
            "PARTNER_CENTER_CLIENT_SECRET": "s",
            "PARTNER_CENTER_REQUESTS_PER_MINUTE": limit,
        }
    )


def budget_of(container: Container) -> object:
    client = container.partner_center
    assert isinstance(client, PartnerCenterClient)
    return client._transport.budget


def test_the_container_paces_partner_center_with_the_shared_budget_by_default() -> None:
    budget = budget_of(Container(settings("500")))

    assert isinstance(budget, SharedRequestBudget)
    assert budget.policy.limit_per_minute == 500


def test_a_limit_of_zero_sends_without_a_budget() -> None:
    assert budget_of(Container(settings("0"))) is None
