"""Timer: the nightly sync, one run per reseller."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.bootstrap import container
from shared.services import sync

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("timer_nightly_sync")
@bp.timer_trigger(arg_name="timer", schedule="%SYNC_SCHEDULE%", run_on_startup=False)
def timer_nightly_sync(timer: func.TimerRequest) -> None:
    """Queue a sync run for every reseller with a Partner Center tenant id."""
    started = sync.start_nightly(container().sync_book)
    log.info("nightly sync: %d run(s) queued", len(started))
