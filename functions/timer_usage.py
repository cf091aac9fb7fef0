"""Timer: the nightly import of Azure usage from Partner Center's export."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.bootstrap import container
from shared.services import usage_import

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("timer_usage_import")
@bp.timer_trigger(arg_name="timer", schedule="%USAGE_IMPORT_SCHEDULE%", run_on_startup=False)
def timer_usage_import(timer: func.TimerRequest) -> None:
    """Queue the import of this month's usage (and, early in a month, the last one's)."""
    for record in usage_import.begin(container().usage_book):
        log.info("usage import of %s: %s (run %s)", record.month, record.status, record.run_id)
