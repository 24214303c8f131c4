"""Blue/green model replacement: the new model must answer a probe before it takes traffic.

A request reads ``slot.current`` once and keeps that reference until it has answered, so a swap never
fails or mixes models within a request; the old model is freed when its last request is done.
"""

from __future__ import annotations

import threading

import numpy as np

from deploy.endpoint.errors import SwapRefused
from deploy.endpoint.model import ServingModel


def smoke_test(model: ServingModel) -> None:
    """Predict on an all-zero probe row and check the answer's shape and values; SwapRefused says what is wrong."""
    if model.num_features < 1:
        raise SwapRefused("the model has no features")
    probe = np.zeros((1, model.num_features), dtype=np.float32)
    try:
        output = np.asarray(model.predict(probe))
    except Exception as error:  # any failure to predict disqualifies the model, whatever raised it
        raise SwapRefused(f"the probe prediction failed: {str(error).strip().splitlines()[0]}") from None
    expected = (1, model.num_class) if model.objective == "multi:softprob" else (1,)
    if output.shape != expected:
        raise SwapRefused(f"the probe prediction has shape {output.shape}, expected {expected} for {model.objective}")
    if not np.all(np.isfinite(output)):
        raise SwapRefused(f"the probe prediction is not a finite number: {output.tolist()}")
    if model.objective == "multi:softmax" and not 0 <= output[0] < model.num_class:
        raise SwapRefused(f"the probe prediction {output[0]:g} is not a class index in [0, {model.num_class})")


class ModelSlot:
    """The model an endpoint serves; ``swap`` replaces it only with a model that passed the smoke test."""

    def __init__(self, model: ServingModel | None = None) -> None:
        self._lock = threading.Lock()  # one swap at a time; readers never take it
        self.current: ServingModel | None = None
        if model is not None:
            self.swap(model)

    def swap(self, model: ServingModel) -> ServingModel | None:
        """Smoke-test ``model``, then make it current in one assignment; returns the model it replaced."""
        with self._lock:
            smoke_test(model)
            previous, self.current = self.current, model
            return previous
