"""The process's open-file budget: how many client connections its HTTP servers may hold in all.

The usual soft limit of 1,024 descriptors is far below what a server needs and what the hard limit allows, and a
process that runs out of descriptors fails everywhere at once (accept, its databases, its logs). So the soft limit
is raised to the hard one, once per process, and connections get only what is left after a reserve.
"""

from __future__ import annotations

import functools
import logging
import resource

# Kept back for what is not a connection: the listening sockets, logs, the registry, deployment and alarm
# databases, the sockets of outgoing calls (the API calls the endpoint), lingering closes, imports.
RESERVED_DESCRIPTORS = 128
# A connection's socket, plus the SQLite database and its WAL that the thread serving it may open (the prediction
# store keeps a connection per thread).
DESCRIPTORS_PER_CONNECTION = 3
_CEILING = 1 << 20  # what to ask for when the hard limit is unlimited (Linux refuses more than nr_open, 2**20)

logger = logging.getLogger(__name__)


@functools.cache
def connection_budget() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (once per process), then return how many connections
    the process's servers may hold together: the soft limit less the reserve, per connection's descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = _CEILING if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as error:  # e.g. macOS caps it lower than its unlimited hard limit
            logger.warning("cannot raise the open-file limit from %d to %d: %s", soft, wanted, error)
    if soft == resource.RLIM_INFINITY:
        soft = _CEILING
    return max(1, (soft - RESERVED_DESCRIPTORS) // DESCRIPTORS_PER_CONNECTION)
