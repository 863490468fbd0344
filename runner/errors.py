"""The one exception tree of glmrun, and the exit codes it maps to.

::

    GlmrunError (1)            ends the run; str(exc) is one line for people
    ├── ConfigError (2)        bad YAML, unknown key, wrong type, unset key variable
    ├── ApiStopped (3)         auth, arrears, quota, model unavailable: retrying cannot help
    ├── RunLocked (75)         another run holds the output lock (message names its pid)
    ├── ComeBackLater (75)     batches still running (--no-wait, batch.max_wait_s)
    ├── Unreachable (75)       the API host refuses or does not resolve at start; nothing sent
    └── OutputError (1)        the output or lock cannot be read or written (disk full, a folder)

    Interrupted (130/143/129)  SIGINT / SIGTERM / SIGHUP after a clean flush

Per-URL failures are data (``ApiFailure`` -> an error record), never one of these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.core.stats import JobStats

EXIT_OK = 0
EXIT_SOME_ERRORS = 1
EXIT_CONFIG = 2
EXIT_API_STOPPED = 3
EXIT_TEMPFAIL = 75
EXIT_SIGINT = 130
EXIT_SIGTERM = 143
EXIT_SIGHUP = 129


class GlmrunError(Exception):
    """Ends the run; str(exc) is shown to the user as a single line."""

    exit_code = EXIT_SOME_ERRORS


class ConfigError(GlmrunError):
    """The config file or the command line is wrong; nothing was sent."""

    exit_code = EXIT_CONFIG


class ApiStopped(GlmrunError):
    """The API refused the account (auth, arrears, quota, model): retrying cannot help."""

    exit_code = EXIT_API_STOPPED

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.status = status


class RunLocked(GlmrunError):
    """Another glmrun process holds the output lock."""

    exit_code = EXIT_TEMPFAIL


class ComeBackLater(GlmrunError):
    """Work is tracked and still running remotely; the next run collects it."""

    exit_code = EXIT_TEMPFAIL
    stats: JobStats | None = None  # the batch job's counts so far, set where it is raised
    asked = False  # True when the user asked for it (--no-wait, batch.max_wait_s): -q hides it


class Unreachable(GlmrunError):
    """The API host cannot be reached at start (refused, DNS); nothing was sent or recorded."""

    exit_code = EXIT_TEMPFAIL


class OutputError(GlmrunError):
    """The output file or its lock cannot be opened, read or written (disk full, a folder...)."""


class Interrupted(GlmrunError):
    """Stopped by a signal after writing what was in hand."""

    def __init__(self, signame: str = "SIGINT", remote: str = "", *, what: str = ""):
        """``remote``: what keeps running on the API after the process ends (batches), with
        what to do about it; a person who pressed Ctrl-C must not think everything stopped.
        ``what``: for a command that sends nothing (a dry run, status, export), what the stop
        left, instead of results saved."""
        then = f"; {remote}" if remote else ", run again to resume"
        text = f"interrupted by {signame}; results so far are saved{then}"
        if what:
            text = f"interrupted by {signame} ({what})"
        super().__init__(text)
        self.signame = signame
        codes = {"SIGTERM": EXIT_SIGTERM, "SIGHUP": EXIT_SIGHUP}
        self.exit_code = codes.get(signame, EXIT_SIGINT)


class ApiFailure(Exception):
    """One failed API call, as data: HTTP status, GLM business code, message, Retry-After.

    Raised by ``client.py`` and classified by ``retry.classify``; never reaches the user as a
    traceback. ``kind`` names failures that have no status: "timeout", "connection",
    "bad_json", "no_choices", "finish_network_error", "finish_sensitive".
    """

    def __init__(
        self,
        status: int | None,
        code: str | None,
        message: str,
        *,
        retry_after_s: float | None = None,
        kind: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s
        self.kind = kind

    def __repr__(self) -> str:
        return (
            f"ApiFailure(status={self.status!r}, code={self.code!r}, kind={self.kind!r}, "
            f"message={self.message[:80]!r})"
        )
