"""Connecting to Ray: the cluster at `--address` / RAY_ADDRESS, or a local Ray on loopback.

A cluster address that does not answer fails within a bounded time (`connect_timeout_s`,
default 30 s, `CORPUSMILL_CONNECT_TIMEOUT_S`) with a message naming the address and what to
check, instead of Ray's endless GCS retries (which Ctrl-C cannot stop). Two checks: the
address must accept a TCP connection, then `ray.init` must finish; the second runs in a
helper thread so the wait stays interruptible and bounded even when something other than a
Ray GCS answers on that port."""
from __future__ import annotations

import logging
import os
import socket
import threading
import time

from corpusmill.ray_internals import LOOPBACK_INIT_ARGS

CONNECT_TIMEOUT_ENV = "CORPUSMILL_CONNECT_TIMEOUT_S"
DEFAULT_CONNECT_TIMEOUT_S = 30.0
GCS_PORT, CLIENT_PORT = 6379, 10001
LOCAL = ("local", "")


class ClusterUnreachable(RuntimeError):
    """The Ray cluster named by --address / RAY_ADDRESS did not answer in time (exit 1)."""


def connect_timeout(value: float | None = None) -> float:
    if value is not None:
        return value
    raw = os.environ.get(CONNECT_TIMEOUT_ENV)
    try:
        return float(raw) if raw else DEFAULT_CONNECT_TIMEOUT_S
    except ValueError:
        return DEFAULT_CONNECT_TIMEOUT_S


def ensure_ray(address: str | None = None, connect_timeout_s: float | None = None) -> bool:
    """Connect to `address` (default RAY_ADDRESS), or start a local Ray on loopback when none is
    given. True when this call started or joined Ray (the caller shuts it down after)."""
    import ray

    # Ray Data's usage telemetry runs one more actor process per job (~190 MB and a worker's
    # start-up on a small machine) for a report a batch job never sends; the user's own
    # setting wins
    os.environ.setdefault("RAY_DATA_USAGE_DISABLED", "1")
    if ray.is_initialized():
        return False
    address = address if address is not None else os.environ.get("RAY_ADDRESS", "")
    if address.strip() in LOCAL:
        ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING,
                 **LOOPBACK_INIT_ARGS)
        return True
    timeout = connect_timeout(connect_timeout_s)
    deadline = time.monotonic() + timeout
    if address != "auto":
        host, port = parse_address(address)
        _wait_for_tcp(address, host, port, deadline, timeout)
    _init_within(address, deadline, timeout)
    return True


def parse_address(address: str) -> tuple[str, int]:
    """(host, port) of a Ray address: `host:port`, `ray://host[:port]` (Ray Client)."""
    if address.startswith(("http://", "https://")):
        raise ClusterUnreachable(
            f"Ray address {address!r} is a dashboard (Jobs API) address, which `corpusmill "
            f"submit` takes; `corpusmill run` connects to the cluster itself: give the head's "
            f"GCS address, e.g. RAY_ADDRESS=HEAD:6379 (or submit the job instead)")
    client = address.startswith("ray://")
    rest = address[len("ray://"):] if client else address
    if rest.startswith("["):  # [ipv6]:port
        host, _, tail = rest[1:].partition("]")
        port = tail.lstrip(":")
    else:
        host, _, port = rest.rpartition(":") if ":" in rest else (rest, "", "")
    try:
        number = int(port) if port else (CLIENT_PORT if client else GCS_PORT)
    except ValueError:
        raise ClusterUnreachable(f"Ray address {address!r} is not HOST:PORT") from None
    return host or "127.0.0.1", number


def _wait_for_tcp(address: str, host: str, port: int, deadline: float, timeout: float) -> None:
    last_error: OSError | None = None
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(5.0, timeout)):
                return
        except OSError as e:
            last_error = e
        if time.monotonic() >= deadline:
            raise ClusterUnreachable(_unreachable(address, timeout, f"nothing answers at "
                                                  f"{host}:{port} ({last_error})"))
        time.sleep(1.0)


def _init_within(address: str, deadline: float, timeout: float) -> None:
    import ray

    outcome: dict = {}

    def connect():
        try:
            ray.init(address=address, logging_level=logging.WARNING)
            outcome["ok"] = True
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
            outcome["error"] = e

    thread = threading.Thread(target=connect, name="corpusmill-connect", daemon=True)
    thread.start()
    while thread.is_alive() and time.monotonic() < deadline:
        thread.join(timeout=0.2)
    if "error" in outcome:
        raise ClusterUnreachable(_unreachable(address, timeout, f"{type(outcome['error']).__name__}: "
                                              f"{outcome['error']}")) from None
    if "ok" not in outcome:
        raise ClusterUnreachable(_unreachable(address, timeout, "it accepts connections but is "
                                              "not answering as a Ray cluster"))


def _unreachable(address: str, timeout: float, why: str) -> str:
    return (f"cannot connect to the Ray cluster at {address!r} within {timeout:g} s: {why}. "
            f"Check that the cluster is up (`ray status --address {address}` on a node of it), "
            f"that the address is the head's GCS address (HEAD:6379; `ray://HEAD:10001` for "
            f"Ray Client) and reachable from here; unset RAY_ADDRESS (or --address local) to "
            f"run on this machine; {CONNECT_TIMEOUT_ENV} changes the wait")
