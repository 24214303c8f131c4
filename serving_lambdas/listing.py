"""The GET /predictions query: limit, since, until and next_token, checked, as bounds on prediction ids.

``next_token`` is opaque to clients: the last id of the previous page (or where the store stopped) and the query's
time bounds, ``<after_id>.<since>.<until>`` (a bound empty when not given), so that one regular expression
(``TOKEN``, also the OpenAPI document's pattern) says exactly which tokens are accepted. A token that does not
match it, or that belongs to other time bounds than the ones given beside it, is refused (400), never guessed
around.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from serving_lambdas.records import time_bound

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
PARAMETERS = ("limit", "since", "until", "next_token")
TIME_BOUND = r"[0-9]{8}T[0-9]{12}Z"  # time_bound()'s form; ids add -<16 hex digits>
# after_id, since and until, in the regular expression syntax Python and the OpenAPI document (ECMA 262) share.
TOKEN_PATTERN = rf"({TIME_BOUND}(?:-[0-9a-f]{{16}})?)\.({TIME_BOUND})?\.({TIME_BOUND})?"
TOKEN = re.compile(TOKEN_PATTERN)


class QueryError(ValueError):
    """A query parameter is unknown or invalid; the message names it."""


@dataclass(frozen=True)
class ListQuery:
    limit: int
    since: str | None  # time_bound() of since: ids >= it
    until: str | None  # time_bound() of until: ids < it
    after_id: str | None  # the previous page's last id, or where the store stopped: ids < it

    @property
    def lower(self) -> str:
        return self.since or ""

    @property
    def upper(self) -> str:
        return min(bound for bound in (self.until, self.after_id, "~") if bound is not None)

    def next_token(self, last_id: str) -> str:
        """The token of the page after the one ending with ``last_id``."""
        return f"{last_id}.{self.since or ''}.{self.until or ''}"


def parse_query(event: dict) -> ListQuery:
    """The query of a proxy event (every value of a repeated parameter counts: a repeat is an error)."""
    values = event.get("multiValueQueryStringParameters") or {
        name: [value] for name, value in (event.get("queryStringParameters") or {}).items()
    }
    for name, given in values.items():
        if name not in PARAMETERS:
            raise QueryError(f"unknown query parameter {name!r}: use {', '.join(PARAMETERS)}")
        if len(given) > 1:
            raise QueryError(f"query parameter {name} is given {len(given)} times")
    single = {name: given[0] for name, given in values.items()}
    since, until = _time(single, "since"), _time(single, "until")
    if since is not None and until is not None and since >= until:
        raise QueryError("since must be before until")
    query = ListQuery(_limit(single.get("limit")), since, until, None)
    if "next_token" in single:
        return _resume(query, single["next_token"])
    return query


def _limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    if not re.fullmatch(r"\d{1,4}", text) or not 1 <= int(text) <= MAX_LIMIT:
        raise QueryError(f"limit must be an integer from 1 to {MAX_LIMIT}, not {text!r}")
    return int(text)


def _time(values: dict[str, str], name: str) -> str | None:
    """An ISO-8601 time as an id bound; a time without a zone is UTC, as the original API's timestamps were. RFC
    3339's lower-case ``t`` and ``z`` are read too; a time that falls before year 1 or after 9999 once in UTC
    bounds nothing, so it is the earliest or latest bound."""
    if name not in values:
        return None
    try:
        moment = datetime.fromisoformat(values[name].upper())
    except ValueError:
        raise QueryError(f"{name} must be an ISO-8601 time like 2026-11-29T03:20:01Z, not {values[name]!r}") from None
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    try:
        return time_bound(moment)
    except OverflowError:
        return time_bound((datetime.min if moment.year == 1 else datetime.max).replace(tzinfo=UTC))


def _resume(query: ListQuery, token: str) -> ListQuery:
    match = TOKEN.fullmatch(token)
    if match is None:
        raise QueryError("next_token is not a token this API issued: pass the X-Next-Token header of the last page")
    after_id, since, until = match.groups()
    for name, bound in (("since", since), ("until", until)):
        given = getattr(query, name)
        if given is not None and given != bound:
            raise QueryError(f"next_token belongs to a query with another {name}: keep {name} as on the first page")
    return ListQuery(query.limit, since, until, after_id)
