"""Queue `sync-reseller`: a sync run's customer phase, or one chunk of its customers."""

from __future__ import annotations

import azure.functions as func

from functions._queue import run_step
from shared.bootstrap import container
from shared.domain.outbox import Queue
from shared.domain.sync import SyncMessage
from shared.services import sync

bp = func.Blueprint()


@bp.function_name("queue_sync_reseller")
@bp.queue_trigger(
    arg_name="msg", queue_name=Queue.SYNC_RESELLER.value, connection="AzureWebJobsStorage"
)
def queue_sync_reseller(msg: func.QueueMessage) -> None:
    """Run one step of a sync run (a chunk that fails for good is Failed, with the reason)."""
    c = container()
    run_step(
        msg,
        SyncMessage,
        lambda m: sync.handle(c.sync_book, c.partner_center, m),
        lambda m, failure: sync.give_up(c.sync_book, m, failure),
    )
