"""The shared Partner Center request budget: a token bucket, leased out in small blocks.

Partner Center throttles per partner tenant: 500 requests per minute for customers, orders and
subscriptions, counted over a sliding minute, and refused requests count too (an immediate retry
makes things worse). Every instance of the app sends on behalf of the same partner tenant, so the
budget is one bucket shared by all of them (a row in Table Storage, see
`shared/adapters/tables/budget.py`); this module is the arithmetic, with time as epoch seconds.

Why the numbers keep us under the limit over *any* sliding 60 s: tokens enter the bucket at
`rate` per second and it holds at most `capacity`. A worker takes a block of tokens at once (a
lease) and may spend them during the next `lease_seconds`, after which the rest expire unused.
Requests sent in a window [a, a + 60) were therefore leased in [a - lease_seconds, a + 60), and
the bucket cannot hand out more than `capacity + rate * (60 + lease_seconds)` in that span. The
policy picks `rate` so that this is `limit * (1 - headroom)`; the headroom absorbs clock skew
between instances and network jitter between our clock and Partner Center's.

A 429 anywhere sets `paused_until` on the bucket (never shortening a pause already there): no
lease is granted until then, so one worker's throttling slows every worker instead of each
finding out by being refused itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

# Partner Center's documented limit for customers, orders and subscriptions, per partner tenant.
DOCUMENTED_REQUESTS_PER_MINUTE = 500

WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class BudgetPolicy:
    """How fast the shared bucket fills, how much it holds, and how tokens are leased."""

    limit_per_minute: int
    rate_per_second: float
    capacity: int
    lease_size: int
    lease_seconds: float
    # The longest a caller waits for a token before giving up with "try later".
    max_wait_seconds: float = 60.0

    @classmethod
    def for_limit(
        cls,
        limit_per_minute: int,
        *,
        headroom: float = 0.05,
        lease_seconds: float = 2.0,
        max_wait_seconds: float = 60.0,
    ) -> BudgetPolicy:
        """The policy that keeps any sliding minute under `limit_per_minute` (less headroom)."""
        if limit_per_minute <= 0:
            raise ValueError("a request budget needs a positive limit")
        allowed = limit_per_minute * (1.0 - headroom)
        span = WINDOW_SECONDS + lease_seconds
        # A block is about a second's worth of requests: a handful of table writes per second
        # in all, yet small enough that a pause set elsewhere stops a worker within a few calls.
        lease_size = max(1, min(10, math.floor(allowed / span)))
        # A small burst (2 % of the limit, at least one block) lets an idle system answer a
        # few interactive calls at once; the rest of the minute's allowance is the steady rate.
        capacity = max(lease_size, math.floor(limit_per_minute * 0.02))
        rate = (allowed - capacity) / span
        if rate <= 0:
            raise ValueError(f"a limit of {limit_per_minute}/min is too small for a budget")
        return cls(
            limit_per_minute=limit_per_minute,
            rate_per_second=rate,
            capacity=capacity,
            lease_size=lease_size,
            lease_seconds=lease_seconds,
            max_wait_seconds=max_wait_seconds,
        )

    def most_in_any_window(self) -> float:
        """The most requests this policy lets through in any sliding minute."""
        return self.capacity + self.rate_per_second * (WINDOW_SECONDS + self.lease_seconds)


@dataclass(frozen=True)
class BucketState:
    """The shared bucket as stored: tokens at `updated_at`, and a pause after a 429."""

    tokens: float
    updated_at: float
    paused_until: float = 0.0

    @classmethod
    def full(cls, policy: BudgetPolicy, now: float) -> BucketState:
        """A new bucket: full, so an idle system answers its first calls at once."""
        return cls(tokens=float(policy.capacity), updated_at=now)

    def refilled(self, policy: BudgetPolicy, now: float) -> BucketState:
        """The bucket at `now`: refilled for the time since it was last written.

        `updated_at` never moves backwards: an instance whose clock lags another's adds nothing
        until its clock passes the last write, so skew cannot mint tokens twice.
        """
        if now <= self.updated_at:
            return self
        # Nothing accrues while paused: after a 429 the window upstream is full already.
        start = max(self.updated_at, min(self.paused_until, now))
        tokens = min(float(policy.capacity), self.tokens + (now - start) * policy.rate_per_second)
        return replace(self, tokens=tokens, updated_at=now)

    def paused(self, now: float, retry_after: float) -> BucketState:
        """The bucket after a 429 at `now` asking to wait `retry_after` seconds."""
        until = max(self.paused_until, now + max(0.0, retry_after))
        return replace(self, paused_until=until)


@dataclass(frozen=True)
class Grant:
    """The outcome of asking the bucket for a block: tokens taken, or how long to wait."""

    state: BucketState
    tokens: int
    wait_seconds: float


def take(state: BucketState, policy: BudgetPolicy, now: float, want: int) -> Grant:
    """Take `want` tokens (a lease block) from the bucket at `now`, or say how long to wait.

    All or nothing: waiting for a whole block keeps table writes to one per block even when
    many workers want tokens at once.
    """
    want = max(1, min(want, policy.capacity))
    current = state.refilled(policy, now)
    if now < current.paused_until:
        return Grant(current, 0, current.paused_until - now)
    if current.tokens + 1e-9 >= want:
        return Grant(replace(current, tokens=max(0.0, current.tokens - want)), want, 0.0)
    return Grant(current, 0, (want - current.tokens) / policy.rate_per_second)


@dataclass
class Lease:
    """Tokens one worker took from the shared bucket, spendable until `expires_at`."""

    tokens: int = 0
    expires_at: float = 0.0

    def spend(self, now: float) -> bool:
        """Spend one token if the lease still has one and has not expired."""
        if self.tokens <= 0 or now >= self.expires_at:
            self.tokens = 0
            return False
        self.tokens -= 1
        return True

    def drop(self) -> None:
        """Give the rest up (after a 429: the tokens are no good until the pause ends)."""
        self.tokens = 0
