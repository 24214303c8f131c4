"""Local emulation of SageMaker's built-in XGBoost algorithm (training side)."""
