"""``cloudviz.local()`` and ``cloudviz.aws()``: a project on either target (its modules load when asked for)."""

from __future__ import annotations

from pathlib import Path

from cloudviz.api.base import Project


def local(home: str | Path | None = None) -> Project:
    """The project on this machine, its state in ``home`` (default ``$CLOUDVIZ_HOME``, else ./.cloudviz)."""
    from cloudviz.api.local import LocalProject

    return LocalProject(home)


def aws(region: str | None = None, bucket: str | None = None, role_arn: str | None = None, prefix: str = "cloudviz",
        config: str | Path | None = None, session: object | None = None) -> Project:
    """The project in an AWS account, with the default credential chain (or a boto3 ``session``). Missing arguments
    come from $AWS_REGION, $CLOUDVIZ_BUCKET and $CLOUDVIZ_SAGEMAKER_ROLE_ARN; ``config`` is the per-stage settings
    file (default ./cloudviz.toml when it exists)."""
    from cloudviz.api.aws import AwsProject

    return AwsProject(region, bucket, role_arn, prefix, config, session)
