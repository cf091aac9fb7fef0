"""A small fixed-window rate limiter on a table, for routes anyone may call (quote links).

Each bucket (a client IP, a token; stored hashed, never as given) counts requests per window
in one row, written with its ETag: of two racing requests both are counted, never one lost.
Over the limit → `TooManyRequests` (429 with Retry-After). Rows are deleted by retention.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.domain.errors import ConcurrencyConflict, Conflict, TooManyRequests
from shared.domain.ratelimit import RateWindow
from shared.ports import Clock, Repository

_ATTEMPTS = 8


@dataclass(frozen=True)
class Limit:
    """At most `requests` per `window_seconds` for each subject of `name`."""

    name: str
    requests: int
    window_seconds: int


def bucket(limit: Limit, subject: str) -> str:
    """The stored key of a subject's bucket: its hash, never the subject itself."""
    return f"{limit.name}-{hashlib.sha256(subject.encode()).hexdigest()[:40]}"


def hit(repo: Repository[RateWindow], clock: Clock, limit: Limit, subject: str) -> None:
    """Count one request of `subject`; TooManyRequests when its window is already full."""
    now = clock.now()
    start = int(now.timestamp()) // limit.window_seconds * limit.window_seconds
    ends = start + limit.window_seconds
    key = bucket(limit, subject)
    for _ in range(_ATTEMPTS):
        row = repo.find(key, str(start))
        if row is None:
            try:
                repo.add(
                    RateWindow(
                        bucket=key,
                        window=str(start),
                        count=1,
                        expires_at=datetime.fromtimestamp(ends, now.tzinfo),
                    )
                )
                return
            except Conflict:
                continue  # another request made the row first: count on it
        if row.count >= limit.requests:
            raise TooManyRequests("too many requests; try again later", ends - now.timestamp())
        row.count += 1
        try:
            repo.update(row)
            return
        except ConcurrencyConflict:
            continue
    # So many requests at once on one bucket that the counter cannot keep up: that is a flood.
    raise TooManyRequests("too many requests; try again later", ends - now.timestamp())


def purge(repo: Repository[RateWindow], now: datetime, keep: timedelta) -> int:
    """Delete windows that ended more than `keep` ago; how many."""
    deleted = 0
    for row in list(repo.iterate(before={"expires_at": now - keep})):
        try:
            repo.delete(row)
            deleted += 1
        except ConcurrencyConflict:
            pass
    return deleted
