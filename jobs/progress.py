"""The progress display of a running job, driven by counts corpusmill knows: the rows to do
(from the Parquet footers, less rows an earlier run already committed), and the run's
statistics actor (operators/stats.py): rows through each stage, errors, skipped, actors.

In a terminal one line redraws in place (rich); in a Jupyter notebook (corpusmill.run or
annotate in a cell) one output redraws in place through IPython's display protocol (rich's own
Jupyter support needs ipywidgets); anywhere else (cron, CI, `submit` logs) a plain line is
printed every `interval_s` seconds or each 10% of the rows, and at the end.
The stage rows pile up in front of, when a block or more waits there, is named as the
bottleneck."""
from __future__ import annotations

import html
import sys
import threading
import time
from dataclasses import dataclass, field

from corpusmill.operators.stats import STAGES

PLAIN_INTERVAL_S = 30.0
POLL_S = 0.5
TIMELINE_POINTS = 600  # at most: sampling slows down as a run grows long


@dataclass
class ProgressState:
    total: int                       # rows this run has to process
    done: int = 0                    # rows through postprocess (written right after)
    errors: int = 0
    skipped: int = 0
    actors: int = 0
    elapsed: float = 0.0
    bottleneck: str = ""
    stage_rows: dict = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        if self.rate <= 0 or self.done >= self.total:
            return None
        return (self.total - self.done) / self.rate

    def line(self) -> str:
        percent = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        parts = [f"{self.done:,}/{self.total:,} rows{percent}", f"{self.rate:.1f} rows/s"]
        if self.eta_s is not None:
            parts.append(f"ETA {_duration(self.eta_s)}")
        parts.append(f"{self.errors:,} error(s), {self.skipped:,} skipped")
        parts.append(f"{self.actors} actor(s)")
        if self.bottleneck:
            parts.append(f"bottleneck: {self.bottleneck}")
        return " | ".join(parts)


def state_from(snapshot: dict, total: int, elapsed: float, block_rows: int) -> ProgressState:
    stages = snapshot.get("stages", {})
    rows = {stage: int(stages.get(stage, {}).get("rows", 0)) for stage in STAGES}
    post = stages.get("postprocess", {})
    return ProgressState(total=total, done=min(total, rows["postprocess"]),
                         errors=int(post.get("errors", 0)), skipped=int(post.get("skipped", 0)),
                         actors=len(snapshot.get("actors", [])), elapsed=elapsed,
                         bottleneck=bottleneck(rows, block_rows), stage_rows=rows)


def bottleneck(rows: dict[str, int], block_rows: int) -> str:
    """The stage with the most rows waiting in front of it, when a block or more waits."""
    waiting = {later: rows[earlier] - rows[later]
               for earlier, later in zip(STAGES, STAGES[1:])}
    stage, queued = max(waiting.items(), key=lambda item: item[1])
    return f"{stage} ({queued:,} rows waiting)" if queued >= max(1, block_rows) else ""


class ProgressDisplay:
    """Shows `ProgressState`s on `stream`: redrawn in place on a TTY, plain lines otherwise."""

    def __init__(self, stream, is_tty: bool, label: str, interval_s: float = PLAIN_INTERVAL_S,
                 notebook=None):
        self.stream = stream
        self.is_tty = is_tty
        self.label = label
        self.interval_s = interval_s
        self._last_print = 0.0
        self._last_tenth = -1
        self._last_done = -1
        self._live = None
        # a notebook's output cell (a display handle), else None
        self._notebook = notebook if notebook is not None or is_tty else notebook_display()
        if is_tty:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(file=stream, force_terminal=True), auto_refresh=False,
                              transient=False)
            self._live.start()

    def show(self, state: ProgressState, final: bool = False) -> None:
        if self._live is not None:
            self._live.update(self._renderable(state), refresh=True)
            return
        if self._notebook is not None:
            self._notebook.update(notebook_bundle(self.label, state), raw=True)
            return
        tenth = int(10 * state.done / state.total) if state.total else 10
        now = time.monotonic()
        due = tenth > self._last_tenth or now - self._last_print >= self.interval_s
        if (final and state.done != self._last_done) or due:
            print(f"{self.label}: {state.line()}", file=self.stream, flush=True)
            self._last_print, self._last_tenth, self._last_done = now, tenth, state.done

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()

    def _renderable(self, state: ProgressState):
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        grid = Table.grid(padding=(0, 1))
        grid.add_row(self.label, ProgressBar(total=max(1, state.total), completed=state.done,
                                             width=30), state.line())
        return grid


def notebook_display():
    """A display handle in the running Jupyter kernel's output cell, or None outside one (a
    plain IPython terminal is a terminal). IPython is only looked for, never imported."""
    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)() if ipython is not None else None
    if shell is None or not any(cls.__name__ == "ZMQInteractiveShell"
                                for cls in type(shell).__mro__):
        return None
    from IPython.display import display

    return display({"text/plain": ""}, raw=True, display_id=True)


def notebook_bundle(label: str, state: ProgressState) -> dict:
    """The progress as a MIME bundle: an HTML progress bar with the line, and the line."""
    line = f"{label}: {state.line()}"
    bar = (f'<progress value="{state.done}" max="{max(1, state.total)}" '
           f'style="width:24em;vertical-align:middle"></progress>')
    return {"text/plain": line,
            "text/html": f'<div style="font-family:monospace">{bar} {html.escape(line)}</div>'}


class ProgressWatcher:
    """Polls the run's statistics in a thread (`read_snapshot`: the stats actor's snapshot, or
    the RunStats of a run in this process), feeds the display, and keeps the throughput
    timeline [(seconds since start, rows done)] for the manifest."""

    def __init__(self, read_snapshot, display: ProgressDisplay, total: int, block_rows: int):
        self.read_snapshot = read_snapshot
        self.display = display
        self.total = total
        self.block_rows = block_rows
        self.timeline: list[tuple[float, int]] = []
        self.state = ProgressState(total=total)
        self.snapshot: dict = {}  # the statistics as last read (the final read, after exit)
        self._stop = threading.Event()
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="corpusmill-progress",
                                        daemon=True)

    def __enter__(self) -> "ProgressWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._poll()
        self.timeline.append((round(self.state.elapsed, 1), self.state.done))  # the last rows
        self.display.show(self.state, final=True)
        self.display.close()

    def _run(self) -> None:
        last_sample, every = -1.0, 1.0
        while not self._stop.wait(POLL_S):
            self._poll()
            self.display.show(self.state)
            if self.state.elapsed - last_sample >= every:
                self.timeline.append((round(self.state.elapsed, 1), self.state.done))
                last_sample = self.state.elapsed
                if len(self.timeline) > TIMELINE_POINTS:  # keep every other point
                    self.timeline, every = self.timeline[::2], every * 2

    def _poll(self) -> None:
        try:
            snapshot = self.read_snapshot()
        except Exception:  # noqa: BLE001 - a slow or lost stats actor must not stop the run
            return
        self.snapshot = snapshot
        self.state = state_from(snapshot, self.total, time.monotonic() - self._start,
                                self.block_rows)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
