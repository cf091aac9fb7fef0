"""Timer: the daily reminders (cancellation windows closing, renewals, trials ending)."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.bootstrap import container
from shared.services import reminders

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("timer_reminders")
@bp.timer_trigger(arg_name="timer", schedule="%REMINDER_SCHEDULE%", run_on_startup=False)
def timer_reminders(timer: func.TimerRequest) -> None:
    """Queue each reseller's digest of what is due; a repeated run tells nothing twice."""
    done = reminders.run(container().order_book)
    if done.queued:
        log.info("queued %d reminder digest(s), %d reminder(s)", len(done.queued), done.reminded)
