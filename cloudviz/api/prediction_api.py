"""A client of a stage's prediction API (the local one or API Gateway's), the same on both targets: predict, read
stored predictions back, describe the live model. Standard library only, with no proxy (a local API is on this
machine; API Gateway needs none)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from pipelines.errors import CloudVizError, NotFoundError, UserError

TIMEOUT_SECONDS = 30.0
ROW_IDS = ("request_id", "sample_id")  # what a row may carry beside its features


@dataclass(frozen=True)
class PredictionPage:
    """One page of stored predictions, newest first; ``next_token`` asks for the next one (None: the last)."""

    predictions: list[dict]
    next_token: str | None = None


class PredictionApi:
    """The prediction API at ``url``, called with ``key`` in ``x-api-key``. A refused request (4xx) raises a
    UserError (NotFoundError for 404) carrying the API's message, which names the field at fault."""

    def __init__(self, url: str, key: str, timeout_seconds: float = TIMEOUT_SECONDS) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.timeout_seconds = timeout_seconds
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __repr__(self) -> str:
        return f"PredictionApi({self.url!r})"  # never the key

    def predict(self, rows: dict | list[dict]) -> dict | list[dict]:
        """One row (a dict of feature values by name) -> its prediction; a list of rows -> their predictions, in
        order. Every prediction is stored, with the ``id`` to read it back by."""
        if isinstance(rows, dict):
            ids = {name: rows[name] for name in ROW_IDS if name in rows}
            features = {name: value for name, value in rows.items() if name not in ROW_IDS}
            return self._call("POST", "/predictions", {"features": features, **ids})
        if not isinstance(rows, list) or not rows or not all(isinstance(row, dict) for row in rows):
            raise UserError("rows: expected a dict of feature values, or a non-empty list of them")
        return self._call("POST", "/predictions", {"instances": rows})["predictions"]

    def predictions(self, limit: int = 100, next_token: str | None = None) -> PredictionPage:
        """Stored predictions, newest first, at most ``limit`` (1-1000) per page."""
        query = {"limit": limit, **({"next_token": next_token} if next_token else {})}
        headers: dict[str, str] = {}
        rows = self._call("GET", f"/predictions?{urllib.parse.urlencode(query)}", headers_out=headers.update)
        return PredictionPage(rows, headers.get("x-next-token"))

    def prediction(self, prediction_id: str) -> dict:
        """One stored prediction by its id; NotFoundError if the store has none with that id."""
        return self._call("GET", f"/predictions/{urllib.parse.quote(prediction_id, safe='')}")

    def feedback(self, prediction_id: str, label: str | int | float) -> dict:
        """Record the true label of a stored prediction (a class name or index; a regression model's value) and
        return the prediction with it. A label is recorded once: a different one later is refused (UserError)."""
        return self._call("POST", f"/predictions/{urllib.parse.quote(prediction_id, safe='')}/feedback",
                          {"label": label})

    def model(self) -> dict:
        """The live model: its version, task, features and their ranges, classes or target, a request example."""
        return self._call("GET", "/model")

    def _call(self, method: str, path: str, body: object = None,
              headers_out: Callable[[dict[str, str]], None] | None = None) -> object:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"x-api-key": self.key, "Content-Type": "application/json"})
        try:
            with self._opener.open(request, timeout=self.timeout_seconds) as response:
                if headers_out is not None:
                    headers_out({name.lower(): value for name, value in response.headers.items()})
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            message = f"{method} {path.split('?')[0]}: {error.code} {api_message(error)}"
            if error.code == 404:
                raise NotFoundError(message) from None
            if error.code < 500:
                raise UserError(message) from None
            raise CloudVizError(f"the prediction API at {self.url} failed: {message}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise CloudVizError(f"the prediction API at {self.url} does not answer: {reason}") from None


def api_message(error: urllib.error.HTTPError) -> str:
    """The ``message`` of an error answer (the API's Error schema), else its body or reason."""
    text = error.read().decode("utf-8", "replace")
    try:
        return str(json.loads(text)["message"])
    except (ValueError, KeyError, TypeError):
        return text.strip() or str(error.reason)


@dataclass
class Serving:
    """A stage's prediction API, ready to call as ``serving.api``; ``close()`` (or leaving a ``with`` block) stops
    what the project started for it (locally, the endpoint and the API in this process; on AWS nothing)."""

    api: PredictionApi
    _close: Callable[[], None] = field(default=lambda: None, repr=False)

    def close(self) -> None:
        close, self._close = self._close, lambda: None
        close()

    def __enter__(self) -> Serving:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
