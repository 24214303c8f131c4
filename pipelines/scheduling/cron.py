"""Cron expressions, as ``crontab(5)`` writes them (minute hour day-of-month month day-of-week, in UTC), and their
EventBridge Scheduler form for the AWS stacks.

Fields take ``*``, numbers, names (JAN-DEC, SUN-SAT), ranges ``a-b``, lists ``a,b`` and steps ``*/n``, ``a-b/n``.
Day-of-week counts 0-6 from Sunday (7 is Sunday too). When both day fields are restricted, a day matches either
(as cron does); EventBridge cannot say that, so :func:`to_eventbridge` refuses it.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pipelines.errors import UserError

MONTH_NAMES = {name.upper(): number for number, name in enumerate(calendar.month_abbr) if name}
DAY_NAMES = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}


@dataclass(frozen=True)
class Field:
    name: str
    low: int
    high: int
    names: dict[str, int]


FIELDS = (
    Field("minute", 0, 59, {}),
    Field("hour", 0, 23, {}),
    Field("day-of-month", 1, 31, {}),
    Field("month", 1, 12, MONTH_NAMES),
    Field("day-of-week", 0, 7, DAY_NAMES),
)
SEARCH_YEARS = 8  # a leap day on a given weekday recurs within 28 years, but 8 covers every expression we accept


def _number(text: str, field: Field, expression: str) -> int:
    value = field.names.get(text.upper()) if not text.isdigit() else int(text)
    if value is None or not field.low <= value <= field.high:
        names = f" or {min(field.names, key=field.names.get)}-{max(field.names, key=field.names.get)}" \
            if field.names else ""
        raise UserError(f"cron {expression!r}: {field.name} {text!r} is not {field.low}-{field.high}{names}")
    return value


def _values(text: str, field: Field, expression: str) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        if not span:
            raise UserError(f"cron {expression!r}: {field.name} has an empty item in {text!r}")
        if step_text and not (step_text.isdigit() and int(step_text) > 0):
            raise UserError(f"cron {expression!r}: {field.name} step {step_text!r} must be a whole number >= 1")
        if span == "*":
            low, high = field.low, field.high
        elif "-" in span:
            first, _, last = span.partition("-")
            low, high = _number(first, field, expression), _number(last, field, expression)
            if low > high:
                raise UserError(f"cron {expression!r}: {field.name} range {span!r} runs backwards")
        else:
            low = high = _number(span, field, expression)
            if step_text:
                high = field.high
        values.update(range(low, high + 1, int(step_text or 1)))
    return frozenset(values)


@dataclass(frozen=True)
class CronExpression:
    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0-6, Sunday 0
    days_restricted: bool  # not starting with "*": when both day fields are, a day matches either (as cron does)
    weekdays_restricted: bool

    @classmethod
    def parse(cls, text: str) -> CronExpression:
        """A UserError naming the field that is wrong."""
        parts = text.split()
        if len(parts) != len(FIELDS):
            raise UserError(f"cron {text!r}: expected 5 fields (minute hour day-of-month month day-of-week), "
                            f"got {len(parts)}")
        values = (_values(part, field, text) for part, field in zip(parts, FIELDS, strict=True))
        minutes, hours, days, months, weekdays = values
        expression = cls(" ".join(parts), minutes, hours, days, months, frozenset(day % 7 for day in weekdays),
                         days_restricted=not parts[2].startswith("*"),
                         weekdays_restricted=not parts[4].startswith("*"))
        if expression.weekdays_restricted or any(min(days) <= calendar.monthrange(2024, month)[1] for month in months):
            return expression
        raise UserError(f"cron {text!r}: day-of-month {parts[2]} never occurs in month {parts[3]}")

    def matches_day(self, moment: datetime) -> bool:
        day = moment.day in self.days
        weekday = (moment.weekday() + 1) % 7 in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return day or weekday
        return day and weekday

    def next_after(self, moment: datetime) -> datetime:
        """The first due time strictly after ``moment`` (UTC; a naive time is read as UTC)."""
        current = as_utc(moment).replace(second=0, microsecond=0) + timedelta(minutes=1)
        end = current + timedelta(days=366 * SEARCH_YEARS)
        while current < end:
            if current.month not in self.months:
                current = (current.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
            elif not self.matches_day(current):
                current = current.replace(hour=0, minute=0) + timedelta(days=1)
            elif current.hour not in self.hours:
                current = current.replace(minute=0) + timedelta(hours=1)
            elif current.minute not in self.minutes:
                current += timedelta(minutes=1)
            else:
                return current
        raise UserError(f"cron {self.text!r}: never due within {SEARCH_YEARS} years of {moment.isoformat()}")

    def due_times(self, after: datetime) -> Iterator[datetime]:
        moment = as_utc(after)
        while True:
            moment = self.next_after(moment)
            yield moment

    def due_between(self, after: datetime, until: datetime) -> list[datetime]:
        """The due times in (``after``, ``until``], oldest first."""
        due = []
        for moment in self.due_times(after):
            if moment > as_utc(until):
                return due
            due.append(moment)
        return due


def as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def compact(values: frozenset[int], low: int, high: int, steps: bool = True) -> str:
    """EventBridge text for a set of values: ``*``, ``start/step`` (when ``steps``: EventBridge's day-of-week
    takes none), or ranges and single values."""
    ordered = sorted(values)
    if ordered == list(range(low, high + 1)):
        return "*"
    step = ordered[1] - ordered[0] if steps and len(ordered) > 2 else 0
    if step > 1 and ordered == list(range(ordered[0], high + 1, step)):
        return f"{ordered[0]}/{step}"
    runs: list[list[int]] = []
    for value in ordered:
        if runs and value == runs[-1][-1] + 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    return ",".join(f"{run[0]}-{run[-1]}" if len(run) > 2 else ",".join(map(str, run)) for run in runs)


def to_eventbridge(text: str) -> str:
    """``cron(minutes hours day-of-month month day-of-week year)`` for EventBridge Scheduler: one of the day fields
    is ``?`` and day-of-week counts 1-7 from Sunday (SUN=1)."""
    expression = CronExpression.parse(text)
    every_day, every_weekday = len(expression.days) == 31, len(expression.weekdays) == 7
    if expression.days_restricted and expression.weekdays_restricted and (every_day or every_weekday):
        days, weekdays = "*", "?"  # a day matches either field, and one of them matches every day
    elif every_weekday:
        days, weekdays = compact(expression.days, 1, 31), "?"
    elif every_day:
        days, weekdays = "?", compact(frozenset(day + 1 for day in expression.weekdays), 1, 7, steps=False)
    else:
        raise UserError(f"cron {text!r}: day-of-week: EventBridge cannot schedule on a day of the month and a day "
                        "of the week at once; restrict only one of them (the other '*')")
    minutes, hours = compact(expression.minutes, 0, 59), compact(expression.hours, 0, 23)
    return f"cron({minutes} {hours} {days} {compact(expression.months, 1, 12)} {weekdays} *)"
