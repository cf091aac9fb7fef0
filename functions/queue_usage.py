"""Queue `usage-import`: one step of a month's Azure usage import."""

from __future__ import annotations

import azure.functions as func

from functions._queue import run_step
from shared.bootstrap import container
from shared.domain.outbox import Queue
from shared.domain.usage_report import UsageImportMessage
from shared.services import usage_import

bp = func.Blueprint()


@bp.function_name("queue_usage_import")
@bp.queue_trigger(
    arg_name="msg", queue_name=Queue.USAGE_IMPORT.value, connection="AzureWebJobsStorage"
)
def queue_usage_import(msg: func.QueueMessage) -> None:
    """Run one step (start, poll, blob, finish); one failing for good marks the import Failed."""
    c = container()
    run_step(
        msg,
        UsageImportMessage,
        lambda m: usage_import.handle(c.usage_book, c.partner_center, m),
        lambda m, failure: usage_import.give_up(c.usage_book, m, failure),
    )
