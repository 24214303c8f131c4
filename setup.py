"""Packaging for CloudViz: one distribution, one console script (`cloudviz`)."""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="cloudviz",
    version="0.1.0",
    description="SageMaker Pipelines MLOps that also runs on one machine, with no AWS account and no Docker",
    long_description=(Path(__file__).parent / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(
        include=["cloudviz*", "pipelines*", "preprocessing*", "evaluation*", "deploy*", "serving_lambdas*"]
    ),
    install_requires=[
        # xgboost-cpu is the same library as xgboost without the NVIDIA NCCL wheel (~300 MB);
        # 3.0.5 is the version inside SageMaker's built-in XGBoost image 3.0-5, so model files
        # move between the two unchanged.
        "xgboost-cpu==3.0.5",
        "numpy>=1.26",
        "pandas>=2.1",
        "pyarrow>=15",
        "scikit-learn>=1.4",
        "boto3>=1.34",
        "prometheus-client>=0.20",
        "matplotlib>=3.8",
        # Only for the plotly.js it ships (package_data/plotly.min.js): the dashboard serves it, no CDN.
        "plotly>=6",
    ],
    extras_require={
        "aws": ["sagemaker>=3.27,<4"],
        "test": [
            "pytest>=8", "ruff>=0.6", "psutil>=5.9", "openapi-spec-validator>=0.7",
            # cloudformation: the deployer's tests (it pulls in moto's IAM, Lambda, API Gateway, SNS... models);
            # pinned to 5.2: tests/moto_cloudformation.py patches its internals where it differs from AWS.
            "moto[cloudformation,dynamodb,events,s3,sagemaker]>=5.2.5,<5.3",
            "vermin>=1.6",
            # Validates the generated CloudFormation templates offline (it ships the resource schemas).
            "cfn-lint>=1.20",
            "aiosmtpd>=1.4",
            # Runs every phase and check against the OpenAPI document the local API serves
            # (tests/deploy/test_schemathesis.py: its engine and events API are 4.x's).
            "schemathesis>=4.32,<5",
            # The SMTP TLS tests make their server's certificate (moto needs it too).
            "cryptography>=42",
            # Drives Debian's chromium (/usr/bin/chromium) in the dashboard's browser test; never `playwright install`.
            "playwright>=1.45",
            # Execute notebooks/walkthrough.ipynb in a kernel of the test's own Python
            # (tests/notebooks/test_notebooks.py).
            "nbclient>=0.10", "nbformat>=5.10", "ipykernel>=6.29",
        ],
    },
    package_data={"deploy": ["openapi.json", "postman/*.json", "dashboard/assets/*"]},
    entry_points={"console_scripts": ["cloudviz=cloudviz.cli:main"]},
)
