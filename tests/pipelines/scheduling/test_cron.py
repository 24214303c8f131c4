from datetime import UTC, datetime

import pytest

from pipelines.errors import UserError
from pipelines.scheduling.cron import CronExpression, to_eventbridge

FRIDAY = datetime(2024, 5, 3, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("0 3 * * *", datetime(2024, 5, 4, 3, 0, tzinfo=UTC)),
    ("*/15 * * * *", datetime(2024, 5, 3, 10, 15, tzinfo=UTC)),
    ("0 9 * * MON-FRI", datetime(2024, 5, 6, 9, 0, tzinfo=UTC)),
    ("0 0 * * 7", datetime(2024, 5, 5, 0, 0, tzinfo=UTC)),
    ("30 2 1 * *", datetime(2024, 6, 1, 2, 30, tzinfo=UTC)),
    ("0 12 29 feb *", datetime(2028, 2, 29, 12, 0, tzinfo=UTC)),
    ("0 0 13 * FRI", datetime(2024, 5, 10, 0, 0, tzinfo=UTC)),  # both day fields: either matches, as cron does
    ("0 0 1 * 0-6", datetime(2024, 5, 4, 0, 0, tzinfo=UTC)),  # ... so every day here
    ("0 0 */2 * MON", datetime(2024, 5, 13, 0, 0, tzinfo=UTC)),  # a field starting with '*' is no restriction
])
def test_next_after(text, expected):
    assert CronExpression.parse(text).next_after(FRIDAY) == expected


def test_due_between_excludes_the_start_and_includes_the_end():
    due = CronExpression.parse("0 3 * * *").due_between(datetime(2024, 5, 1, 3, 0, tzinfo=UTC),
                                                          datetime(2024, 5, 4, 3, 0, tzinfo=UTC))
    assert [moment.day for moment in due] == [2, 3, 4]


@pytest.mark.parametrize(("text", "field"), [
    ("61 * * * *", "minute"), ("* 24 * * *", "hour"), ("* * 0 * *", "day-of-month"), ("* * * 13 *", "month"),
    ("* * * * FOO", "day-of-week"), ("5-1 * * * *", "minute"), ("*/0 * * * *", "minute"),
    ("0 0 30 2 *", "day-of-month"), ("* * * *", "5 fields"),
])
def test_errors_name_the_field(text, field):
    with pytest.raises(UserError, match=field):
        CronExpression.parse(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("0 3 * * *", "cron(0 3 * * ? *)"),
    ("0 9 * * MON-FRI", "cron(0 9 ? * 2-6 *)"),  # EventBridge counts SUN=1
    ("0 0 * * 0", "cron(0 0 ? * 1 *)"),
    ("0 0 * * 7", "cron(0 0 ? * 1 *)"),
    ("0 0 * * SAT,SUN", "cron(0 0 ? * 1,7 *)"),
    ("0 0 * * 5-7", "cron(0 0 ? * 1,6,7 *)"),
    ("*/15 */6 * * *", "cron(0/15 0/6 * * ? *)"),
    ("30 2 1,15 JAN-MAR *", "cron(30 2 1,15 1-3 ? *)"),
    ("0 0 * * */2", "cron(0 0 ? * 1,3,5,7 *)"),  # EventBridge's day-of-week takes no '/'
    ("0 0 */2 * *", "cron(0 0 1/2 * ? *)"),
    ("0 0 1-31 * MON", "cron(0 0 * * ? *)"),  # both restricted: either matches, and day-of-month matches every day
    ("0 0 1 * 0-6", "cron(0 0 * * ? *)"),
])
def test_to_eventbridge(text, expected):
    assert to_eventbridge(text) == expected


def test_to_eventbridge_refuses_both_day_fields():
    with pytest.raises(UserError, match="day-of-week"):
        to_eventbridge("0 0 1 * MON")
