"""One exception type for every user-facing failure, so the CLI can print one line instead of a traceback."""


class KitError(Exception):
    """A problem the user can fix: bad input, a missing file, an impossible option."""


class Interrupted(Exception):  # noqa: N818  (not an error: the user asked for it)
    """Ctrl-C, with the line that says what was kept and how to go on."""
