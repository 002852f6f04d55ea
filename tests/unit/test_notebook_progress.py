"""Progress in a Jupyter notebook: one output of the cell redrawn in place through IPython's
display protocol (a display handle), instead of plain lines on stderr. The kernel is faked:
a shell class named like ipykernel's, and a `display` that records what it is given."""
from __future__ import annotations

import io
import sys
import types

from corpusmill.jobs.progress import ProgressDisplay, ProgressState


class ZMQInteractiveShell:  # the name ipykernel's shell has; notebooks are detected by it
    pass


class Handle:
    def __init__(self, shown):
        self.shown = shown

    def update(self, bundle, raw=False):
        assert raw
        self.shown.append(bundle)


def fake_ipython(monkeypatch, shell) -> list:
    shown: list = []
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: shell
    display_module = types.ModuleType("IPython.display")

    def display(bundle, raw=False, display_id=False):
        assert raw and display_id
        shown.append(bundle)
        return Handle(shown)

    display_module.display = display
    ipython.display = display_module
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", display_module)
    return shown


def test_in_a_notebook_one_output_redraws_and_nothing_goes_to_stderr(monkeypatch):
    shown = fake_ipython(monkeypatch, ZMQInteractiveShell())
    stderr = io.StringIO()
    display = ProgressDisplay(stderr, is_tty=False, label="corpusmill text-classification")
    for done in (0, 50, 100):
        display.show(ProgressState(total=100, done=done, elapsed=10.0))
    display.show(ProgressState(total=100, done=100, elapsed=10.0), final=True)
    display.close()
    assert stderr.getvalue() == ""
    assert len(shown) == 5  # the handle's creation, then one update per show
    last = shown[-1]
    assert last["text/plain"].startswith("corpusmill text-classification: 100/100 rows (100%)")
    assert '<progress value="100" max="100"' in last["text/html"]
    assert '<progress value="50" max="100"' in shown[2]["text/html"]


def test_outside_a_notebook_plain_lines_as_before(monkeypatch):
    class TerminalInteractiveShell:  # plain IPython in a terminal is not a notebook
        pass

    shown = fake_ipython(monkeypatch, TerminalInteractiveShell())
    stderr = io.StringIO()
    display = ProgressDisplay(stderr, is_tty=False, label="corpusmill")
    display.show(ProgressState(total=10, done=10, elapsed=1.0), final=True)
    assert shown == []
    assert stderr.getvalue().startswith("corpusmill: 10/10 rows (100%)")
