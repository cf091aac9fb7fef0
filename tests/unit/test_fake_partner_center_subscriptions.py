"""The in-memory Partner Center refuses subscription changes the way the client reports
Partner Center's refusals (same exception types and codes as the contract tests show)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta

import pytest

from shared.domain.errors import ConcurrencyConflict, UpstreamRejected, UpstreamUnavailable
from shared.domain.orders import CartLineRequest
from shared.domain.subscriptions import (
    ChangeAccepted,
    SubscriptionChange,
    SubscriptionFacts,
    TransitionRequest,
)
from tests.fakes import FakeClock
from tests.order_fakes import FakeOrderPartnerCenter, _Cart

TENANT = "tenant-1"
ITEM = "CFQ7TTC0LH18:0001:CFQ7TTC0K971"


def bought(quantity: int = 5) -> tuple[FakeOrderPartnerCenter, FakeClock, str]:
    clock = FakeClock()
    pc = FakeOrderPartnerCenter(clock=clock)
    line = CartLineRequest(ITEM, quantity, "P1Y", "monthly", "5123456")
    pc.carts["c"] = _Cart("c", TENANT, [line])
    result = pc.check_out(TENANT, "c", request_id="r")
    sid = result.orders[0].lines[0].subscription_id
    assert sid is not None
    return pc, clock, sid


def change(pc: FakeOrderPartnerCenter, sid: str, **what: object) -> object:
    return pc.change_subscription(
        TENANT,
        sid,
        SubscriptionChange(**what),
        request_id=str(uuid.uuid4()),  # type: ignore[arg-type]
    )


def test_fake_refuses_a_decrease_after_the_window_with_800090_and_allows_one_inside() -> None:
    pc, clock, sid = bought(5)
    clock.advance(days=3)
    change(pc, sid, quantity=8)
    clock.advance(days=5)

    with pytest.raises(UpstreamRejected) as refused:
        change(pc, sid, quantity=4)
    assert refused.value.code == "800090"
    fewer = change(pc, sid, quantity=5)
    assert isinstance(fewer, SubscriptionFacts) and fewer.quantity == 5


def test_fake_refuses_cancel_after_the_window_with_900213_and_suspended_changes_with_800091() -> (
    None
):
    pc, clock, sid = bought(2)
    change(pc, sid, status="Suspended")
    with pytest.raises(UpstreamRejected) as suspended:
        change(pc, sid, quantity=3)
    assert suspended.value.code == "800091"
    clock.advance(days=8)
    with pytest.raises(UpstreamRejected) as late:
        change(pc, sid, status="Cancelled")
    assert late.value.code == "900213"


def test_fake_answers_202_on_demand_and_is_done_after_the_polls() -> None:
    pc, _, sid = bought(2)
    pc.accept_next_changes, pc.accepted_polls = 1, 2
    accepted = change(pc, sid, quantity=4)
    assert isinstance(accepted, ChangeAccepted)

    assert pc.change_progress(TENANT, sid, accepted).done is False
    done = pc.change_progress(TENANT, sid, accepted)
    assert done.done and done.facts is not None and done.facts.quantity == 4


def test_fake_replays_a_request_id_and_turns_not_now_into_unavailable() -> None:
    pc, _, sid = bought(2)
    pc.change_subscription(TENANT, sid, SubscriptionChange(quantity=3), request_id="same")
    pc.change_subscription(TENANT, sid, SubscriptionChange(quantity=3), request_id="same")
    assert len(pc.applied_changes) == 1

    pc.refuse_next_change = [("900278", "pending"), ("412", "changed")]
    with pytest.raises(UpstreamUnavailable):
        change(pc, sid, quantity=4)
    with pytest.raises(ConcurrencyConflict):
        change(pc, sid, quantity=4)


def test_fake_converts_a_trial_and_refuses_an_ineligible_target() -> None:
    pc, clock, sid = bought(25)
    trial = replace(pc.subscriptions[sid], is_trial=True, trial_ends=clock.now() + timedelta(30))
    pc.subscriptions[sid] = trial
    option = pc.transition_options(TENANT, sid)[0]
    with pytest.raises(UpstreamRejected):
        pc.transition(TENANT, sid, TransitionRequest("X:0001:Y", 25), request_id="a")

    outcome = pc.transition(
        TENANT, sid, TransitionRequest(option.catalog_item_id, 25), request_id="b"
    )
    assert outcome.status == "Completed" and outcome.to_subscription_id
    assert pc.subscription(TENANT, sid).status == "Cancelled"


def test_fake_licence_counts_report_the_assigned_licences() -> None:
    pc, _, sid = bought(10)
    pc.assigned[sid] = 7
    (count,) = pc.licence_counts(TENANT)
    assert (count.assigned, count.total) == (7, 10)


def test_fake_replays_a_412_a_not_now_and_a_refusal_for_their_request_id_as_the_simulator():
    pc, _, sid = bought(2)
    pc.refuse_next_change = [("412", "changed"), ("800082", "renewing"), ("800091", "suspended")]
    for kind, request_id in ((ConcurrencyConflict, "a"), (UpstreamUnavailable, "b")):
        for _ in range(2):  # the same id: the same answer, even once the cause is gone
            with pytest.raises(kind):
                pc.change_subscription(
                    TENANT, sid, SubscriptionChange(quantity=3), request_id=request_id
                )
    for _ in range(2):
        with pytest.raises(UpstreamRejected) as refused:
            pc.change_subscription(TENANT, sid, SubscriptionChange(quantity=3), request_id="c")
        assert refused.value.code == "800091"
    assert pc.applied_changes == []
    applied = pc.change_subscription(TENANT, sid, SubscriptionChange(quantity=3), request_id="d")
    assert isinstance(applied, SubscriptionFacts) and applied.quantity == 3
