"""The health check: is storage reachable."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Literal

from shared.domain.model import WireModel, utcnow
from shared.services.housekeeping import Operations

log = logging.getLogger(__name__)


class Check(WireModel):
    """One dependency's state."""

    status: Literal["ok", "failing"]
    duration_ms: float


class Health(WireModel):
    """The app's health."""

    status: Literal["ok", "failing"]
    time: str
    checks: dict[str, Check]
    # Only in the deep report (`?deep=1` for distributor admins, `/health/deep` with a function
    # key): poison queues and records stuck in flight.
    operations: Operations | None = None


def _timed(probe: Callable[[], object]) -> Check:
    start = time.perf_counter()
    try:
        probe()
        status: Literal["ok", "failing"] = "ok"
    except Exception:
        log.warning("health probe failed", exc_info=True)
        status = "failing"
    return Check(status=status, duration_ms=round((time.perf_counter() - start) * 1000, 2))


def check_health(
    probes: Mapping[str, Callable[[], object]],
    operations: Callable[[], Operations] | None = None,
) -> Health:
    """Run each probe; the app is 'failing' when any dependency does not answer.

    With `operations` it is the deep report: poison queues and records stuck in flight too.
    """
    checks = {name: _timed(probe) for name, probe in probes.items()}
    status: Literal["ok", "failing"] = (
        "ok" if all(ch.status == "ok" for ch in checks.values()) else "failing"
    )
    return Health(
        status=status,
        time=utcnow().isoformat(),
        checks=checks,
        operations=operations() if operations is not None else None,
    )
