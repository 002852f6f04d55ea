"""One run at a time per output folder: a lock object that the running driver keeps fresh.

`.corpusmill/lock` in the output folder names its holder (host, pid, run id, start time) and is
created exclusively; a heartbeat thread refreshes it every few seconds. A second run finds it
and refuses, naming the holder. A lock left by a run that died (killed driver, lost machine)
must not block the rerun that finishes the job, so it is stale when its holder's process is
gone (same host) or its heartbeat is older than `STALE_AFTER_S` (any host).

Where it lives decides how exclusive it is:
- a local or mounted folder: `O_CREAT | O_EXCL` create, heartbeat by modification time;
- S3 (`s3://`, with boto3 installed): S3's conditional writes. Create with `If-None-Match: *`,
  heartbeat and release with `If-Match` on the lock's ETag, and a stale lock is taken over with
  `If-Match` on the stale ETag, so of two runs starting at once exactly one gets it;
- other object stores (gs://, ...), or S3 without boto3: best effort through pyarrow's
  filesystem: a fresh lock object refuses a second run, but two runs starting within the same
  second could both proceed (pyarrow exposes no conditional write). The README says so.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from datetime import datetime, timezone

from corpusmill.errors import JobError
from corpusmill.jobs.stores.output import LOCK, output_filesystem

log = logging.getLogger(__name__)
HEARTBEAT_S = 5.0
STALE_AFTER_S = 60.0


class OutputLock:
    """Context manager holding the output folder's lock for one run."""

    def __init__(self, output: str, run_id: str):
        self.output = output
        self.run_id = run_id
        self.store = lock_store(output)
        self.path = self.store.where
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "OutputLock":
        body = {"host": socket.gethostname(), "pid": os.getpid(), "run_id": self.run_id,
                "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self.store.prepare()
        if not self.store.create(body):
            holder, age = self.store.read()
            if holder is None or not _is_stale(holder, age):
                self._refuse(holder)
            if not self.store.take_over(body):  # the holder is gone; another run may race us
                self._refuse(self.store.read()[0])
        self._thread = threading.Thread(target=self._beat, name="corpusmill-lock", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        holder, _ = self.store.read()
        if holder is not None and holder.get("run_id") == self.run_id:
            self.store.release()
        self.store.cleanup()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                if not self.store.touch():
                    log.warning("lost the output lock %s to another run", self.path)
                    return
            except OSError as e:  # a blip of the store: try again next beat
                log.warning("could not refresh the output lock %s: %s", self.path, e)

    def _refuse(self, holder: dict | None) -> None:
        who = ("another run" if holder is None else
               f"run {holder.get('run_id')} (pid {holder.get('pid')} on {holder.get('host')}, "
               f"started {holder.get('started')})")
        raise JobError(f"output folder {self.output!r} is being written by {who}; two runs of a "
                       f"job cannot write at once. Wait for it to finish (a scheduled run can "
                       f"simply try again next time). If that run died, its lock goes stale "
                       f"within {STALE_AFTER_S:.0f} s, or remove {self.path}")


def _is_stale(holder: dict, age_s: float | None) -> bool:
    if holder.get("host") == socket.gethostname() and not _pid_alive(int(holder.get("pid", -1))):
        return True
    return age_s is None or age_s > STALE_AFTER_S


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


def lock_store(output: str):
    if "://" not in output:
        return LocalLock(output)
    if output.startswith("s3://"):
        import importlib.util

        if importlib.util.find_spec("boto3") is None:
            log.warning("boto3 is not installed: the lock on %s is best effort (pip install "
                        "boto3 for S3's conditional writes)", output)
        else:
            return S3Lock(output)
    return BestEffortLock(output)


class LocalLock:
    """`O_EXCL` create in a local or mounted folder; the heartbeat is the file's mtime."""

    def __init__(self, output: str):
        self.output = output
        self.where = os.path.join(output, LOCK)
        self._created_folder = False

    def prepare(self) -> None:
        if not os.path.isdir(self.output):
            os.makedirs(self.output, exist_ok=True)
            self._created_folder = True
        os.makedirs(os.path.dirname(self.where), exist_ok=True)

    def create(self, body: dict) -> bool:
        try:
            fd = os.open(self.where, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(body, f)
        return True

    def read(self) -> tuple[dict | None, float | None]:
        try:
            with open(self.where, encoding="utf-8") as f:
                holder = json.load(f)
            return holder, time.time() - os.stat(self.where).st_mtime
        except (FileNotFoundError, json.JSONDecodeError):
            return None, None

    def take_over(self, body: dict) -> bool:
        try:
            os.unlink(self.where)
        except FileNotFoundError:
            pass
        return self.create(body)

    def touch(self) -> bool:
        try:
            os.utime(self.where)
            return True
        except FileNotFoundError:
            return False

    def release(self) -> None:
        try:
            os.unlink(self.where)
        except FileNotFoundError:
            pass

    def cleanup(self) -> None:
        if not self._created_folder:
            return
        state = os.path.dirname(self.where)
        if os.path.isdir(state) and not os.listdir(state):
            os.rmdir(state)
        if os.path.isdir(self.output) and not os.listdir(self.output):
            os.rmdir(self.output)  # refused before writing anything: leave no trace


class S3Lock:
    """S3 conditional writes (If-None-Match / If-Match), through boto3 and the standard AWS
    credential chain (AWS_ENDPOINT_URL for S3-compatible stores)."""

    def __init__(self, output: str):
        import boto3

        bucket, _, prefix = output[len("s3://"):].partition("/")
        self.bucket = bucket
        self.key = f"{prefix.rstrip('/')}/{LOCK}".lstrip("/")
        self.where = f"s3://{bucket}/{self.key}"
        self.client = boto3.client("s3")
        self.etag: str | None = None
        self.body: dict | None = None

    def prepare(self) -> None:
        pass

    def create(self, body: dict) -> bool:
        return self._put(body, IfNoneMatch="*")

    def read(self) -> tuple[dict | None, float | None]:
        from botocore.exceptions import ClientError

        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as e:
            if _code(e) in ("NoSuchKey", "404"):
                return None, None
            raise _refused(self.where, e) from None
        self._seen_etag = got["ETag"]
        try:
            holder = json.loads(got["Body"].read())
        except ValueError:
            holder = {}
        return holder, time.time() - got["LastModified"].timestamp()

    def take_over(self, body: dict) -> bool:
        stale = getattr(self, "_seen_etag", None)
        return self._put(body, IfMatch=stale) if stale else self.create(body)

    def touch(self) -> bool:
        return self._put(self.body, IfMatch=self.etag)

    def release(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self.etag)
        except ClientError as e:
            log.warning("could not remove the output lock %s: %s", self.where, e)

    def cleanup(self) -> None:
        pass

    def _put(self, body: dict, **condition) -> bool:
        from botocore.exceptions import ClientError

        try:
            reply = self.client.put_object(Bucket=self.bucket, Key=self.key,
                                           Body=json.dumps(body).encode(), **condition)
        except ClientError as e:
            if _code(e) in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                return False
            raise _refused(self.where, e) from None
        self.etag, self.body = reply["ETag"], body
        return True


class BestEffortLock:
    """Check-then-write through pyarrow's filesystem: refuses a second run while a fresh lock
    object exists; not atomic (see the module docstring)."""

    def __init__(self, output: str):
        self.fs, root = output_filesystem(output)
        self.path = f"{root}/{LOCK}"
        self.where = f"{output.rstrip('/')}/{LOCK}"
        self.body: dict | None = None

    def prepare(self) -> None:
        pass

    def create(self, body: dict) -> bool:
        if self.read()[0] is not None:
            return False
        return self._write(body)

    def read(self) -> tuple[dict | None, float | None]:
        import pyarrow.fs as pafs

        info = self.fs.get_file_info(self.path)
        if info.type == pafs.FileType.NotFound:
            return None, None
        try:
            with self.fs.open_input_stream(self.path) as f:
                holder = json.loads(f.read())
        except (OSError, ValueError):
            return None, None
        age = None if info.mtime is None else time.time() - info.mtime.timestamp()
        return holder, age

    def take_over(self, body: dict) -> bool:
        return self._write(body)

    def touch(self) -> bool:
        holder, _ = self.read()
        if holder is None or holder.get("run_id") != (self.body or {}).get("run_id"):
            return False
        return self._write(self.body)

    def release(self) -> None:
        try:
            self.fs.delete_file(self.path)
        except OSError:
            pass

    def cleanup(self) -> None:
        pass

    def _write(self, body: dict) -> bool:
        with self.fs.open_output_stream(self.path) as f:
            f.write(json.dumps(body).encode())
        self.body = body
        return True


def _code(error) -> str:
    return str(error.response.get("Error", {}).get("Code", "")) if hasattr(error, "response") \
        else ""


def _refused(where: str, error) -> JobError:
    from corpusmill.errors import storage_error

    return storage_error(where, error, "write") or JobError(
        f"cannot use the output lock {where!r}: {error}")
