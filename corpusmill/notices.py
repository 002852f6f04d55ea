"""One-line notices for the person running a job (a backend fallback, int8 agreement, a model
copied): printed on the terminal beside the progress display and the summary. While a run
sends Ray's output to its log (jobs/console.py), the console points `sink` at the terminal,
so notices never end up in the log alone."""
from __future__ import annotations

import sys

sink = None  # a text stream to print notices to; None: sys.stderr


def notice(message: str) -> None:
    print(f"corpusmill: {message}", file=sink or sys.stderr, flush=True)
