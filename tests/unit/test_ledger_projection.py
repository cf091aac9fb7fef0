"""The projector, the months' opening and the rebuild, on the in-memory ledger."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from shared.domain.errors import ConcurrencyConflict
from shared.domain.ledger import Figures, LedgerFact, LedgerMessage, MonthWrite, PricedState
from shared.services.ledger import open_months, project, rebuild
from shared.services.ledger.opening import open_month
from tests.fakes import FakeClock
from tests.ledger_fakes import InMemoryLedger

OCT, NOV, DEC = "2026-10", "2026-11", "2026-12"


def state(seats: int = 10, status: str = "Active", cycle: str = "monthly") -> PricedState:
    return PricedState(
        product_id="CFQ7TTC0LH18",
        name="Microsoft 365 Business Basic",
        billing_cycle=cycle,
        status=status,
        seats=seats,
        currency="CZK",
        unit_microsoft_cost=Decimal("100.00"),
        unit_reseller_cost=Decimal("110.00"),
        unit_customer_price=Decimal("121.00"),
    )


def at(month: int, day: int, hour: int = 12) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def fact(when: datetime, st: PricedState, sub: str = "s1", customer: str = "c1") -> LedgerFact:
    return LedgerFact(reseller="demo", customer_id=customer, subscription_id=sub, at=when, state=st)


def message(*facts: LedgerFact) -> LedgerMessage:
    return LedgerMessage.model_validate(LedgerMessage.of(facts).body())


def clock(month: int = 12, day: int = 15) -> FakeClock:
    return FakeClock(at(month, day))


def no_difference(ledger: InMemoryLedger, months: list[str]) -> None:
    assert rebuild(ledger, "demo", months) == []


def test_projecting_a_fact_moves_subscription_customer_and_totals() -> None:
    ledger = InMemoryLedger()
    assert project(ledger, clock(), message(fact(at(11, 3), state(seats=10)))) == 1
    [row] = ledger.subscription_months("demo", NOV).items
    assert row.opening is None and row.closing.seats == 10 and row.facts == 1
    customer = ledger.customer_month("demo", NOV, "c1")
    assert customer is not None and customer.figures.mrr == Decimal("1210.00")
    assert customer.figures.new == Decimal("1210.00")
    assert ledger.totals("demo", NOV).figures.mrr == Decimal("1210.00")
    no_difference(ledger, [NOV])


def test_a_redelivered_message_is_projected_once() -> None:
    ledger = InMemoryLedger()
    msg = message(fact(at(11, 3), state(seats=10)), fact(at(11, 3), state(seats=4), sub="s2"))
    assert project(ledger, clock(), msg) == 2
    assert project(ledger, clock(), msg) == 0
    assert ledger.totals("demo", NOV).figures.seats == 14
    no_difference(ledger, [NOV])


def test_a_lost_race_is_read_again_and_counted_once() -> None:
    ledger = InMemoryLedger()
    other = message(fact(at(11, 4), state(seats=3), sub="s9"))
    raced: list[MonthWrite] = []

    def concurrent(write: MonthWrite) -> None:
        if not raced:  # another instance projects the same customer between read and write
            raced.append(write)
            ledger.before_write = None
            project(ledger, clock(), other)
            ledger.before_write = concurrent

    ledger.before_write = concurrent
    assert project(ledger, clock(), message(fact(at(11, 3), state(seats=10)))) == 1
    assert raced
    assert ledger.totals("demo", NOV).figures.seats == 13
    assert ledger.customer_month("demo", NOV, "c1").figures.seats == 13  # type: ignore[union-attr]
    no_difference(ledger, [NOV])


def test_a_race_lost_every_time_gives_the_message_back_to_the_queue() -> None:
    ledger = InMemoryLedger()

    def always(write: MonthWrite) -> None:
        raise ConcurrencyConflict("someone else")

    ledger.before_write = always
    with pytest.raises(ConcurrencyConflict):
        project(ledger, clock(), message(fact(at(11, 3), state())))


def test_facts_out_of_order_end_at_the_later_state() -> None:
    ledger = InMemoryLedger()
    project(ledger, clock(), message(fact(at(11, 9), state(seats=12))))
    project(ledger, clock(), message(fact(at(11, 3), state(seats=10))))
    [row] = ledger.subscription_months("demo", NOV).items
    assert row.closing.seats == 12 and row.facts == 2
    no_difference(ledger, [NOV])


def test_a_subscription_new_to_a_month_opens_at_last_months_closing() -> None:
    ledger = InMemoryLedger()
    c = clock()
    project(ledger, c, message(fact(at(10, 3), state(seats=10))))
    open_month(ledger, c, "demo", NOV)
    project(ledger, c, message(fact(at(11, 20), state(seats=12))))
    [row] = ledger.subscription_months("demo", NOV).items
    assert row.opening is not None and row.opening.seats == 10
    fig = ledger.customer_month("demo", NOV, "c1").figures  # type: ignore[union-attr]
    assert fig.expansion == Decimal("242.00") and fig.new == 0
    no_difference(ledger, [OCT, NOV])


def test_opening_carries_live_rows_but_not_ended_ones() -> None:
    ledger = InMemoryLedger()
    c = clock(11, 1)
    project(ledger, c, message(fact(at(10, 3), state(seats=10))))
    project(ledger, c, message(fact(at(10, 4), state(seats=2), sub="s2", customer="c2")))
    project(ledger, c, message(fact(at(10, 5), state(status="Cancelled"), sub="s3")))
    assert open_months(ledger, c, ["demo"]) == {"demo": 2}
    rows = ledger.subscription_months("demo", NOV).items
    assert {r.subscription_id for r in rows} == {"s1", "s2"}
    assert all(r.facts == 0 and r.opening == r.closing for r in rows)
    assert ledger.totals("demo", NOV).opened
    assert ledger.totals("demo", NOV).figures.seats == 12
    assert open_months(ledger, c, ["demo"]) == {"demo": 0}
    no_difference(ledger, [OCT, NOV])


def test_opening_resumed_after_a_crash_carries_nothing_twice() -> None:
    ledger = InMemoryLedger()
    c = clock(11, 1)
    for n in range(4):
        project(
            ledger, c, message(fact(at(10, 3), state(seats=n + 1), sub=f"s{n}", customer=f"c{n}"))
        )
    writes = 0

    def crash_after_two(write: MonthWrite) -> None:
        nonlocal writes
        writes += 1
        if writes > 2:
            raise KeyboardInterrupt  # the process dies half-way

    ledger.before_write = crash_after_two
    with pytest.raises(KeyboardInterrupt):
        open_month(ledger, c, "demo", NOV)
    assert not ledger.opened("demo", NOV)
    ledger.before_write = None
    assert open_month(ledger, c, "demo", NOV) == 2
    assert ledger.totals("demo", NOV).figures.seats == 1 + 2 + 3 + 4
    no_difference(ledger, [OCT, NOV])


def test_a_fact_arriving_first_in_a_new_month_is_not_carried_over_it() -> None:
    ledger = InMemoryLedger()
    c = clock(11, 1)
    project(ledger, c, message(fact(at(10, 3), state(seats=10))))
    project(ledger, c, message(fact(at(11, 1, 0), state(seats=11))))  # before the timer ran
    open_month(ledger, c, "demo", NOV)
    [row] = ledger.subscription_months("demo", NOV).items
    assert row.opening.seats == 10 and row.closing.seats == 11  # type: ignore[union-attr]
    no_difference(ledger, [OCT, NOV])


def test_a_late_fact_fixes_the_later_months_without_facts_of_their_own() -> None:
    ledger = InMemoryLedger()
    c = clock(12, 15)
    project(ledger, c, message(fact(at(10, 3), state(seats=10))))
    project(ledger, c, message(fact(at(10, 4), state(seats=5), sub="s2")))
    open_month(ledger, c, "demo", NOV)
    open_month(ledger, c, "demo", DEC)
    project(ledger, c, message(fact(at(12, 2), state(seats=8), sub="s2")))  # s2 has its own
    # Delivered late: s1 changed and s2 ended in October.
    late = message(
        fact(at(10, 20), state(seats=15)), fact(at(10, 21), state(status="Cancelled"), sub="s2")
    )
    assert project(ledger, c, late) == 2
    nov = {r.subscription_id: r for r in ledger.subscription_months("demo", NOV).items}
    dec = {r.subscription_id: r for r in ledger.subscription_months("demo", DEC).items}
    assert nov["s1"].closing.seats == 15 and dec["s1"].closing.seats == 15
    assert "s2" not in nov  # it ended in October: not carried
    assert dec["s2"].opening is None and dec["s2"].closing.seats == 8  # new again in December
    no_difference(ledger, [OCT, NOV, DEC])


def test_a_late_fact_bringing_a_subscription_back_adds_it_to_opened_months() -> None:
    ledger = InMemoryLedger()
    c = clock(12, 15)
    project(ledger, c, message(fact(at(10, 3), state(status="Cancelled"))))
    open_month(ledger, c, "demo", NOV)
    assert ledger.subscription_months("demo", NOV).items == []
    project(ledger, c, message(fact(at(10, 9), state(seats=3))))  # reactivated, delivered late
    [row] = ledger.subscription_months("demo", NOV).items
    assert row.closing.seats == 3 and row.facts == 0
    no_difference(ledger, [OCT, NOV])


def test_rebuild_finds_a_tampered_customer_row() -> None:
    ledger = InMemoryLedger()
    project(ledger, clock(), message(fact(at(11, 3), state(seats=10))))
    ledger.tamper("demo", NOV, "c1", Figures(mrr=Decimal("1.00")))
    [diff] = rebuild(ledger, "demo", [NOV])
    assert diff.month == NOV and diff.row == "customer c1"


def test_annual_figures_sum_exactly_whatever_else_the_customer_has() -> None:
    ledger = InMemoryLedger()
    c = clock()
    # 121 / 12 never ends: next to a large amount, a sum with unbounded decimals would round
    # and the deltas would no longer add up to the rows.
    project(ledger, c, message(fact(at(11, 3), state(seats=1, cycle="annual"))))
    project(ledger, c, message(fact(at(11, 4), state(seats=100_000), sub="big")))
    project(ledger, c, message(fact(at(11, 5), state(status="Cancelled"), sub="big")))
    no_difference(ledger, [NOV])
