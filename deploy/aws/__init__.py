"""The AWS target: CloudFormation stacks generated from Python, the Lambda zip, and their deployment."""
