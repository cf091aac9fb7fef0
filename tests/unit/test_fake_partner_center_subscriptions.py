"""The in-memory Partner Center refuses subscription changes the way the client reports
Partner Center's refusals (same exception types and codes as the contract tests show), and
answers in the adapter's words what the simulator answers."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta

import pytest

from shared.domain.errors import ConcurrencyConflict, UpstreamRejected, UpstreamUnavailable
from shared.domain.orders import CartLineRequest
from shared.domain.subscriptions import (
    ChangeAccepted,
    ChangeProgress,
    NextTerm,
    SubscriptionChange,
    SubscriptionFacts,
    TransitionOption,
    TransitionRequest,
)
from tests.catalog_fakes import BOTH, SimCatalogPartnerCenter
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


def test_fake_speaks_our_statuses_like_the_adapter_and_suspending_turns_auto_renew_off() -> None:
    pc, _, sid = bought(2)
    assert pc.subscription(TENANT, sid).status == "Active"
    suspended = change(pc, sid, status="Suspended")
    assert isinstance(suspended, SubscriptionFacts)
    assert (suspended.status, suspended.auto_renew) == ("Suspended", False)
    with pytest.raises(UpstreamRejected) as refused:
        change(pc, sid, auto_renew=True)  # nothing but reactivation while suspended
    assert refused.value.code == "800091"


def test_fake_replays_a_refusal_for_its_request_id_as_the_simulator_keeps_it() -> None:
    pc, clock, sid = bought(2)
    clock.advance(days=8)
    fewer = SubscriptionChange(quantity=1)
    with pytest.raises(UpstreamRejected):
        pc.change_subscription(TENANT, sid, fewer, request_id="late")
    change(pc, sid, quantity=4)  # two seats in a new window: one could go now
    with pytest.raises(UpstreamRejected) as replayed:
        pc.change_subscription(TENANT, sid, fewer, request_id="late")
    assert replayed.value.code == "800090" and pc.subscription(TENANT, sid).quantity == 4
    assert "late" not in [request for request, _ in pc.changes] and len(pc.changes) == 1


def test_fake_ends_an_accepted_change_failed_not_done_with_its_code_like_the_adapter() -> None:
    pc, _, sid = bought(2)
    pc.accept_next_changes, pc.accepted_polls, pc.accepted_retry_after = 1, 2, 3
    pc.accepted_failure = ("800091", "Can't update a subscription with suspended status")
    accepted = change(pc, sid, quantity=4)
    assert isinstance(accepted, ChangeAccepted) and accepted.retry_after_seconds == 3
    assert pc.change_progress(TENANT, sid, accepted).done is False
    failed = pc.change_progress(TENANT, sid, accepted)
    assert (failed.done, failed.failed, failed.failed_code, failed.facts) == (
        False,
        True,
        "800091",
        None,
    )
    assert pc.subscription(TENANT, sid).quantity == 2
    assert pc.change_progress(TENANT, sid, accepted).failed_code == "800091"


def test_fake_keeps_the_whole_next_term_filling_in_what_the_change_left_out() -> None:
    pc, _, sid = bought(2)
    scheduled = change(pc, sid, next_term=NextTerm(None, 6, None, None))
    assert isinstance(scheduled, SubscriptionFacts)
    assert scheduled.next_term == NextTerm(ITEM, 6, "P1Y", "monthly")
    with pytest.raises(UpstreamRejected) as refused:
        change(pc, sid, auto_renew=False, next_term=NextTerm(None, 7, None, None))
    assert refused.value.code == "800093"


def test_fake_upgrade_ends_the_source_without_auto_renew_and_moves_no_more_seats_than_held() -> (
    None
):
    pc, _, sid = bought(5)
    target = "AAAA:0001:BBBB"
    pc.transition_targets[sid] = [TransitionOption(target, "Bigger", eligible=True)]
    with pytest.raises(UpstreamRejected):
        pc.transition(TENANT, sid, TransitionRequest(target, 6), request_id="too-many")
    outcome = pc.transition(TENANT, sid, TransitionRequest(target, 5), request_id="all")
    source = pc.subscription(TENANT, sid)
    assert (source.status, source.auto_renew, source.quantity) == ("Cancelled", False, 0)
    assert outcome.to_subscription_id
    upgraded = pc.subscription(TENANT, outcome.to_subscription_id)
    assert upgraded.refundable == () and upgraded.cancellation_allowed_until is None
    assert pc.transition_options(TENANT, sid)[0].eligible is False  # not active any more


def test_fake_licence_counts_name_the_catalogs_sku_and_part_number() -> None:
    clock = FakeClock()
    catalog = SimCatalogPartnerCenter(clock)
    sku = catalog.catalog.sku_by_slug(BOTH)
    item = sku.availabilities[0].catalog_item_id
    pc = FakeOrderPartnerCenter(fallback=catalog, clock=clock)
    pc.carts["c"] = _Cart("c", TENANT, [CartLineRequest(item, 10, "P1Y", "monthly", "5123456")])
    sid = pc.check_out(TENANT, "c", request_id="r").orders[0].lines[0].subscription_id
    assert sid is not None
    pc.assigned[sid] = 12  # more than bought: capped, as the simulator does
    (count,) = pc.licence_counts(TENANT)
    assert (count.sku_id, count.part_number) == (sku.product_sku_id, sku.part_number)
    assert (count.assigned, count.total, count.active) == (10, 10, 10)


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


def test_a_change_progress_is_never_both_done_and_failed() -> None:
    with pytest.raises(ValueError, match="either done or failed"):
        ChangeProgress(done=True, failed_code="800090", failed_reason="No decrease.")
    with pytest.raises(ValueError, match="reason"):
        ChangeProgress(done=False, failed_code="800090")
    assert ChangeProgress(done=False, failed_reason="failed").failed
    assert not ChangeProgress(done=False).failed and not ChangeProgress(done=True).failed
