"""Fixed-window request counters (table `RateLimits`: bucket key, window start)."""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from shared.domain.model import Record


class RateWindow(Record):
    """How many requests one bucket (a client, a token; hashed) made in one window."""

    bucket: str = Field(pattern=r"^[a-z0-9-]{1,80}$")
    window: str = Field(pattern=r"^\d{1,12}$")  # the window's start, epoch seconds
    count: int = Field(0, ge=0)
    expires_at: AwareDatetime  # the window's end: retention deletes it after
