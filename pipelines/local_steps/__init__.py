"""The step kinds the local runner executes and caches: processing and training scripts, and Register."""
