"""NCRONTAB schedules as the timer trigger reads them (six fields, seconds first), TimeSpans."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from localdev.funchost.config import HostConfigError, parse_timespan

_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]

# (name, low, high, names mapped to values)
_FIELDS: list[tuple[str, int, int, dict[str, int]]] = [
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day", 1, 31, {}),
    ("month", 1, 12, {name: i + 1 for i, name in enumerate(_MONTHS)}),
    ("day of week", 0, 6, {name: i for i, name in enumerate(_DAYS)}),
]

# Give up on expressions such as "0 0 0 30 2 *" that never fire.
_HORIZON_YEARS = 30


class Schedule(Protocol):
    """Anything that can say when a timer fires next."""

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after an aware moment, as an aware UTC datetime."""
        ...


def _value(token: str, low: int, high: int, names: dict[str, int], field: str) -> int:
    upper = token.upper()
    if upper in names:
        return names[upper]
    if not token.isdigit():
        raise HostConfigError(f"NCRONTAB {field}: {token!r} is not a number or a name")
    number = int(token)
    if not low <= number <= high:
        raise HostConfigError(f"NCRONTAB {field}: {number} is outside {low}-{high}")
    return number


def parse_field(
    text: str, low: int, high: int, names: dict[str, int], field: str
) -> frozenset[int]:
    """Expand one field ("*", "*/5", "1-5", "MON-FRI", "0,30", "10/15") into its values."""
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise HostConfigError(f"NCRONTAB {field}: empty list item in {text!r}")
        base, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise HostConfigError(f"NCRONTAB {field}: bad step in {item!r}")
            step = int(step_text)
        if base == "*":
            start, stop = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start = _value(first, low, high, names, field)
            stop = _value(last, low, high, names, field)
            if stop < start:
                raise HostConfigError(f"NCRONTAB {field}: range {base!r} runs backwards")
        else:
            start = _value(base, low, high, names, field)
            # "a/step" means from a to the end of the range, stepping (NCrontab's reading).
            stop = high if step_text else start
        values.update(range(start, stop + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    """A six-field NCRONTAB expression (five fields get second 0), evaluated in one time zone."""

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    zone: tzinfo = UTC

    @classmethod
    def parse(cls, expression: str, zone: tzinfo = UTC) -> CronSchedule:
        """Parse an expression; raises HostConfigError for anything the host would reject."""
        fields = expression.split()
        if len(fields) == 5:
            fields = ["0", *fields]
        if len(fields) != 6:
            raise HostConfigError(
                f"NCRONTAB {expression!r}: expected six fields "
                "(second minute hour day month day-of-week)"
            )
        parsed = [
            parse_field(text, low, high, names, name)
            for text, (name, low, high, names) in zip(fields, _FIELDS, strict=True)
        ]
        seconds, minutes, hours, days, months, weekdays = parsed
        return cls(expression, seconds, minutes, hours, days, months, weekdays, zone)

    def _next_local(self, start: datetime) -> datetime:
        """First matching wall-clock time at or after a naive local time."""
        t = start
        limit = start.year + _HORIZON_YEARS
        while t.year <= limit:
            if t.month not in self.months:
                t = datetime(t.year + t.month // 12, t.month % 12 + 1, 1)  # noqa: DTZ001
                continue
            # NCrontab requires both day of month and day of week to match (not cron's "or").
            if t.day not in self.days or (t.weekday() + 1) % 7 not in self.weekdays:
                t = datetime(t.year, t.month, t.day) + timedelta(days=1)  # noqa: DTZ001
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0, second=0) + timedelta(hours=1)
                continue
            if t.minute not in self.minutes:
                t = t.replace(second=0) + timedelta(minutes=1)
                continue
            later = [s for s in self.seconds if s >= t.second]
            if later:
                return t.replace(second=min(later))
            t = t.replace(second=0) + timedelta(minutes=1)
        raise HostConfigError(f"NCRONTAB {self.expression!r} never fires")

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after an aware moment, as an aware UTC datetime."""
        local = moment.astimezone(self.zone).replace(tzinfo=None, microsecond=0)
        candidate = self._next_local(local + timedelta(seconds=1))
        # A wall time skipped by a spring-forward jump fires just after the jump (fold=0).
        result = candidate.replace(tzinfo=self.zone).astimezone(UTC)
        if result <= moment:
            # An ambiguous wall time that already passed in its first fold: take the next one.
            return self.next_after(result + timedelta(seconds=1))
        return result


@dataclass(frozen=True)
class IntervalSchedule:
    """A TimeSpan schedule ("00:05:00"): fires every interval after the previous occurrence."""

    interval: timedelta

    def next_after(self, moment: datetime) -> datetime:
        """One interval after a moment."""
        return moment.astimezone(UTC) + self.interval


def time_zone(name: str | None) -> tzinfo:
    """WEBSITE_TIME_ZONE as Linux apps use it (an IANA name); empty means UTC."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise HostConfigError(
            f"WEBSITE_TIME_ZONE={name!r}: only IANA names (e.g. Europe/Prague) work locally"
        ) from error


def parse_schedule(text: str, zone: tzinfo = UTC) -> Schedule:
    """An NCRONTAB expression, or a TimeSpan interval when the text has no spaces and has colons."""
    stripped = text.strip()
    if " " not in stripped and ":" in stripped:
        interval = parse_timespan(stripped)
        if interval <= timedelta(0):
            raise HostConfigError(f"timer interval {text!r} must be positive")
        return IntervalSchedule(interval)
    return CronSchedule.parse(stripped, zone)
