"""User-facing errors: one line saying what went wrong and what to do."""


class AuditError(Exception):
    """An error the user can act on. The CLI prints it as one line and exits 2."""

    exit_code = 2
