"""The projector, the months' opening and the rebuild, on the in-memory ledger."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from unittest import mock

import pytest

from shared.domain.errors import ConcurrencyConflict, UpstreamUnavailable, ValidationFailed
from shared.domain.ledger import (
    Figures,
    LedgerFact,
    LedgerMessage,
    MonthWrite,
    PricedState,
    SubscriptionMonth,
)
from shared.domain.model import Page
from shared.services.ledger import open_months, project, projection, rebuild
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


def test_a_redelivery_after_a_crash_before_carrying_on_repairs_the_later_months() -> None:
    ledger = InMemoryLedger()
    c = clock(12, 15)
    project(ledger, c, message(fact(at(11, 3), state(seats=10))))
    open_months(ledger, c, ["demo"])  # December opened: s1 carried with 10 seats
    late = message(fact(at(11, 30, 23), state(seats=20)))
    with (
        mock.patch.object(projection, "carry_on", side_effect=RuntimeError("host killed")),
        pytest.raises(RuntimeError),
    ):
        project(ledger, c, late)  # November written, December not carried on
    assert project(ledger, c, late) == 0  # the redelivery: nothing new, yet it carries on
    [dec] = ledger.subscription_months("demo", DEC).items
    assert dec.opening.seats == 20 and dec.closing.seats == 20  # type: ignore[union-attr]
    no_difference(ledger, [NOV, DEC])


def test_carrying_on_that_loses_every_race_is_finished_by_the_redelivery() -> None:
    ledger = InMemoryLedger()
    c = clock(12, 15)
    project(ledger, c, message(fact(at(11, 3), state(seats=10))))
    open_months(ledger, c, ["demo"])
    late = message(fact(at(11, 30, 23), state(seats=20)))

    def december_always_lost(write: MonthWrite) -> None:
        if write.base.month == DEC:
            raise ConcurrencyConflict("someone else")

    ledger.before_write = december_always_lost
    with pytest.raises(ConcurrencyConflict):
        project(ledger, c, late)
    ledger.before_write = None
    project(ledger, c, late)
    no_difference(ledger, [NOV, DEC])


def _while_reading_november(ledger: InMemoryLedger, meanwhile: Callable[[], None]) -> None:
    """Run `meanwhile` once, right after the first read of November's rows returns."""
    real = ledger.subscription_months
    done: list[int] = []

    def read(reseller: str, month: str, **kw: Any) -> Page[SubscriptionMonth]:
        page = real(reseller, month, **kw)
        if month == NOV and not done:
            done.append(1)
            meanwhile()
        return page

    ledger.subscription_months = read  # type: ignore[method-assign]


def test_a_late_fact_projected_while_the_month_opens_is_carried_not_the_stale_row() -> None:
    ledger = InMemoryLedger()
    c = FakeClock(at(12, 1, 0))
    project(ledger, c, message(fact(at(11, 3), state(seats=10))))
    _while_reading_november(
        ledger, lambda: project(ledger, c, message(fact(at(11, 30, 23), state(seats=20))))
    )
    open_month(ledger, c, "demo", DEC)
    [dec] = ledger.subscription_months("demo", DEC).items
    assert dec.closing.seats == 20
    no_difference(ledger, [NOV, DEC])


def test_a_late_cancellation_while_the_month_opens_leaves_nothing_carried() -> None:
    ledger = InMemoryLedger()
    c = FakeClock(at(12, 1, 0))
    project(ledger, c, message(fact(at(11, 3), state(seats=10))))
    _while_reading_november(
        ledger,
        lambda: project(ledger, c, message(fact(at(11, 30, 23), state(status="Cancelled")))),
    )
    open_month(ledger, c, "demo", DEC)
    assert ledger.subscription_months("demo", DEC).items == []
    no_difference(ledger, [NOV, DEC])


def test_a_late_fact_of_a_customer_the_opening_has_passed_is_carried() -> None:
    ledger = InMemoryLedger()
    c = FakeClock(at(12, 1, 0))
    project(ledger, c, message(fact(at(11, 3), state(seats=10), customer="c5")))
    # c1 sorts before c5: the opening's scan has passed it when its late fact arrives
    _while_reading_november(
        ledger, lambda: project(ledger, c, message(fact(at(11, 30, 23), state(seats=3))))
    )
    open_month(ledger, c, "demo", DEC)
    assert {r.customer_id for r in ledger.subscription_months("demo", DEC).items} == {"c1", "c5"}
    no_difference(ledger, [NOV, DEC])


def test_one_resellers_failing_opening_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger = InMemoryLedger()
    c = clock(11, 1)
    for reseller in ("aaa", "demo"):
        project(
            ledger,
            c,
            message(fact(at(10, 3), state()).model_copy(update={"reseller": reseller})),
        )
    real = ledger.opened

    def broken(reseller: str, month: str) -> bool:
        if reseller == "aaa":
            raise UpstreamUnavailable("storage timed out")
        return real(reseller, month)

    ledger.opened = broken  # type: ignore[method-assign]
    assert open_months(ledger, c, ["aaa", "demo"]) == {"demo": 1}
    assert ledger.totals("demo", NOV).opened
    assert any("aaa" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)


def test_rebuild_reads_one_month_at_a_time() -> None:
    ledger = InMemoryLedger()
    c = clock(12, 15)
    project(ledger, c, message(fact(at(11, 3), state(seats=10))))
    open_month(ledger, c, "demo", DEC)
    project(ledger, c, message(fact(at(12, 3), state(seats=12))))
    reads: list[tuple[str, str]] = []
    real_facts, real_rows = ledger.facts, ledger.subscription_months

    def facts(reseller: str, month: str) -> Iterator[LedgerFact]:
        reads.append(("facts", month))
        return real_facts(reseller, month)

    def rows(reseller: str, month: str, **kw: Any) -> Page[SubscriptionMonth]:
        reads.append(("rows", month))
        return real_rows(reseller, month, **kw)

    ledger.facts = facts  # type: ignore[method-assign]
    ledger.subscription_months = rows  # type: ignore[method-assign]
    assert rebuild(ledger, "demo", [NOV, DEC]) == []
    assert reads == [("facts", NOV), ("rows", NOV), ("facts", DEC), ("rows", DEC)]


def test_a_fact_in_another_currency_is_refused_and_the_others_projected() -> None:
    ledger = InMemoryLedger()
    eur = state(seats=7).model_copy(update={"currency": "EUR"})
    msg = message(fact(at(11, 3), state(seats=10)), fact(at(11, 3), eur, sub="s2"))
    with pytest.raises(ValidationFailed) as refused:
        project(ledger, clock(), msg, currency="CZK")
    assert "s2" in str(refused.value) and ledger_currencies(ledger, NOV) == {"CZK"}
    assert ledger.totals("demo", NOV).figures.seats == 10
    no_difference(ledger, [NOV])


def ledger_currencies(ledger: InMemoryLedger, month: str) -> set[str | None]:
    return {r.closing.currency for r in ledger.subscription_months("demo", month).items}
