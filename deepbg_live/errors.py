"""The one exception type users see: a single line that says what went wrong and what to do."""


class UserError(Exception):
    """A problem caused by the user's input or machine, shown by the CLI as one line, no traceback.

    The message should name the thing at fault and end with what to do, e.g.
    ``"camera 3 could not be opened; list cameras with `v4l2-ctl --list-devices` or try --camera 0"``.
    """


def first_line(exc: BaseException) -> str:
    """The start of an exception's message, short enough for a one-line UserError."""
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def os_reason(exc: BaseException) -> str:
    """The operating system's words for an error (``strerror``) when it has them, else its first line."""
    return getattr(exc, "strerror", None) or first_line(exc)


class WriteFailed(UserError):
    """An output failed part way (a full disk, a lost drive): one line that says what was kept.

    The CLI exits 1 for it, not 2 as for a refused command: the job had started, and its output is
    incomplete.
    """
