"""The sync book: the records, settings and helpers the sync engine works on."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from shared.domain.customers import Customer
from shared.domain.identity import Reseller, User
from shared.domain.notifications import Notification
from shared.domain.subscriptions import Subscription
from shared.domain.sync import SyncChunk, SyncRun
from shared.ports import CallCounter, Clock, MeterFactory, Repository, StepScheduler
from shared.services.orders.book import OrderBook


@dataclass
class NoCalls:
    """A meter that counts nothing (a book built without the transport's meter, in tests)."""

    calls: int = 0
    throttled: int = 0
    waited_seconds: float = 0.0


@contextmanager
def no_meter() -> Iterator[CallCounter]:
    """The default meter: nothing is counted (the container wires `metering.metered`)."""
    yield NoCalls()


@dataclass
class SyncPolicy:
    """How a run splits and paces its work (from the settings)."""

    chunk_size: int = 250  # customers per chunk message (SYNC_CHUNK_SIZE)
    licence_max_age_days: int = 7  # no customer's licence counts older (SYNC_LICENCE_MAX_AGE_DAYS)
    checkpoint_every: int = 25  # customers between two checkpoints of a chunk
    workers: int = 8  # Partner Center reads of one chunk in parallel
    # A run with no progress for this long is re-sent once, then Failed (the watchdog).
    stuck_after: timedelta = timedelta(minutes=30)
    # A chunk message works this long at most, then checkpoints and re-enqueues itself: well
    # below host.json's functionTimeout (10 minutes), so no chunk is ever cut off mid-work.
    chunk_time_budget: timedelta = timedelta(minutes=4)


@dataclass
class SyncBook:
    """The records the sync works on. Prices and the catalog come through the order book
    (`pricing`): a subscription found in Partner Center is priced as an order line would be."""

    runs: Repository[SyncRun]
    chunks: Repository[SyncChunk]
    pricing: OrderBook
    policy: SyncPolicy = field(default_factory=SyncPolicy)
    meter: MeterFactory = no_meter
    # Tests only: called after each step of a run is recorded ("customers", "checkpoint",
    # "chunk-writes"), where a test may stop the process as a SIGKILL would.
    after_step: Callable[[str], None] | None = None

    @property
    def customers(self) -> Repository[Customer]:
        """Customers, by reseller."""
        return self.pricing.customers

    @property
    def subscriptions(self) -> Repository[Subscription]:
        """Subscriptions, by customer."""
        return self.pricing.subscriptions

    @property
    def resellers(self) -> Repository[Reseller]:
        """Resellers."""
        return self.pricing.resellers

    @property
    def scheduler(self) -> StepScheduler:
        """Where a chunk re-enqueues itself to go on later (its time is up, or the rate limit's)."""
        return self.pricing.scheduler

    @property
    def clock(self) -> Clock:
        """The time the sync decides by."""
        return self.pricing.clock

    @property
    def notifications(self) -> Repository[Notification] | None:
        """Where e-mails to the reseller are queued."""
        return self.pricing.notifications

    @property
    def users(self) -> Repository[User] | None:
        """Users (whose Account Managers hear of new customers)."""
        return self.pricing.users

    def step_done(self, step: str) -> None:
        """Tell the crash hook a step is recorded (tests only)."""
        if self.after_step is not None:
            self.after_step(step)
