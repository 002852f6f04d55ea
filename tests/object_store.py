"""A real S3 API on 127.0.0.1 for tests: moto's server in a subprocess, with IAM enforced, so
credentials and permissions are checked as S3 checks them.

Users: `admin` (s3:* on everything) and `reader` (list and get only); the bucket `corpus`
exists. `env(user)` is the standard AWS environment a job process needs (the endpoint
override, the user's keys, a region); `fs(user)` a pyarrow S3 filesystem for the test's own
reads and writes."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import free_port

BUCKET = "corpus"
# IAM calls the server accepts before it enforces authentication: exactly the set-up below
_SETUP_CALLS = 6


class MotoS3:
    """`log`: a file for the server's request log (one line per request, werkzeug's), read
    back by `requests`; None: no log kept."""

    def __init__(self, log: Path | None = None):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.keys: dict[str, tuple[str, str]] = {}
        self.proc: subprocess.Popen | None = None
        self.log = log

    def start(self) -> "MotoS3":
        env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(_SETUP_CALLS)}
        log = open(self.log, "ab") if self.log else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                env=env, stdout=subprocess.DEVNULL, stderr=log)
        finally:
            if self.log:
                log.close()
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("moto's S3 server did not start")
                time.sleep(0.2)
        self._create_users()
        self.client("admin").create_bucket(Bucket=BUCKET)
        return self

    def _create_users(self) -> None:
        import boto3

        iam = boto3.client("iam", endpoint_url=self.endpoint, region_name="us-east-1",
                           aws_access_key_id="setup", aws_secret_access_key="setup")
        grants = {"admin": ["s3:*"],
                  "reader": ["s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"]}
        for user, actions in grants.items():
            iam.create_user(UserName=user)
            iam.put_user_policy(UserName=user, PolicyName="grant", PolicyDocument=json.dumps({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}))
            key = iam.create_access_key(UserName=user)["AccessKey"]
            self.keys[user] = (key["AccessKeyId"], key["SecretAccessKey"])
        self.keys["nobody"] = ("AKIANOTAREALKEY00000", "not-a-real-secret-key")

    def env(self, user: str = "admin") -> dict[str, str]:
        key, secret = self.keys[user]
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": key,
                "AWS_SECRET_ACCESS_KEY": secret, "AWS_REGION": "us-east-1",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}

    def client(self, user: str = "admin"):
        import boto3

        key, secret = self.keys[user]
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=key, aws_secret_access_key=secret)

    def fs(self, user: str = "admin"):
        import pyarrow.fs as pafs

        key, secret = self.keys[user]
        return pafs.S3FileSystem(access_key=key, secret_key=secret, region="us-east-1",
                                 endpoint_override=self.endpoint, scheme="http")

    def upload(self, local: Path, uri: str) -> str:
        """Copy a local file or folder to `s3://...`; returns the URI."""
        import pyarrow.fs as pafs

        target = uri[len("s3://"):].rstrip("/")
        pafs.copy_files(str(local), target, source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=self.fs())
        return uri

    def read_table(self, uri: str, columns: list[str] | None = None):
        """The data files of an output folder (hidden `.` and `_` folders left out)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        fs = self.fs()
        tables = [pq.read_table(path, columns=columns, filesystem=fs)
                  for path in self.data_files(uri)]
        return pa.concat_tables(tables) if tables else None

    def data_files(self, uri: str) -> list[str]:
        import pyarrow.fs as pafs

        root = uri[len("s3://"):].rstrip("/")
        try:
            infos = self.fs().get_file_info(pafs.FileSelector(root, recursive=True))
        except OSError:
            return []
        return sorted(i.path for i in infos if i.path.endswith(".parquet")
                      and not any(part.startswith(("_", "."))
                                  for part in i.path[len(root):].split("/")[:-1]))

    def read_text(self, uri: str) -> str:
        with self.fs().open_input_stream(uri[len("s3://"):]) as f:
            return f.read().decode()

    def exists(self, uri: str) -> bool:
        import pyarrow.fs as pafs

        return self.fs().get_file_info(uri[len("s3://"):]).type != pafs.FileType.NotFound

    def log_size(self) -> int:
        """Where the request log ends now: `requests(since=...)` counts what comes after."""
        return self.log.stat().st_size if self.log and self.log.exists() else 0

    def requests(self, since: int = 0) -> list[tuple[str, str]]:
        """(method, path) of each request the server logged after byte `since` of its log."""
        import re

        with open(self.log, "rb") as f:
            f.seek(since)
            lines = f.read().decode(errors="replace").splitlines()
        return [found.groups() for found in map(re.compile(r'"([A-Z]+) (\S+) HTTP').search,
                                               lines) if found]

    def cpu_seconds(self) -> float:
        """The server process's CPU time so far (user + system)."""
        import psutil

        times = psutil.Process(self.proc.pid).cpu_times()
        return times.user + times.system

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
