"""One run at a time per output folder: a lock file that the running driver keeps fresh.

`_corpusmill.lock` in the output folder is created exclusively (O_EXCL) and names its holder
(host, pid, run id, start time); a heartbeat thread touches it every few seconds. A second run
finds it and refuses, naming the holder. A lock left by a run that died (killed driver, lost
machine) must not block the rerun that finishes the job, so it is stale when its holder's
process is gone (same host) or its heartbeat is older than `STALE_AFTER_S` (any host, e.g. a
shared mount).

Object storage (s3://, gs://) has no exclusive create through pyarrow: there the lock is not
taken, and the scheduler must not start overlapping runs (README, "Scheduled runs")."""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from datetime import datetime, timezone

from corpusmill.errors import JobError
from corpusmill.operators.write import LOCK
HEARTBEAT_S = 5.0
STALE_AFTER_S = 60.0


class OutputLock:
    """Context manager holding the output folder's lock for one run."""

    def __init__(self, output: str, run_id: str):
        self.output = output
        self.path = os.path.join(output, LOCK)
        self.run_id = run_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._created_folder = False
        self.enabled = "://" not in output

    def __enter__(self) -> "OutputLock":
        if not self.enabled:
            return self
        if not os.path.isdir(self.output):
            os.makedirs(self.output, exist_ok=True)
            self._created_folder = True
        if not self._try_create():
            holder = _read(self.path)
            if holder is None or not _is_stale(self.path, holder):
                self._refuse(holder)
            os.unlink(self.path)  # the holder is gone: take over
            if not self._try_create():
                self._refuse(_read(self.path))
        self._thread = threading.Thread(target=self._beat, name="corpusmill-lock", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if not self.enabled:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        holder = _read(self.path)
        if holder is not None and holder.get("run_id") == self.run_id:
            os.unlink(self.path)
        if self._created_folder and os.path.isdir(self.output) and not os.listdir(self.output):
            os.rmdir(self.output)  # refused before writing anything: leave no trace

    def _try_create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump({"host": socket.gethostname(), "pid": os.getpid(), "run_id": self.run_id,
                       "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}, f)
        return True

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except FileNotFoundError:
                return

    def _refuse(self, holder: dict | None) -> None:
        who = ("another run" if holder is None else
               f"run {holder.get('run_id')} (pid {holder.get('pid')} on {holder.get('host')}, "
               f"started {holder.get('started')})")
        raise JobError(f"output folder {self.output!r} is being written by {who}; two runs of a "
                       f"job cannot write at once. Wait for it to finish (a scheduled run can "
                       f"simply try again next time). If that run died, its lock goes stale "
                       f"within {STALE_AFTER_S:.0f} s, or remove {self.path}")


def _read(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _is_stale(path: str, holder: dict) -> bool:
    if holder.get("host") == socket.gethostname():
        return not _pid_alive(int(holder.get("pid", -1)))
    try:
        return time.time() - os.stat(path).st_mtime > STALE_AFTER_S
    except FileNotFoundError:
        return True


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
