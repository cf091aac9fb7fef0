"""A clock that follows the Partner Center simulator's clock (local runs and tests only).

The platform decides the new-commerce windows (7 days to reduce or cancel, renewals) by its own
clock. When tests move the simulator's clock 8 days forward, the platform must see the same day,
or it would allow locally what the simulator then refuses. The simulator publishes its offset
from wall time at `/_sim/clock`; this clock adds it to the wall clock.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

log = logging.getLogger(__name__)


class SimulatedPartnerCenterClock:
    """Wall time plus the simulator's offset, read at most once per `ttl_seconds`.

    A failed read keeps the last known offset (0 before the first success): a simulator that is
    restarting must not make the platform's time jump back and forth.
    """

    def __init__(
        self,
        simulator_base_url: str,
        *,
        ca_cert_path: Path | None = None,
        ttl_seconds: float = 1.0,
        timeout_seconds: float = 2.0,
        http: httpx.Client | None = None,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = simulator_base_url.rstrip("/") + "/_sim/clock"
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(ca_cert_path)) if ca_cert_path else True
        )
        self._http = http or httpx.Client(verify=verify, timeout=timeout_seconds)
        self._ttl = ttl_seconds
        self._wall = wall
        self._monotonic = monotonic
        self._offset = timedelta(0)
        self._read_at: float | None = None
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The simulator's now, aware UTC."""
        return self._wall() + self.offset()

    def offset(self) -> timedelta:
        """The simulator's offset from wall time (cached; the last known one on failure)."""
        with self._lock:
            at = self._monotonic()
            if self._read_at is None or at - self._read_at >= self._ttl:
                self._read_at = at
                try:
                    response = self._http.get(self._url)
                    response.raise_for_status()
                    self._offset = timedelta(seconds=float(response.json()["offsetSeconds"]))
                except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                    log.warning(
                        "simulator clock %s unreadable (%s); keeping %s",
                        self._url,
                        exc,
                        self._offset,
                    )
            return self._offset
