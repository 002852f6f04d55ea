"""The progress display: the line it shows, the bottleneck it names, when it prints."""
from __future__ import annotations

import io

from corpusmill.jobs.progress import ProgressDisplay, ProgressState, bottleneck, state_from
from corpusmill.jobs.record import placement_line


def snapshot(read=0, tokenize=0, inference=0, post=0, errors=0, skipped=0, actors=1) -> dict:
    return {"stages": {"read": {"rows": read}, "tokenize": {"rows": tokenize},
                       "inference": {"rows": inference},
                       "postprocess": {"rows": post, "errors": errors, "skipped": skipped}},
            "actors": [{"actor": f"a{i}"} for i in range(actors)]}


def test_the_line_counts_rows_rate_eta_errors_and_actors():
    state = state_from(snapshot(1000, 1000, 600, 500, errors=3, skipped=1, actors=2),
                       total=2000, elapsed=10.0, block_rows=100)
    line = state.line()
    assert line.startswith("500/2,000 rows (25%) | 50.0 rows/s | ETA 30s")
    assert "3 error(s), 1 skipped" in line and "2 actor(s)" in line


def test_the_stage_rows_pile_up_in_front_of_is_the_bottleneck():
    rows = {"read": 4000, "tokenize": 3900, "inference": 1000, "postprocess": 990}
    assert bottleneck(rows, block_rows=256) == "inference (2,900 rows waiting)"
    assert bottleneck({"read": 300, "tokenize": 250, "inference": 240, "postprocess": 240},
                      block_rows=256) == ""  # less than a block waits anywhere: no bottleneck


def test_without_a_terminal_a_plain_line_per_tenth_or_interval():
    stream = io.StringIO()
    display = ProgressDisplay(stream, is_tty=False, label="corpusmill job", interval_s=3600)
    for done in (0, 10, 50, 100, 150, 990, 1000):
        display.show(ProgressState(total=1000, done=done, elapsed=1.0 + done))
    display.show(ProgressState(total=1000, done=1000, elapsed=1001.0), final=True)
    lines = stream.getvalue().splitlines()
    assert [line.split(": ", 1)[1].split(" rows")[0] for line in lines] == [
        "0/1,000", "100/1,000", "990/1,000", "1,000/1,000"]
    assert all(line.startswith("corpusmill job: ") for line in lines)


def test_in_a_terminal_one_line_is_redrawn_in_place():
    stream = io.StringIO()
    display = ProgressDisplay(stream, is_tty=True, label="corpusmill job")
    for done in (0, 500, 1000):
        display.show(ProgressState(total=1000, done=done, elapsed=10.0))
    display.close()
    shown = stream.getvalue()
    assert "1,000/1,000 rows (100%)" in shown
    assert "\x1b[" in shown or "\r" in shown  # cursor movement: redrawn, not appended


def test_the_summary_says_where_a_run_went():
    record = {"device": "gpu", "actors": {"min": 1, "max": 4, "start": 1, "peak": 2},
              "nodes": [{"node_id": "a" * 40, "host": "10.0.1.17", "rows": 1650},
                        {"node_id": "b" * 40, "host": "10.0.1.23", "rows": 1350}],
              "actor_devices": {"cuda": 2}}
    assert placement_line(record) == (
        "ran on 2 GPU node(s) with 2 actor(s) at peak (1 at start, elastic 1-4): "
        "10.0.1.17 1,650 rows, 10.0.1.23 1,350 rows")
    record["actor_devices"] = {"cpu": 2}
    assert "torch saw no CUDA in the actors: they ran on CPU" in placement_line(record)
