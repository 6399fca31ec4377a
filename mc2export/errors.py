"""The one exception type for user mistakes: the CLI prints its message as one line and exits non-zero."""


class UserError(Exception):
    """A problem the user can fix (bad file, wrong variant, missing dependency); the message says how."""
