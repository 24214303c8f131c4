"""CloudViz: a SageMaker Pipelines MLOps project that also runs on one machine."""
