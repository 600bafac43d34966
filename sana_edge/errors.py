"""User-facing errors: one line naming the problem and the fix; the CLI maps them to exit code 2."""


class UserError(Exception):
    """Bad input from the user (paths, sizes, options, export folders). Message is one line."""

    exit_code = 2
