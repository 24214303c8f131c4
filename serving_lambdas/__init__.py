"""Serving Lambda handlers (inference, retrieve) and the prediction store; boto3 and stdlib only."""
