"""The new-commerce rules, each on both sides of its boundary (shared/domain/nce.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.domain import nce
from shared.domain.errors import RuleBroken
from shared.domain.subscriptions import (
    NextTerm,
    PendingChange,
    RefundableSeats,
    Subscription,
    TransitionOption,
)

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
SCHEDULED = NextTerm(catalog_item_id=None, quantity=5, term_duration=None, billing_cycle=None)


def sub(**over: Any) -> Subscription:
    values: dict[str, Any] = {
        "reseller": "demo",
        "customer_id": "C",
        "id": "11111111-1111-1111-1111-111111111111",
        "catalog_item_id": "CFQ7TTC0LH18:0001:CFQ7TTC0K5BF",
        "name": "Microsoft 365 Business Basic",
        "quantity": 10,
        "term_duration": "P1Y",
        "billing_cycle": "monthly",
        "status": "active",
        "commitment_end_date": NOW + timedelta(days=300),
        "cancellation_allowed_until": NOW + timedelta(days=3),
        "auto_renew": True,
        "refundable": [RefundableSeats(3, NOW + timedelta(days=3))],
        "created_at": NOW,
        "updated_at": NOW,
    }
    values.update(over)
    return Subscription(**values)


def update(s: Subscription, at: datetime = NOW, **request: Any) -> list[str]:
    return nce.check_update(s, nce.UpdateRequest(**request), at)


def test_an_increase_is_allowed_on_an_active_paid_subscription():
    assert update(sub(), quantity=50) == []


def test_a_decrease_of_exactly_the_refundable_seats_is_allowed_and_one_more_is_refused():
    assert update(sub(), quantity=7) == []
    with pytest.raises(RuleBroken) as caught:
        update(sub(), quantity=6)
    err = caught.value
    assert err.rule == nce.REDUCE_BEYOND_REFUNDABLE
    assert "3 seats can be removed (3 until 2026-12-04 10:00 UTC)" in err.detail
    assert "down to 7" in err.detail


def test_refundable_seats_count_until_the_last_moment_of_their_window_and_not_after():
    s = sub()
    until = s.refundable[0].until
    assert update(s, until, quantity=7) == []
    with pytest.raises(RuleBroken) as caught:
        update(s, until + timedelta(seconds=1), quantity=7)
    assert caught.value.rule == nce.REDUCE_BEYOND_REFUNDABLE
    assert "no seats can be removed now" in caught.value.detail


def test_several_windows_add_up_and_are_each_named():
    s = sub(
        refundable=[
            RefundableSeats(2, NOW + timedelta(days=5)),
            RefundableSeats(3, NOW + timedelta(days=1)),
        ]
    )
    assert update(s, quantity=5) == []
    with pytest.raises(RuleBroken) as caught:
        update(s, quantity=4)
    assert "3 until 2026-12-02 10:00 UTC, 2 until 2026-12-06 10:00 UTC" in caught.value.detail


def test_never_below_the_assigned_licences_and_exactly_at_them_is_allowed():
    s = sub()
    nce.check_assigned(s, 8, assigned=8, total=10)
    with pytest.raises(RuleBroken) as caught:
        nce.check_assigned(s, 7, assigned=8, total=10)
    assert caught.value.rule == nce.BELOW_ASSIGNED_LICENCES
    assert "down to 8" in caught.value.detail and "unassign 1 licence first" in caught.value.detail


def test_assigned_licences_of_the_sku_are_shared_with_its_other_subscriptions():
    # 8 assigned over 10 + 5 seats of the same SKU: this one may go down to 3.
    nce.check_assigned(sub(), 3, assigned=8, total=15)
    with pytest.raises(RuleBroken):
        nce.check_assigned(sub(), 2, assigned=8, total=15)


def test_cancel_until_the_window_closes_and_refused_a_second_later():
    s = sub()
    until = s.cancellation_allowed_until
    assert until is not None
    assert update(s, until, status="Cancelled") == []
    with pytest.raises(RuleBroken) as caught:
        update(s, until + timedelta(seconds=1), status="Cancelled")
    assert caught.value.rule == nce.CANCELLATION_WINDOW_CLOSED
    assert "turn auto-renew off" in caught.value.detail


def test_cancel_without_a_known_window_is_refused():
    with pytest.raises(RuleBroken) as caught:
        update(sub(cancellation_allowed_until=None), status="Cancelled")
    assert caught.value.rule == nce.CANCELLATION_WINDOW_CLOSED


def test_a_suspended_subscription_can_only_be_reactivated():
    s = sub(status="suspended")
    assert update(s, status="Active") == []
    for request in ({"quantity": 11}, {"autoRenew": True}, {"status": "Cancelled"}):
        kwargs = {"auto_renew" if k == "autoRenew" else k: v for k, v in request.items()}
        with pytest.raises(RuleBroken) as caught:
            update(s, **kwargs)
        assert caught.value.rule == nce.SUBSCRIPTION_SUSPENDED


def test_suspending_warns_that_auto_renew_goes_off_and_the_scheduled_change_is_removed():
    warnings = update(sub(next_term=SCHEDULED), status="Suspended")
    assert warnings[0] == nce.SUSPEND_WARNING
    assert "quantity 5" in warnings[1]


def test_an_ended_subscription_cannot_change():
    for status in ("expired", "disabled", "deleted"):
        with pytest.raises(RuleBroken) as caught:
            update(sub(status=status), quantity=11)
        assert caught.value.rule == nce.NOT_ELIGIBLE


def test_a_trials_quantity_is_fixed():
    trial = sub(is_trial=True, quantity=25, billing_cycle="none", refundable=[])
    with pytest.raises(RuleBroken) as caught:
        update(trial, quantity=30)
    assert caught.value.rule == nce.TRIAL_QUANTITY_FIXED
    assert update(trial, quantity=25, auto_renew=False) == []


def test_the_term_only_gets_longer_mid_term():
    assert update(sub(term_duration="P1M"), term_duration="P1Y") == []
    assert update(sub(), term_duration="P3Y") == []
    for shorter in ("P1M",):
        with pytest.raises(RuleBroken) as caught:
            update(sub(), term_duration=shorter)
        assert caught.value.rule == nce.TERM_ONLY_LONGER
    assert update(sub(), term_duration="P1Y") == []  # the same term is no change


def test_the_billing_cycle_never_changes_mid_term_and_the_same_cycle_is_no_change():
    assert update(sub(), billing_cycle="monthly") == []
    with pytest.raises(RuleBroken) as caught:
        update(sub(term_duration="P3Y", billing_cycle="monthly"), billing_cycle="annual")
    assert caught.value.rule == nce.BILLING_CYCLE_NOT_CHANGEABLE
    assert "schedule it for renewal" in caught.value.detail


def test_a_mid_term_quantity_change_or_auto_renew_off_wipes_the_scheduled_change():
    s = sub(next_term=SCHEDULED)
    assert len(update(s, quantity=12)) == 1
    assert len(update(s, auto_renew=False)) == 1
    assert update(s, auto_renew=True) == []
    assert update(sub(), quantity=12) == []  # nothing scheduled, nothing wiped


def test_a_pending_change_refuses_another_naming_its_order():
    s = sub(
        pending_change=PendingChange(
            order_id="01JORDER0000000000000000AA",
            summary="quantity 10 → 12",
            requested_at=NOW,
            requested_by="x@x.example",
        )
    )
    for check in (
        lambda: update(s, quantity=12),
        lambda: nce.check_schedule(s, SCHEDULED),
        lambda: nce.check_unschedule(s),
        lambda: nce.check_convert(s),
        lambda: nce.check_upgrade(s, 1),
    ):
        with pytest.raises(RuleBroken) as caught:
            check()
        assert caught.value.rule == nce.CHANGE_IN_PROGRESS
        assert "01JORDER0000000000000000AA" in caught.value.detail


def test_a_change_at_renewal_needs_auto_renew_on():
    nce.check_schedule(sub(), SCHEDULED)
    with pytest.raises(RuleBroken) as caught:
        nce.check_schedule(sub(auto_renew=False), SCHEDULED)
    assert caught.value.rule == nce.AUTO_RENEW_REQUIRED
    with pytest.raises(RuleBroken) as suspended:
        nce.check_schedule(sub(status="suspended"), SCHEDULED)
    assert suspended.value.rule == nce.SUBSCRIPTION_SUSPENDED


def test_only_a_scheduled_change_can_be_removed():
    nce.check_unschedule(sub(next_term=SCHEDULED))
    with pytest.raises(RuleBroken) as caught:
        nce.check_unschedule(sub())
    assert caught.value.rule == nce.NOT_ELIGIBLE


def test_only_a_trial_converts_and_a_paid_subscription_does_not():
    assert nce.check_convert(sub(is_trial=True)) == []
    with pytest.raises(RuleBroken) as caught:
        nce.check_convert(sub())
    assert caught.value.rule == nce.NOT_ELIGIBLE


def test_an_upgrade_moves_at_most_the_subscriptions_seats():
    assert nce.check_upgrade(sub(), 10) == []
    with pytest.raises(RuleBroken):
        nce.check_upgrade(sub(), 11)
    with pytest.raises(RuleBroken):
        nce.check_upgrade(sub(is_trial=True), 1)


def test_an_ineligible_transition_target_names_partner_centers_reason():
    options = [
        TransitionOption("A:0001:X", "E3", eligible=False, reasons=("Seat count too low",)),
        TransitionOption("B:0001:Y", "E5", eligible=True),
    ]
    assert nce.eligible_target(options, "b:0001:y", "upgrade").title == "E5"
    with pytest.raises(RuleBroken) as caught:
        nce.eligible_target(options, "A:0001:X", "upgrade")
    assert caught.value.rule == nce.NOT_ELIGIBLE and "Seat count too low" in caught.value.detail
    with pytest.raises(RuleBroken) as unknown:
        nce.eligible_target(options, "C:0001:Z", "upgrade")
    assert "eligible now: B:0001:Y" in unknown.value.detail
    assert nce.eligible_target(options, None, "conversion").catalog_item_id == "B:0001:Y"
