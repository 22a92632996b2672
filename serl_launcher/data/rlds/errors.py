"""The one error type of the RLDS package, so callers can catch bad datasets without catching bugs."""


class RLDSError(ValueError):
    """A dataset (or an episode handed to the writer) is missing, malformed or inconsistent.

    Messages start with the offending file or episode so a broken dataset can be found and fixed.
    """
