"""NCRONTAB parsing and next occurrences, as the timer trigger computes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from localdev.funchost.config import HostConfigError
from localdev.funchost.ncrontab import (
    CronSchedule,
    IntervalSchedule,
    parse_field,
    parse_schedule,
    time_zone,
)
from localdev.funchost.timers import catch_up


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def next_after(expression: str, moment: datetime, zone: str | None = None) -> datetime:
    return CronSchedule.parse(expression, time_zone(zone)).next_after(moment)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("* * * * * *", at(2024, 1, 1, 0, 0, 0), at(2024, 1, 1, 0, 0, 1)),
        ("* * * * * *", at(2024, 12, 31, 23, 59, 59), at(2025, 1, 1, 0, 0, 0)),
        ("0 */5 * * * *", at(2024, 1, 1, 12, 3, 7), at(2024, 1, 1, 12, 5, 0)),
        ("0 */5 * * * *", at(2024, 1, 1, 12, 5, 0), at(2024, 1, 1, 12, 10, 0)),
        ("*/15 * * * * *", at(2024, 1, 1, 0, 0, 50), at(2024, 1, 1, 0, 1, 0)),
        ("0 30 9 * * 1-5", at(2024, 1, 5, 10, 0, 0), at(2024, 1, 8, 9, 30, 0)),  # Fri -> Mon
        ("0 30 9 * * MON-FRI", at(2024, 1, 6, 0, 0, 0), at(2024, 1, 8, 9, 30, 0)),
        ("0 0 2 * * SUN", at(2024, 1, 1), at(2024, 1, 7, 2, 0, 0)),
        ("0 0 0 1 JAN,jul *", at(2024, 2, 1), at(2024, 7, 1)),
        ("0 0 0 31 * *", at(2024, 4, 1), at(2024, 5, 31)),
        ("0 0 0 29 2 *", at(2024, 3, 1), at(2028, 2, 29)),
        ("0 0 12 1 * 1", at(2024, 1, 1, 12, 0, 0), at(2024, 4, 1, 12, 0, 0)),  # day AND weekday
        ("0 5/20 * * * *", at(2024, 1, 1, 0, 6), at(2024, 1, 1, 0, 25)),
        ("0,30 0 0 * * *", at(2024, 1, 1, 0, 0, 0), at(2024, 1, 1, 0, 0, 30)),
        ("0 * * * *", at(2024, 1, 1, 0, 30), at(2024, 1, 1, 1, 0)),  # five fields: second 0
    ],
)
def test_next_occurrence(expression: str, after: datetime, expected: datetime) -> None:
    assert next_after(expression, after) == expected


def test_next_occurrence_ignores_sub_second_part_and_is_strictly_later() -> None:
    moment = at(2024, 1, 1, 0, 0, 0) + timedelta(microseconds=999_999)
    assert next_after("* * * * * *", moment) == at(2024, 1, 1, 0, 0, 1)


def test_time_zone_schedules_use_wall_clock_time() -> None:
    # 09:00 in Prague is 08:00 UTC in winter and 07:00 UTC in summer.
    assert next_after("0 0 9 * * *", at(2024, 1, 10), "Europe/Prague") == at(2024, 1, 10, 8)
    assert next_after("0 0 9 * * *", at(2024, 7, 10), "Europe/Prague") == at(2024, 7, 10, 7)


def test_time_zone_dst_gap_and_overlap_fire_once() -> None:
    # 02:30 does not exist on 2024-03-31 in Prague: fires just after the jump.
    assert next_after("0 30 2 * * *", at(2024, 3, 30, 12), "Europe/Prague") == at(
        2024, 3, 31, 1, 30
    )
    # 02:30 happens twice on 2024-10-27: only the first one fires.
    first = next_after("0 30 2 * * *", at(2024, 10, 26, 12), "Europe/Prague")
    assert first == at(2024, 10, 27, 0, 30)
    assert next_after("0 30 2 * * *", first, "Europe/Prague") == at(2024, 10, 28, 1, 30)


def test_windows_time_zone_names_are_refused() -> None:
    with pytest.raises(HostConfigError):
        time_zone("Central Europe Standard Time")


def test_field_expansion() -> None:
    assert parse_field("*/20", 0, 59, {}, "s") == {0, 20, 40}
    assert parse_field("1-10/3,59", 0, 59, {}, "s") == {1, 4, 7, 10, 59}
    assert parse_field("SAT,sun", 0, 6, {"SUN": 0, "SAT": 6}, "dow") == {0, 6}


@pytest.mark.parametrize(
    "expression",
    [
        "* * * * *  * *",
        "* * * *",
        "60 * * * * *",
        "* * 24 * * *",
        "* * * 0 * *",
        "* * * * 13 *",
        "* * * * * 7",
        "*/0 * * * * *",
        "5-1 * * * * *",
        "a * * * * *",
        "1,,2 * * * * *",
    ],
)
def test_invalid_expressions_are_refused(expression: str) -> None:
    with pytest.raises(HostConfigError):
        CronSchedule.parse(expression)


def test_expression_that_never_fires_is_refused() -> None:
    with pytest.raises(HostConfigError, match="never fires"):
        next_after("0 0 0 30 2 *", at(2024, 1, 1))


def test_timespan_schedule_is_an_interval() -> None:
    schedule = parse_schedule("00:00:30")
    assert isinstance(schedule, IntervalSchedule)
    assert schedule.next_after(at(2024, 1, 1)) == at(2024, 1, 1, 0, 0, 30)
    assert isinstance(parse_schedule("0 */5 * * * *"), CronSchedule)


def test_catch_up_collapses_missed_occurrences_into_the_latest() -> None:
    every_second = CronSchedule.parse("* * * * * *")
    start = at(2024, 1, 1, 0, 0, 0)
    # Nothing missed: simply the next one.
    assert catch_up(every_second, start, start + timedelta(milliseconds=500)) == at(
        2024, 1, 1, 0, 0, 1
    )
    # A run that took 10.5 s: one catch-up run for 00:00:10, not ten.
    assert catch_up(every_second, start, start + timedelta(seconds=10.5)) == at(
        2024, 1, 1, 0, 0, 10
    )
