"""The errors cloudviz raises on purpose, one hierarchy for the Python API and the command line: each message
says what was wrong and how to put it right; the command line prints it as one line, never as a traceback."""


class CloudVizError(Exception):
    """The base of every error cloudviz raises on purpose."""


class UserError(CloudVizError):
    """Bad input from the user (a parameter, a file, a name); the message says which and why."""


class NotFoundError(UserError):
    """A run, model package, group, deployment or serve that does not exist."""


class AwsError(CloudVizError):
    """AWS refused or failed a call (credentials, permissions, limits, a stack that failed); the message carries
    AWS's own reason."""
