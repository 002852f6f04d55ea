"""How failures reach a user of the CLI: one line that names the problem and the fix, never a
Python traceback for an expected failure (`--debug` or CORPUSMILL_DEBUG=1 shows them, for bug
reports).

- Errors raised inside Ray tasks (a row under `on_error: raise`, a corrupt row group) arrive
  wrapped in Ray's task errors, whose message is the remote traceback as text (the exception
  object itself does not survive the trip): `user_error` finds our exception in that text.
- Ctrl-C and SIGTERM (a scheduler stopping the job) stop the run; the CLI then says what was
  committed and that rerunning the same command resumes. A second Ctrl-C while cleaning up
  exits at once.
"""
from __future__ import annotations

import os
import re
import signal
import sys
import traceback

from corpusmill.errors import JobError, RowError

DEBUG_ENV = "CORPUSMILL_DEBUG"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_OURS = re.compile(r"corpusmill\.errors\.(JobError|RowError): (.+)")
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


class Interrupted(KeyboardInterrupt):
    """The run was stopped by Ctrl-C (SIGINT) or SIGTERM."""

    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.signal_name = signal_name

    @property
    def exit_code(self) -> int:
        return EXIT_TERMINATED if self.signal_name == "SIGTERM" else EXIT_INTERRUPTED


def debug_enabled(flag: bool = False) -> bool:
    return flag or os.environ.get(DEBUG_ENV, "").strip() not in ("", "0", "false", "no")


def user_error(error: BaseException) -> JobError | RowError | None:
    """Our own JobError or RowError behind `error`: in its cause chain, or, for errors Ray
    carried back from a task, in the remote traceback's text."""
    seen, steps = error, 0
    while seen is not None and steps < 20:
        # Ray's task errors subclass the remote error's class (RayTaskError(JobError)) but
        # carry the whole remote traceback as their message: take only plain ones here
        if isinstance(seen, (JobError, RowError)) and not _from_ray(seen):
            return seen
        seen, steps = seen.__cause__ or seen.__context__ or getattr(seen, "cause", None), steps + 1
    found = _OURS.findall(_ANSI.sub("", str(error)))
    if found:
        kind, message = found[-1]
        return (JobError if kind == "JobError" else RowError)(message.strip())
    return None


def _from_ray(error: BaseException) -> bool:
    return any(cls.__module__.startswith("ray.") for cls in type(error).__mro__)


def describe(error: BaseException) -> str:
    """One line for an unexpected failure: the innermost error Ray reports, without Ray's
    frames and colour codes."""
    text = _ANSI.sub("", str(error)).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    for line in reversed(lines):  # the last "Type: message" line is the innermost error
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception): ", line.strip()):
            return line.strip()
    return f"{type(error).__name__}: {lines[0] if lines else error}"


def print_traceback(error: BaseException) -> None:
    traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)


class StopSignals:
    """During a command: SIGINT and SIGTERM raise `Interrupted` in the main thread (once);
    a second one while the run cleans up ends the process at once."""

    def __enter__(self) -> "StopSignals":
        self._previous = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._first)
        except ValueError:  # not the main thread (a notebook's worker thread): leave them
            self._previous = {}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _first(self, signum, frame):
        for sig in self._previous:
            signal.signal(sig, self._again)
        raise Interrupted(signal.Signals(signum).name)

    @staticmethod
    def _again(signum, frame):
        print("corpusmill: stopped", file=sys.stderr, flush=True)
        os._exit(EXIT_TERMINATED if signum == signal.SIGTERM else EXIT_INTERRUPTED)
