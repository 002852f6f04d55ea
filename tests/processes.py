"""Killing only what a test started. Other work on the same machine runs Ray too, so a test never
kills by a broad pattern: it kills the processes it started and their descendants (by pid), or
processes that carry a marker only that test uses (its own fresh temp dir on their command
line), with their descendants."""
from __future__ import annotations

import psutil


def tree(pid: int) -> list[psutil.Process]:
    """The process `pid` and all its descendants alive now ([] when it is gone)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def marked(marker: str, *, arg_end: bool = False) -> list[psutil.Process]:
    """Processes whose command line contains `marker` (a path unique to one test, e.g. the
    `--temp-dir` of its own Ray), with their descendants. `arg_end`: one argument must end
    with it (a port: `--gcs-address=127.0.0.1:4639` must not match `...:46391`)."""
    found = {}
    for proc in psutil.process_iter(["cmdline"]):
        args = proc.info.get("cmdline") or []
        if any(a.endswith(marker) for a in args) if arg_end else marker in " ".join(args):
            for member in tree(proc.pid):
                found[member.pid] = member
    return list(found.values())


def kill(processes: list[psutil.Process], timeout: float = 10) -> int:
    """SIGKILL each process (one already gone is skipped); wait for them. Returns how many were
    signalled."""
    killed = []
    for proc in processes:
        try:
            proc.kill()
            killed.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    psutil.wait_procs(killed, timeout=timeout)
    return len(killed)
