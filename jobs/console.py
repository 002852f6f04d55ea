"""What a run prints: our progress display and summary, nothing else.

While a run executes, everything Ray writes (its loggers, Ray Data's execution plan and
progress dumps, warnings, worker output forwarded to the driver, and lines its C++ core writes
straight to file descriptors 1 and 2) goes to the run's log file. It is written to a local
temporary file and, once the run has started writing its output (the manifest exists), moved
to `<output>/.corpusmill/logs/<run_id>.log` at the end, whether the run succeeded or failed; a run refused
before any work leaves no trace in the output. `--verbose` leaves Ray's output on the terminal
as it is.

`RunConsole.term` is the terminal (a text stream) for the progress display."""
from __future__ import annotations

import io
import logging
import os
import shutil
import sys
import tempfile

from corpusmill import notices
from corpusmill.jobs.stores.output import LOG_DIR, output_filesystem, read_manifest

RAY_LOGGERS = ("ray", "ray.data", "ray.train", "ray.tune", "py.warnings")


class RunConsole:
    def __init__(self, output: str, run_id: str, verbose: bool = False, ray: bool = True):
        self.output = output
        self.run_id = run_id
        self.verbose = verbose
        self.ray = ray  # False: a run in this process (jobs/in_process.py), which imports no Ray
        self.term = sys.stderr
        self.log_path: str | None = None
        self._saved: list = []

    @property
    def is_tty(self) -> bool:
        try:
            return self.term.isatty()
        except (AttributeError, ValueError):
            return False

    def __enter__(self) -> "RunConsole":
        if self.verbose:
            return self
        handle, self.log_path = tempfile.mkstemp(prefix=f"corpusmill-{self.run_id}-",
                                                 suffix=".log")
        os.close(handle)
        log = open(self.log_path, "a", buffering=1, encoding="utf-8", errors="replace")
        self._log = log
        self._redirect_fds(log)
        self._saved.append(("sys", sys.stdout, sys.stderr))
        sys.stdout = sys.stderr = log
        self._route_loggers(log)
        self._saved.append(("notices", notices.sink, None))
        notices.sink = self.term
        self._saved.append(("warnings", logging.captureWarnings, None))
        logging.captureWarnings(True)
        if self.ray:
            self._quiet_ray_data()
        return self

    def __exit__(self, *exc) -> None:
        if self.verbose:
            return
        for kind, a, b in reversed(self._saved):
            if kind == "sys":
                for stream in (sys.stdout, sys.stderr):
                    try:
                        stream.flush()
                    except (OSError, ValueError):
                        pass
                sys.stdout, sys.stderr = a, b
            elif kind == "fd":
                os.dup2(b, a)
                os.close(b)
            elif kind == "logger":
                a.handlers = b[0]
                a.propagate = b[1]
            elif kind == "warnings":
                logging.captureWarnings(False)
            elif kind == "notices":
                notices.sink = a
        self._saved.clear()
        self._log.close()
        self._keep_in_output()

    def _redirect_fds(self, log) -> None:
        """Send fds 1 and 2 (where Ray's C++ core and child processes write) to the log, and
        keep the terminal for the display."""
        terminal = None
        for fd in (1, 2):
            try:
                if (sys.stdout if fd == 1 else sys.stderr).fileno() != fd:
                    continue
            except (AttributeError, ValueError, io.UnsupportedOperation):
                continue  # Python-level streams (a notebook, pytest's capsys): no fd to move
            saved = os.dup(fd)
            if fd == 2:
                terminal = saved
            os.dup2(log.fileno(), fd)
            self._saved.append(("fd", fd, saved))
        if terminal is not None:
            self.term = os.fdopen(os.dup(terminal), "w", buffering=1, encoding="utf-8",
                                  errors="replace", closefd=True)

    def _route_loggers(self, log) -> None:
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        for name in RAY_LOGGERS:
            logger = logging.getLogger(name)
            self._saved.append(("logger", logger, (list(logger.handlers), logger.propagate)))
            logger.handlers = [h for h in logger.handlers
                               if not isinstance(h, logging.StreamHandler)
                               or isinstance(h, logging.FileHandler)] + [handler]
            logger.propagate = False

    @staticmethod
    def _quiet_ray_data() -> None:
        """Ray Data's own progress bars and execution-start banner stay off the terminal (they
        would go to the log; our display replaces them)."""
        try:
            from ray.data import DataContext
        except ImportError:
            return
        context = DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False

    def _keep_in_output(self) -> None:
        """Move the log into the output's `.corpusmill/logs/` once the run has written there; a run refused
        before writing anything leaves nothing (its error message says why)."""
        try:
            fs, root = output_filesystem(self.output)
            if read_manifest(self.output) is None:
                os.unlink(self.log_path)
                self.log_path = None
                return
            fs.create_dir(f"{root}/{LOG_DIR}", recursive=True)
            with open(self.log_path, "rb") as source, \
                    fs.open_output_stream(f"{root}/{LOG_DIR}/{self.run_id}.log") as target:
                shutil.copyfileobj(source, target)
        except OSError:
            return  # the run's outcome matters more than its log; the local copy stays
        os.unlink(self.log_path)
        self.log_path = f"{self.output.rstrip('/')}/{LOG_DIR}/{self.run_id}.log"
