"""The one error type that reaches the user as a single line."""


class Cancelled(Exception):
    """Work stopped because whoever asked for it no longer wants the result."""


class UserError(Exception):
    """A problem with the user's input (a file, a key, a value, a model name).

    Its message is one line that names what was wrong; the CLI prints it and exits non-zero,
    the TUI shows it as a notice.
    """
