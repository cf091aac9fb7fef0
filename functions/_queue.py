"""The queue edge: parse the message, run the step, decide retry vs. record-the-failure."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import azure.functions as func
from pydantic import BaseModel, ValidationError

from functions._http import REQUEST_ID
from shared.domain.errors import DomainError, NotFound, UpstreamRejected, ValidationFailed
from shared.domain.failures import Failure
from shared.domain.identity import ResellerIncomplete

log = logging.getLogger("functions.queue")
P = TypeVar("P", bound=BaseModel)

# Must equal host.json extensions.queues.maxDequeueCount (a test checks it).
MAX_DEQUEUE_COUNT = 5
# Errors that no retry will cure: record them at once instead of trying five times. A reseller
# without the Partner Center id a step needs stays so until a distributor admin adds it.
PERMANENT: tuple[type[DomainError], ...] = (
    UpstreamRejected,
    ValidationFailed,
    NotFound,
    ResellerIncomplete,
)


def run_step(
    msg: func.QueueMessage,
    payload: type[P],
    step: Callable[[P], None],
    give_up: Callable[[P, Failure], None],
) -> None:
    """Run one queue step; transient failures re-raise (the host retries, then poisons).

    `give_up` records the failure with its kind (a definite refusal, or transient/unknown),
    which decides whether a later retry is a new request or a repeat of this one. Should
    `give_up` itself fail, the record stays in its transient state, where the watchdog
    (`timer_housekeeping`) finds it.
    """
    try:
        data = payload.model_validate_json(msg.get_body())
    except ValidationError:
        # Poison from birth: it goes to <queue>-poison after the host's retries, for a person.
        log.error("queue message %s does not validate as %s", msg.id, payload.__name__)
        raise
    token = REQUEST_ID.set(str(data.model_dump().get("message_id") or msg.id))
    try:
        step(data)
    except PERMANENT as exc:
        log.warning("queue step refused for good: %s", exc)
        give_up(data, Failure.of(exc))
    except Exception as exc:
        last = (msg.dequeue_count or 1) >= MAX_DEQUEUE_COUNT
        if last:
            log.error("queue step failed on its last try; recording the failure", exc_info=True)
            give_up(data, Failure.of(exc, prefix=f"gave up after {MAX_DEQUEUE_COUNT} tries: "))
        raise
    finally:
        REQUEST_ID.reset(token)
