"""Queue `notifications`: send one e-mail."""

from __future__ import annotations

import azure.functions as func

from functions._queue import run_step
from shared.bootstrap import container
from shared.domain.notifications import NotificationMessage
from shared.domain.outbox import Queue
from shared.services import notifications

bp = func.Blueprint()


@bp.function_name("queue_send_notification")
@bp.queue_trigger(
    arg_name="msg", queue_name=Queue.NOTIFICATIONS.value, connection="AzureWebJobsStorage"
)
def queue_send_notification(msg: func.QueueMessage) -> None:
    """Send the e-mail a notification record holds, once."""
    c = container()
    run_step(
        msg,
        NotificationMessage,
        lambda m: notifications.deliver(c.notifications, c.mailer, m),
        lambda m, failure: notifications.give_up(c.notifications, m, failure.reason),
    )
