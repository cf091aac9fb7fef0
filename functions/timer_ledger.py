"""Timers: the ledger's months open (live subscriptions carried into the new month), and the
daily reconciliation (a subscription whose ledger row disagrees gets its fact again)."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.bootstrap import container

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("timer_open_ledger_months")
@bp.timer_trigger(arg_name="timer", schedule="%LEDGER_SCHEDULE%", run_on_startup=False)
def timer_open_ledger_months(timer: func.TimerRequest) -> None:
    """Open the current month of every reseller's ledger (idempotent, resumable)."""
    carried = container().open_ledger_months()
    log.info("ledger months opened: %d row(s) carried", sum(carried.values()))


@bp.function_name("timer_reconcile_ledger")
@bp.timer_trigger(arg_name="timer", schedule="%LEDGER_RECONCILE_SCHEDULE%", run_on_startup=False)
def timer_reconcile_ledger(timer: func.TimerRequest) -> None:
    """Re-send the facts of subscriptions the ledger disagrees with (a lost message)."""
    sent = container().reconcile_ledger()
    log.info("ledger reconciled: %d fact(s) sent again", sum(sent.values()))
