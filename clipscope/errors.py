"""One exception type for every problem the user can fix.

The CLI prints it as a single line ``Error: <message>`` and exits with code 1; the message
names the problem and what to do about it.
"""


class ClipscopeError(Exception):
    """A user-facing error: bad input, missing weights, incompatible caches, ..."""


class UsageError(ClipscopeError):
    """Options that do not go together or are missing; the CLI exits with code 2 for it."""
