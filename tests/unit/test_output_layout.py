"""The output folder's layout: data files at the top, corpusmill's state in `.corpusmill/`; an
output written by an earlier version is moved into that layout and resumes."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from corpusmill.jobs.stores.output import (
    CHECKPOINT_DIR, LEDGER, MANIFEST, REPORT_DIR, check_output, data_files,
    migrate_legacy_layout,
)


def legacy_output(out):
    """What corpusmill wrote before `.corpusmill/` existed."""
    (out / "_checkpoint").mkdir(parents=True)
    (out / "_report").mkdir()
    pq.write_table(pa.table({"row_id": ["a:0", "a:1"], "label": ["x", "y"]}),
                   out / "part-0.parquet")
    pq.write_table(pa.table({"row_id": ["a:0", "a:1"]}), out / "_checkpoint" / "c0.parquet")
    (out / "_corpusmill.json").write_text(json.dumps({"job_id": "0123456789abcdef"}))
    (out / "_corpusmill_files.json").write_text(json.dumps({"files": {}}))
    (out / "_report" / "report.json").write_text("{}")
    (out / "_corpusmill.lock").write_text("{}")  # a killed run's


def test_an_earlier_versions_output_moves_into_the_state_folder_and_resumes(tmp_path):
    out = tmp_path / "out"
    legacy_output(out)
    moved = migrate_legacy_layout(str(out))
    assert sorted(moved) == ["_checkpoint", "_corpusmill.json", "_corpusmill_files.json",
                             "_report"]
    assert sorted(p.name for p in out.iterdir()) == [".corpusmill", "part-0.parquet"]
    for name in (MANIFEST, LEDGER, f"{CHECKPOINT_DIR}/c0.parquet", f"{REPORT_DIR}/report.json"):
        assert (out / name).is_file(), name
    state = check_output(str(out), "resume", "0123456789abcdef")
    assert (state.resumed, state.rows_before) == (True, 2)  # the committed ids were kept
    assert migrate_legacy_layout(str(out)) == []  # once only


def test_only_data_files_are_data(tmp_path):
    out = tmp_path / "out"
    legacy_output(out)
    migrate_legacy_layout(str(out))
    (out / "year=2026").mkdir()
    pq.write_table(pa.table({"row_id": ["b:0"]}), out / "year=2026" / "part-1.parquet")
    assert data_files(str(out))[2] == ["part-0.parquet", "year=2026/part-1.parquet"]
    assert len(pq.read_table(out).column("row_id")) == 3  # pyarrow skips the state folder too


def test_counts_of_a_several_task_output_count_a_row_truncated_by_any_task_once(tmp_path):
    from corpusmill.jobs.stores.output import output_counts

    pq.write_table(pa.table({"row_id": ["a", "b", "c", "d"],
                             "gen_input_truncated": [True, False, None, True],
                             "sum_input_truncated": [True, True, False, None],
                             "error": [None, "gen: failed", None, None]}),
                   tmp_path / "part-0.parquet", row_group_size=2)
    counts = output_counts(str(tmp_path), "row_id")
    assert (counts["rows_out"], counts["rows_errored"], counts["rows_truncated"]) == (4, 1, 3)
