"""A controllable clock: wall time plus an offset that tests can advance."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class SimClock:
    """Every date the simulator hands out comes from here, so tests can move time forward."""

    def __init__(self, offset: timedelta | None = None) -> None:
        self._offset = offset or timedelta(0)
        self._lock = threading.Lock()

    @property
    def offset(self) -> timedelta:
        """How far the simulated clock runs ahead of wall time."""
        with self._lock:
            return self._offset

    def now(self) -> datetime:
        """The simulated current time (aware UTC)."""
        with self._lock:
            return datetime.now(UTC) + self._offset

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward (never backwards: Partner Center dates only grow)."""
        if delta < timedelta(0):
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += delta
        return self.now()

    def set_offset(self, offset: timedelta) -> None:
        """Restore an offset, e.g. from a snapshot or a reset."""
        with self._lock:
            self._offset = offset
