"""serving_lambdas/listing.py: every time RFC 3339 allows in since and until (the OpenAPI document's
``format: date-time``) is a bound, none a 5xx; and next_token is exactly what ``TOKEN`` matches."""

from __future__ import annotations

import pytest

from serving_lambdas.listing import ListQuery, QueryError, parse_query


def query(**values: str) -> ListQuery:
    return parse_query({"queryStringParameters": values})


@pytest.mark.parametrize(("given", "bound"), [
    ("0001-01-01T00:00:00+01:00", "00010101T000000000000Z"),  # before year 1 in UTC: the earliest bound
    ("9999-12-31T23:59:59-01:00", "99991231T235959999999Z"),  # after 9999 in UTC: the latest
    ("2026-11-29t03:20:01z", "20261129T032001000000Z"),  # RFC 3339's lower-case t and z
    ("2026-11-29T04:20:01.5+01:00", "20261129T032001500000Z"),
])
def test_a_time_at_the_edge_of_the_calendar_or_in_lower_case_is_a_bound(given: str, bound: str):
    assert query(since=given).since == bound
    assert query(until=given).until == bound


def test_a_token_is_the_last_id_and_the_bounds_and_nothing_else():
    first = query(since="2026-11-29T00:00:00Z")
    token = first.next_token("20261129T032001123456Z-3f9a2c7e1b5d0000")
    assert token == "20261129T032001123456Z-3f9a2c7e1b5d0000.20261129T000000000000Z."
    assert query(next_token=token) == ListQuery(50, first.since, None, "20261129T032001123456Z-3f9a2c7e1b5d0000")
    for forged in (token + "\n", token.replace("3", "\u0663"), token + ".", "x" + token, ".."):
        with pytest.raises(QueryError, match="next_token is not a token this API issued"):
            query(next_token=forged)
