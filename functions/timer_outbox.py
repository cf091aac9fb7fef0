"""Timer: re-send outbox rows whose writer died between commit and send."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.bootstrap import container

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("timer_outbox_sweep")
@bp.timer_trigger(arg_name="timer", schedule="%OUTBOX_SWEEP_SCHEDULE%", run_on_startup=False)
def timer_outbox_sweep(timer: func.TimerRequest) -> None:
    """Send abandoned outbox rows (older than OUTBOX_MIN_AGE_SECONDS)."""
    sent = container().sweep_outbox()
    if sent:
        log.info("outbox sweep re-sent %d message(s)", sent)
