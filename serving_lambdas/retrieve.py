"""GET /predictions (a page of stored predictions, newest first) and GET /predictions/{id} (one of them).

A page is fetched with one more item than asked: when it comes, there is a next page, and its token goes in
the ``X-Next-Token`` header (absent on the last page). The answer is a JSON array, as the original API's was.
"""

from __future__ import annotations

from serving_lambdas.config import store_spec
from serving_lambdas.listing import QueryError, parse_query
from serving_lambdas.responses import error_response, json_response
from serving_lambdas.store import open_store


def handler(event: dict, context: object) -> dict:
    store = open_store(store_spec())
    prediction_id = (event.get("pathParameters") or {}).get("id")
    if prediction_id is not None:
        record = store.get(prediction_id)
        if record is None:
            return error_response(404, f"no prediction with id {prediction_id}")
        return json_response(200, record.document())
    try:
        query = parse_query(event)
    except QueryError as error:
        return error_response(400, str(error))
    records = store.newest(query.limit + 1, query.lower, query.upper)
    page = records[: query.limit]
    headers = {"X-Next-Token": query.next_token(page[-1].id)} if len(records) > query.limit else {}
    return json_response(200, [record.document() for record in page], headers)
