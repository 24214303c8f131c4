"""Data sets: immutable, content-addressed versions of training data, on the local target and in S3."""
