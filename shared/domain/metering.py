"""A per-invocation meter of Partner Center calls: how many, how many throttled, how long waited.

    from shared.domain.metering import metered

    with metered() as meter:
        ...  # anything that calls Partner Center
    counts.partner_center_calls += meter.calls

It is plain stdlib so that services and triggers may use it (they may not import adapters);
`shared.adapters.partner_center.metering` is the same module under the adapter's name.

The transport adds to the meter current in its context (a `ContextVar`): one per attempt sent
(retries count: Partner Center counts them too), one per 429 received, and the seconds spent
waiting for the request budget or sleeping on a 429's Retry-After. Outside `metered()` nothing is
counted. Meters nest: an inner meter's counts are added to the outer ones too.

Threads: a new thread starts with an empty context, so a meter is not seen there by itself.
Carry it with `contextvars.copy_context()`, one copy per task (a context cannot be entered by two
threads at once), e.g. `pool.submit(contextvars.copy_context().run, work, item)`, or wrap the
function with `carry_meter(work)`. The copies share the same meter object; its counters are
guarded by a lock, so threads may add to it concurrently.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class CallMeter:
    """Partner Center calls sent, 429s received and seconds waited, within one `metered()`."""

    calls: int = 0
    throttled: int = 0
    waited_seconds: float = 0.0
    parent: CallMeter | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, *, calls: int = 0, throttled: int = 0, waited_seconds: float = 0.0) -> None:
        """Add to this meter and to the meters it is nested in."""
        meter: CallMeter | None = self
        while meter is not None:
            with meter._lock:
                meter.calls += calls
                meter.throttled += throttled
                meter.waited_seconds += waited_seconds
            meter = meter.parent


_current: contextvars.ContextVar[CallMeter | None] = contextvars.ContextVar(
    "partner_center_call_meter", default=None
)


@contextmanager
def metered() -> Iterator[CallMeter]:
    """Count the Partner Center calls made inside the block (this context and its copies)."""
    meter = CallMeter(parent=_current.get())
    token = _current.set(meter)
    try:
        yield meter
    finally:
        _current.reset(token)


def current_meter() -> CallMeter | None:
    """The meter counting calls here, if any."""
    return _current.get()


def count(*, calls: int = 0, throttled: int = 0, waited_seconds: float = 0.0) -> None:
    """Add to the current meter (nothing when no meter is running)."""
    meter = _current.get()
    if meter is not None:
        meter.add(calls=calls, throttled=throttled, waited_seconds=waited_seconds)


def carry_meter(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn` made to run, in whatever thread, in a copy of the caller's context (and meter)."""
    context = contextvars.copy_context()

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        # A copy per call: one context cannot be entered by two threads at once.
        return context.copy().run(fn, *args, **kwargs)

    return run
