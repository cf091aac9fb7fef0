"""The ledger's pure rules: months, figures, and the replay every aggregate must equal."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from shared.domain.ledger import (
    LedgerFact,
    PricedState,
    SubscriptionMonth,
    figures,
    month_of,
    months_ending,
    next_month,
    previous_month,
    replay,
    totals_of,
)


def state(
    seats: int = 10, status: str = "Active", cycle: str = "monthly", **over: object
) -> PricedState:
    values: dict[str, object] = {
        "product_id": "CFQ7TTC0LH18",
        "name": "Microsoft 365 Business Basic",
        "term_duration": "P1Y",
        "billing_cycle": cycle,
        "status": status,
        "seats": seats,
        "currency": "CZK",
        "unit_microsoft_cost": Decimal("100.00"),
        "unit_reseller_cost": Decimal("110.00"),
        "unit_customer_price": Decimal("121.00"),
    }
    values.update(over)
    return PricedState.model_validate(values)


def fact(at: datetime, st: PricedState, sub: str = "s1", customer: str = "c1") -> LedgerFact:
    return LedgerFact(reseller="demo", customer_id=customer, subscription_id=sub, at=at, state=st)


def test_month_arithmetic_crosses_years() -> None:
    assert next_month("2026-12") == "2027-01"
    assert previous_month("2027-01") == "2026-12"
    assert months_ending("2026-02", 3) == ["2025-12", "2026-01", "2026-02"]
    assert month_of(datetime(2026, 11, 30, 23, 59, tzinfo=UTC)) == "2026-11"


def test_annual_price_is_normalised_to_a_month_and_trials_earn_nothing() -> None:
    assert state(seats=12, cycle="annual").monthly() == (Decimal("121.00"), Decimal("110.00"))
    assert state(is_trial=True).monthly() == (Decimal(0), Decimal(0))
    assert state(cycle="none").monthly() == (Decimal(0), Decimal(0))
    assert state(status="Cancelled").monthly() == (Decimal(0), Decimal(0))


def test_movements_explain_the_closing_revenue() -> None:
    grown = figures(state(seats=10), state(seats=12))
    assert (grown.expansion, grown.contraction, grown.new, grown.churn) == (
        Decimal("242.00"),
        Decimal(0),
        Decimal(0),
        Decimal(0),
    )
    shrunk = figures(state(seats=10), state(seats=4))
    assert shrunk.contraction == Decimal("726.00")
    gone = figures(state(seats=10), state(seats=10, status="Expired"))
    assert (gone.churn, gone.mrr, gone.seats, gone.subscriptions) == (
        Decimal("1210.00"),
        Decimal(0),
        0,
        0,
    )
    for f in (grown, shrunk, gone, figures(None, state())):
        assert f.opening_mrr + f.new + f.expansion - f.contraction - f.churn == f.mrr


def test_the_later_fact_wins_whatever_order_they_arrive_in() -> None:
    early = fact(datetime(2026, 11, 3, tzinfo=UTC), state(seats=5))
    late = fact(datetime(2026, 11, 20, tzinfo=UTC), state(seats=8))
    a = SubscriptionMonth.started(early, None).apply(late)
    b = SubscriptionMonth.started(late, None).apply(early)
    assert a.closing == b.closing == late.state
    assert a.facts == b.facts == 2


def test_replay_carries_live_subscriptions_and_drops_ended_ones() -> None:
    facts = [
        fact(datetime(2026, 9, 10, tzinfo=UTC), state(seats=10)),
        fact(datetime(2026, 9, 12, tzinfo=UTC), state(seats=2), sub="s2"),
        fact(datetime(2026, 10, 15, tzinfo=UTC), state(seats=2, status="Cancelled"), sub="s2"),
        fact(datetime(2026, 11, 15, tzinfo=UTC), state(seats=14)),
    ]
    months = replay(facts, ["2026-09", "2026-10", "2026-11"])
    oct_, nov = months["2026-10"], months["2026-11"]
    assert oct_[("c1", "s1")].facts == 0 and oct_[("c1", "s1")].closing.seats == 10
    assert oct_[("c1", "s2")].figures.churn == Decimal("242.00")
    assert ("c1", "s2") not in nov
    nov_total = totals_of(nov.values())
    assert nov_total.opening_mrr == Decimal("1210.00")
    assert nov_total.expansion == Decimal("484.00")
    assert nov_total.mrr == Decimal("1694.00") and nov_total.seats == 14


def test_a_fact_key_is_stable_and_names_its_state() -> None:
    f = fact(datetime(2026, 11, 3, 10, 0, 0, 123456, tzinfo=UTC), state())
    assert f.key == fact(f.at, state()).key
    assert f.key != fact(f.at, state(seats=11)).key
    assert f.key.startswith("f~c1~s1~20261103T100000123456~")


def test_suspended_subscriptions_are_billed_and_pending_ones_not_yet() -> None:
    # Microsoft bills a suspended NCE subscription until it is cancelled; a pending one is
    # billed once provisioning finishes and it turns Active.
    assert state(status="Suspended").live and state(status="Suspended").monthly()[0] > 0
    assert not state(status="Pending").live
    assert state(status="Pending").monthly() == (Decimal(0), Decimal(0))
    assert figures(None, state(status="Pending")).subscriptions == 0
