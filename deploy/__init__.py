"""Deployment: endpoints, the local API gateway, CloudFormation stacks, monitoring (the serving issues)."""
