"""One exception type for every user-facing failure, so the CLI can print one line instead of a traceback."""


class KitError(Exception):
    """A problem the user can fix: bad input, a missing file, an impossible option."""
