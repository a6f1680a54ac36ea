"""The project's error hierarchy. Only the CLI turns these into exit codes."""

from __future__ import annotations

import re

# A problem line longer than this is cut: a value echoed back from a hostile or generated spec
# (a YAML alias bomb, a megabyte string) must not flood the terminal.
MAX_PROBLEM_CHARS = 400
# The password of a URL anywhere in a text (`scheme://user:password@host`): a library's error
# message may quote the URL it was given, credentials and all (MLflow's do).
_URL_PASSWORD = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://[^\s/:@]*):[^\s/]*@")


def without_passwords(text: str) -> str:
    """`text` with the password of every URL in it shown as `***`, as the store's masked URLs
    are: for every message, line and log the orchestrator writes."""
    return _URL_PASSWORD.sub(r"\1:***@", text)


class GapsweepError(Exception):
    """Base of every error the orchestrator raises on purpose. No password of a URL quoted in
    its message survives (`without_passwords`)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(without_passwords(a) if isinstance(a, str) else a for a in args))


class InputError(GapsweepError):
    """Bad input from the user: a spec, an argument or a file. Exit code 2.

    Carries one message per problem so the CLI can print them one per line.
    """

    def __init__(self, problems: list[str] | str) -> None:
        given = [problems] if isinstance(problems, str) else list(problems)
        # One line per problem, whatever a library put into its message.
        self.problems = [_one_short_line(p) for p in given]
        super().__init__("\n".join(self.problems))


class SpecError(InputError):
    """A sweep spec that does not validate."""


class ServiceError(GapsweepError):
    """A service the run needs (Ray, MLflow, the results store) is unreachable. Exit code 1."""


class SweepBusyError(GapsweepError):
    """Another driver holds the sweep's lease. Exit code 1."""


class LeaseLostError(GapsweepError):
    """Another driver took the sweep's lease over from this one, which therefore writes
    nothing more and stops. Exit code 1."""


class SweepFailedError(GapsweepError):
    """The sweep ran but some trials failed. Exit code 1."""


def _one_short_line(problem: str) -> str:
    line = without_passwords(" ".join(problem.split()))
    if len(line) <= MAX_PROBLEM_CHARS:
        return line
    return f"{line[: MAX_PROBLEM_CHARS - 30]}... ({len(line)} characters, cut)"
