"""Limits on a JSON text checked before it is parsed: nesting depth and number length.

``json.loads`` recurses once per level (a deep enough array raises RecursionError, a 5xx) and turns every integer
into an ``int`` (4,300 digits or more raise ValueError). A body past either limit is refused with a message naming
the limit, before any parsing. Shared by the API's reader (``serving_lambdas.payload``) and the endpoint's
(``deploy.endpoint.decoding``); standard library only, as the Lambda package is.
"""

from __future__ import annotations

import re
from itertools import accumulate

MAX_DEPTH = 32  # arrays and objects inside one another; every accepted body needs 3
MAX_NUMBER_LENGTH = 100  # characters; a float32 needs at most ~16 digits, a double's repr 24 characters
# A string from its opening quote to its closing one, or to the end of an unterminated one (where the parser stops
# too). Possessive: every character is read once, whatever the quotes and backslashes (no backtracking).
STRING = re.compile(r'"(?:[^"\\]++|\\.?)*+(?:"|\Z)', re.DOTALL)
NOT_BRACKETS = bytes(set(range(128)) - set(b"[]{}"))  # deleted by bytes.translate, at C speed
DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
# Outside strings, a run of these characters can only be a number (or invalid JSON); tried from where a run
# starts only, so each character is read about once.
LONG_NUMBER = re.compile(rf"(?<![-+.0-9eE])[-+.0-9eE]{{{MAX_NUMBER_LENGTH + 1}}}")


class JsonLimitError(ValueError):
    """The text is past a limit; the message names it."""


def check_json_limits(text: str) -> None:
    """Raise ``JsonLimitError`` if ``text`` nests arrays and objects deeper than ``MAX_DEPTH`` or holds a number
    longer than ``MAX_NUMBER_LENGTH`` characters (strings, whatever they hold, are skipped)."""
    outside = STRING.sub('""', text)
    if LONG_NUMBER.search(outside):
        raise JsonLimitError(f"the body has a number longer than {MAX_NUMBER_LENGTH} characters")
    # The deepest point of the running count of open arrays and objects, all in C: a megabyte of brackets costs
    # about what parsing it does (outside strings, valid JSON is ASCII; other characters cannot be brackets).
    brackets = outside.encode("ascii", "ignore").translate(None, NOT_BRACKETS)
    if max(accumulate(map(DEPTH_STEP.__getitem__, brackets)), default=0) > MAX_DEPTH:
        raise JsonLimitError(f"the body has JSON nested deeper than {MAX_DEPTH} levels")
