"""Errors a user can cause: shown as one line, never as a traceback."""


class UserError(Exception):
    """Bad input from the user (a parameter, a file, a name); the message says which and why."""


class NotFoundError(UserError):
    """A run, model package or group that does not exist."""
