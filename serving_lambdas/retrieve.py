"""GET /predictions (a page of stored predictions, newest first) and GET /predictions/{id} (one of them).

A page is fetched with one more item than asked: when it comes, there is a next page, and its token goes in
the ``X-Next-Token`` header (absent on the last page). A page may also end short of ``limit`` with a token: the
DynamoDB store bounds what one page costs (``QUERY_BUDGET``) and says where it stopped; clients page on while
there is a token, as the API documents. The answer is a JSON array, as the original API's was.
"""

from __future__ import annotations

from serving_lambdas.config import store_spec
from serving_lambdas.listing import QueryError, parse_query
from serving_lambdas.responses import answers_cors, error_response, json_response
from serving_lambdas.store import open_store


@answers_cors
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
    page = store.page(query.limit + 1, query.lower, query.upper)
    shown = page.records[: query.limit]
    headers = {}
    if len(page.records) > query.limit:
        headers["X-Next-Token"] = query.next_token(shown[-1].id)
    elif page.resume_before is not None:  # the store's cost budget ran out first: the rest is below this bound
        headers["X-Next-Token"] = query.next_token(page.resume_before)
    return json_response(200, [record.document() for record in shown], headers)
