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
    # No record waits on a ledger message: it goes to `ledger-poison` (reported by
    # /api/health?deep=1) and the month's rebuild shows what it would have changed.
    log.error("ledger facts of customer %s not projected: %s", message.customer_id, failure.reason)


@bp.function_name("queue_project_ledger")
@bp.queue_trigger(arg_name="msg", queue_name=Queue.LEDGER.value, connection="AzureWebJobsStorage")
def queue_project_ledger(msg: func.QueueMessage) -> None:
    """Append a message's facts to the ledger and move the month aggregates (idempotent)."""
    c = container()
    run_step(
        msg, LedgerMessage, lambda m: log.info("%d new fact(s)", c.project_ledger(m)), _give_up
    )
