"""The local model endpoint: SageMaker's built-in XGBoost hosting contract and the SageMaker Runtime API.

``ServingModel.load`` reads a registered ``model.tar.gz``; a ``ModelSlot`` holds the live model and swaps in
a new one blue/green; ``EndpointServer`` serves the slot over HTTP on 127.0.0.1.
"""

from deploy.endpoint.errors import ModelLoadError, SwapRefused
from deploy.endpoint.model import ServingModel
from deploy.endpoint.server import EndpointServer
from deploy.endpoint.slot import ModelSlot

__all__ = ["EndpointServer", "ModelLoadError", "ModelSlot", "ServingModel", "SwapRefused"]
