"""Timer: the watchdog over transient records, poison queues, and retention."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.bootstrap import container
from shared.services import housekeeping, quotes

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("timer_housekeeping")
@bp.timer_trigger(arg_name="timer", schedule="%HOUSEKEEPING_SCHEDULE%", run_on_startup=False)
def timer_housekeeping(timer: func.TimerRequest) -> None:
    """Re-enqueue or fail stale in-flight records, report poison, delete what retention allows."""
    c = container()
    # Data upgrades first (one point read each once done): later steps may rely on them.
    c.migrate()
    watched, _ = housekeeping.run(c.housekeeping)
    if watched.nudged or watched.failed:
        log.warning(
            "watchdog re-enqueued %d and failed %d record(s)",
            len(watched.nudged),
            len(watched.failed),
        )
    quotes.run(c.quote_book)  # expiry (the reseller is told), interrupted acceptances
