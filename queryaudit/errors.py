"""User-facing errors: one line saying what went wrong and what to do."""

import os
import sys


class AuditError(Exception):
    """An error the user can act on. The CLI prints it as one line and exits 2."""

    exit_code = 2


# What a shell reports for a tool that SIGPIPE stopped (128 + 13), as `seq 1 1000000 | head -1` does.
BROKEN_PIPE_EXIT = 141


def quiet_broken_pipe() -> int:
    """The reader of our output went away (`| head -1`): stop without a word, as other
    command-line tools do. stdout is pointed at /dev/null first, or the interpreter's own
    flush at exit would fail again and print "Exception ignored"."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout already closed or not a real file
        pass
    return BROKEN_PIPE_EXIT
