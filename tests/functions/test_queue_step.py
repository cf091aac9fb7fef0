"""run_step: what is retried by the host and what is recorded at once."""

from __future__ import annotations

import pytest
from azure.functions.queue import QueueMessage
from pydantic import BaseModel

from functions._queue import run_step
from shared.domain.errors import UpstreamUnavailable
from shared.domain.failures import Failure
from shared.domain.identity import ResellerIncomplete


class Body(BaseModel):
    id: str


def _message(dequeue_count: int = 1) -> QueueMessage:
    # The host's own message type, as the Functions worker builds it.
    return QueueMessage(id="m1", body=b'{"id": "r1"}', dequeue_count=dequeue_count)  # type: ignore[no-untyped-call]


def test_a_reseller_missing_its_partner_center_id_is_recorded_at_once_not_retried():
    given_up: list[Failure] = []

    def step(_: Body) -> None:
        raise ResellerIncomplete("reseller 'demo' has no Partner Center MPN id on record")

    run_step(_message(), Body, step, lambda _, failure: given_up.append(failure))

    assert len(given_up) == 1 and "MPN id" in given_up[0].reason


def test_a_transient_failure_is_retried_by_the_host_until_the_last_try():
    given_up: list[Failure] = []

    def step(_: Body) -> None:
        raise UpstreamUnavailable("Partner Center is down")

    with pytest.raises(UpstreamUnavailable):
        run_step(_message(1), Body, step, lambda _, failure: given_up.append(failure))
    assert given_up == []
    with pytest.raises(UpstreamUnavailable):
        run_step(_message(5), Body, step, lambda _, failure: given_up.append(failure))
    assert len(given_up) == 1
