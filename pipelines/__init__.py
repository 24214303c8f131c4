"""The pipeline: its declaration, the local runner and the model registry."""
