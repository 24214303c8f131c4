"""The errors of the local endpoint: each carries one line meant for the person who caused it."""

from __future__ import annotations

from deploy.http11 import HTTPError


class ModelLoadError(Exception):
    """A model artifact that cannot be served: missing, not a tarball, or no model XGBoost can load."""


class SwapRefused(Exception):
    """A new model failed its smoke test; the slot kept serving the model it had."""


class InvocationError(HTTPError):
    """A request the endpoint answers with a 4xx/5xx status and a one-line message, as the container does."""
