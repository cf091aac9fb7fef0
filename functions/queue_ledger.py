"""Queue `ledger`: a subscription transaction's facts, projected into the month aggregates."""

from __future__ import annotations

import logging

import azure.functions as func

from functions._queue import run_step
from shared.bootstrap import container
from shared.domain.failures import Failure
from shared.domain.ledger import LedgerMessage
from shared.domain.outbox import Queue

bp = func.Blueprint()
log = logging.getLogger(__name__)


def _give_up(message: LedgerMessage, failure: Failure) -> None:
    # No record waits on a ledger message, and a rebuild cannot see a lost one (it replays the
    # facts that arrived). A transient failure's message goes on to `ledger-poison` (reported
    # by /api/health?deep=1), a refused one is dropped; either way the daily reconciliation
    # (timer_reconcile_ledger) sends the facts of records the ledger disagrees with again. The
    # keys say which facts to look at, or to replay from the poison queue.
    log.error(
        "ledger facts of reseller %s customer %s not projected: %s; facts: %s",
        message.reseller,
        message.customer_id,
        failure.reason,
        ", ".join(f.key for f in message.ledger_facts()),
    )


@bp.function_name("queue_project_ledger")
@bp.queue_trigger(arg_name="msg", queue_name=Queue.LEDGER.value, connection="AzureWebJobsStorage")
def queue_project_ledger(msg: func.QueueMessage) -> None:
    """Append a message's facts to the ledger and move the month aggregates (idempotent)."""
    c = container()
    run_step(
        msg, LedgerMessage, lambda m: log.info("%d new fact(s)", c.project_ledger(m)), _give_up
    )
