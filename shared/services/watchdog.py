"""The watchdog: no record stays in a transient state silently.

Each kind of record with transient states (a customer Provisioning, an order Submitted or
Provisioning) registers a `TransientRecords` source. On every housekeeping pass the watchdog
asks each source for its in-flight records and, for one older than the source's deadline,
re-enqueues its step once (`nudge`, through the outbox, repeating the same Partner Center
request); if it is still in flight a deadline after that, it is `fail`ed with a reason a person
can act on (kind Transient: whether Partner Center did the work is unknown, so a retry repeats
the same request).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from shared.domain.failures import Failure, FailureKind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InFlight:
    """One record in a transient state, as the watchdog sees it."""

    kind: str
    partition: str
    id: str
    status: str
    since: datetime  # when it entered the state (or last made progress in it)
    nudged_at: datetime | None = None  # when the watchdog re-enqueued its step, if it did


class TransientRecords(Protocol):
    """A kind of record the watchdog looks after."""

    kind: str

    @property
    def deadline(self) -> timedelta:
        """How long a record may stay in flight before the watchdog acts."""
        ...

    def in_flight(self) -> Iterator[InFlight]:
        """Every record of this kind in a transient state (without reading the others)."""
        ...

    def nudge(self, item: InFlight) -> None:
        """Re-enqueue the record's step (once; a no-op if it moved on meanwhile)."""
        ...

    def fail(self, item: InFlight, failure: Failure) -> None:
        """Mark the record Failed with the failure (a no-op if it moved on meanwhile)."""
        ...


@dataclass
class WatchReport:
    """What one pass found and did, per kind."""

    in_flight: dict[str, int] = field(default_factory=dict)
    stale: dict[str, int] = field(default_factory=dict)
    nudged: list[InFlight] = field(default_factory=list)
    failed: list[InFlight] = field(default_factory=list)


def stale_reason(item: InFlight, deadline: timedelta) -> str:
    """What a person reads on a record the watchdog failed."""
    minutes = int(deadline.total_seconds() // 60)
    return (
        f"Still {item.status} {minutes} minutes after it was sent to Partner Center, and again "
        f"{minutes} minutes after one more try. Check in Partner Center whether the work was "
        "done, then retry (the retry repeats the same request, so it cannot be done twice)."
    )


def watch(sources: Iterable[TransientRecords], now: datetime, *, act: bool = True) -> WatchReport:
    """Count the in-flight records of each source; with `act`, nudge or fail the stale ones."""
    report = WatchReport()
    for source in sources:
        deadline = source.deadline
        report.in_flight[source.kind] = report.stale[source.kind] = 0
        for item in source.in_flight():
            report.in_flight[source.kind] += 1
            # Progress after a nudge counts: a record that moved since is not stale yet.
            started = max(item.nudged_at, item.since) if item.nudged_at else item.since
            if now - started <= deadline:
                continue
            report.stale[source.kind] += 1
            if not act:
                continue
            try:
                if item.nudged_at is None:
                    source.nudge(item)
                    report.nudged.append(item)
                    log.warning(
                        "%s %s/%s is stale: re-enqueued", item.kind, item.partition, item.id
                    )
                else:
                    source.fail(item, Failure(FailureKind.TRANSIENT, stale_reason(item, deadline)))
                    report.failed.append(item)
                    log.error(
                        "%s %s/%s stayed %s: Failed",
                        item.kind,
                        item.partition,
                        item.id,
                        item.status,
                    )
            except Exception:
                # One record's trouble must not stop the pass; the next pass tries again.
                log.exception(
                    "watchdog could not act on %s %s/%s", item.kind, item.partition, item.id
                )
    return report
