"""Timer triggers: one loop per function, so runs never overlap; failures are not retried."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from azure.functions.timer import TimerRequest

from localdev.funchost.invocation import HOST_API_REASON, FunctionSpec, Invoker
from localdev.funchost.ncrontab import Schedule

log = logging.getLogger("localdev.host")

# A run that starts later than this after its due time is reported as past due.
PAST_DUE_AFTER = timedelta(seconds=1)

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def timer_request(past_due: bool, last: datetime | None, next_due: datetime | None) -> TimerRequest:
    """A TimerRequest shaped like the host's TimerInfo (IsPastDue, ScheduleStatus)."""
    status = {
        "Last": _iso(last) if last else None,
        "Next": _iso(next_due) if next_due else None,
        "LastUpdated": _iso(_utc_now()),
    }
    return TimerRequest(past_due=past_due, schedule_status=status, schedule={"AdjustForDST": True})


def catch_up(schedule: Schedule, after: datetime, now: datetime) -> datetime:
    """The next due time after `after`; of several already missed by `now`, only the latest."""
    due = schedule.next_after(after)
    while True:
        following = schedule.next_after(due)
        if following > now:
            return due
        due = following


class TimerRunner:
    """Fires one timer function on its schedule in its own thread."""

    def __init__(
        self,
        spec: FunctionSpec,
        schedule: Schedule,
        invoker: Invoker,
        run_on_startup: bool = False,
        clock: Clock = _utc_now,
    ) -> None:
        self.spec = spec
        self.schedule = schedule
        self._invoker = invoker
        self._run_on_startup = run_on_startup
        self._clock = clock
        self._stop = threading.Event()
        # Serialises scheduled and admin-triggered runs: a timer never overlaps itself.
        self._running = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last: datetime | None = None

    def start(self) -> None:
        """Start the schedule loop."""
        self._thread = threading.Thread(
            target=self._loop, name=f"timer-{self.spec.name}", daemon=True
        )
        self._thread.start()

    def stop(self, grace: float) -> bool:
        """Stop scheduling; wait up to `grace` seconds for a running invocation. True if idle."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(grace)
            return not self._thread.is_alive()
        return True

    def _fire(self, past_due: bool, reason: str, next_due: datetime | None) -> None:
        with self._running:
            request = timer_request(past_due, self._last, next_due)
            self._last = self._clock()
            # Failures are logged by the invoker and not retried, as in Azure.
            self._invoker.invoke(self.spec, request, reason)

    def _loop(self) -> None:
        now = self._clock()
        due = self.schedule.next_after(now)
        if self._run_on_startup and not self._stop.is_set():
            self._fire(False, "Timer fired at startup (runOnStartup)", due)
            due = catch_up(self.schedule, now, self._clock())
        while not self._stop.is_set():
            delay = (due - self._clock()).total_seconds()
            if delay > 0 and self._stop.wait(delay):
                return
            started = self._clock()
            late = started - due > PAST_DUE_AFTER
            following = self.schedule.next_after(due)
            self._fire(late, f"Timer fired at {_iso(started)}", following)
            # Occurrences missed while this run went on collapse into one (past due if late).
            due = catch_up(self.schedule, due, self._clock())

    def invoke_once(self) -> None:
        """Run now, outside the schedule (the admin endpoint)."""
        self._fire(False, HOST_API_REASON, None)
