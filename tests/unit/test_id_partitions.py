"""The id checks that never hold every id in the driver (jobs/stores/ids.py): ids hashed into
partitions on local disk, duplicates found within a file, across files and across partitions,
named by value and file; an incremental run's rows counted by membership; no Ray, no model."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpusmill.errors import JobError
from corpusmill.jobs.stores import ids as id_module
from corpusmill.jobs.stores.corpus import id_partitions, open_corpus
from corpusmill.jobs.stores.ids import IdPartitions, id_hash
from corpusmill.jobs.stores.output import output_counts
from corpusmill.jobs.preflight import _check_ids_unique


def write(path, ids, row_group_size=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": ids, "text": ["t"] * len(ids)}), path,
                   row_group_size=row_group_size)


def check(folder):
    return _check_ids_unique(open_corpus(str(folder)), "id")


@pytest.fixture(params=[1, 7], ids=["one-partition", "seven-partitions"])
def partitions(request, monkeypatch):
    """Ids spread over one partition, or over several (a partition of 3 rows at most)."""
    if request.param > 1:
        monkeypatch.setattr(id_module, "PARTITION_ROWS", 3)
        monkeypatch.setattr(id_module, "READ_BATCH_ROWS", 4)  # several batches per file
    return request.param


def test_unique_ids_pass_and_keep_every_file(tmp_path, partitions):
    write(tmp_path / "a.parquet", [f"a{i}" for i in range(10)], row_group_size=3)
    write(tmp_path / "b.parquet", [f"b{i}" for i in range(10)])
    assert [f.name for f in check(tmp_path).files] == ["a.parquet", "b.parquet"]


def test_a_duplicate_within_one_file_names_the_id_and_the_file(tmp_path, partitions):
    write(tmp_path / "a.parquet", ["x1", "x2", "x3", "x4", "x5", "x6", "x2"], row_group_size=2)
    write(tmp_path / "b.parquet", ["y1", "y2"])
    with pytest.raises(JobError) as refused:
        check(tmp_path)
    assert "1 duplicated id(s)" in str(refused.value)
    assert "'x2' x2 (in a.parquet)" in str(refused.value)


def test_duplicates_across_files_name_every_file_in_order_of_first_sight(tmp_path, partitions):
    write(tmp_path / "a.parquet", ["x1", "x2", "x3"])
    write(tmp_path / "b.parquet", ["x3", "x4", "x1"])
    write(tmp_path / "c.parquet", ["x5", "x1"])
    with pytest.raises(JobError) as refused:
        check(tmp_path)
    message = str(refused.value)
    assert "2 duplicated id(s)" in message
    assert "'x1' x3 (in a.parquet, b.parquet, c.parquet); 'x3' x2 (in a.parquet, b.parquet)" \
        in message


def test_duplicates_spread_over_many_partitions_are_all_counted(tmp_path, monkeypatch):
    monkeypatch.setattr(id_module, "PARTITION_ROWS", 10)
    unique = [f"doc-{i:05d}" for i in range(400)]
    write(tmp_path / "a.parquet", unique[:300], row_group_size=50)
    write(tmp_path / "b.parquet", unique[250:] + unique[:10])  # 60 ids twice
    corpus = open_corpus(str(tmp_path))
    spilled = id_partitions(corpus.fs, corpus.files, "id", pa.string())
    assert spilled.partitions == 46  # 460 rows, 10 a partition
    occupied = [p for p in range(spilled.partitions) if spilled.partition(p).num_rows]
    repeated = {p for p in occupied
                if len(set(spilled.partition(p).column("hash").to_pylist()))
                < spilled.partition(p).num_rows}
    assert len(repeated) > 10  # the duplicates really lie in many partitions
    spilled.close()
    with pytest.raises(JobError, match="60 duplicated id"):
        check(tmp_path)


def test_many_small_files_hashed_together_still_name_each_file(tmp_path, partitions):
    """Ids of several files go through one hash call (SpillBuffer): a duplicate between two
    of them, and a null in one, still name the right files and row."""
    for part in range(40):
        write(tmp_path / "many" / f"p{part:02d}.parquet", [f"p{part}-{i}" for i in range(3)])
    write(tmp_path / "many" / "p37.parquet", ["p37-0", "p3-1", "p37-2"])
    with pytest.raises(JobError, match=r"1 duplicated id\(s\), e.g. 'p3-1' x2 \(in "
                                       r"p03.parquet, p37.parquet\)"):
        check(tmp_path / "many")
    write(tmp_path / "many" / "p37.parquet", ["p37-0", "p37-1", "p37-2"])
    write(tmp_path / "many" / "p21.parquet", ["p21-0", "p21-1", None])
    with pytest.raises(JobError, match=r"null in 'p21.parquet' \(first at row 2\)"):
        check(tmp_path / "many")


@pytest.mark.parametrize("count", [0, 1, 5, 100, 4_099, 10_000])
def test_file_groups_take_every_file_once_in_order(count):
    groups = id_module.file_groups(count, 16)
    assert [i for group in groups for i in group] == list(range(count))
    assert all(0 < len(group) <= id_module.GROUP_FILES for group in groups)
    assert len(groups) >= min(count, 16)  # every thread has work where there are files


def test_integer_ids_and_widened_types_are_checked_by_value(tmp_path, partitions):
    write(tmp_path / "a.parquet", pa.array([1, 2, 3], pa.int32()))
    write(tmp_path / "b.parquet", pa.array([4, 2], pa.int64()))
    with pytest.raises(JobError, match=r"'?2'? x2 \(in a.parquet, b.parquet\)"):
        check(tmp_path)


def test_null_ids_name_the_file_and_first_row_across_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(id_module, "READ_BATCH_ROWS", 4)
    write(tmp_path / "a.parquet", ["x1", "x2"])
    write(tmp_path / "b.parquet", ["y1", "y2", "y3", "y4", "y5", None, "y7"])
    with pytest.raises(JobError, match=r"null in 'b.parquet' \(first at row 5\)"):
        check(tmp_path)


def test_hash_collisions_are_not_reported_as_duplicates(tmp_path, monkeypatch):
    """Two different ids whose hashes agree are confirmed by value, and pass."""
    monkeypatch.setattr(id_module, "id_hash",
                        lambda values: np.zeros(len(values), np.uint64))
    import corpusmill.jobs.preflight  # noqa: F401 - the check imports id_hash at call time

    write(tmp_path / "a.parquet", ["x1", "x2", "x3"])
    assert len(check(tmp_path).files) == 1


def test_hashes_are_equal_exactly_for_equal_values():
    texts = ["", "a", "b", "ab", "ba", "doc-00012", "doc-00021", "x" * 300, "x" * 299 + "y"]
    hashes = id_hash(pa.array(texts))
    assert len(set(hashes.tolist())) == len(texts)
    assert (id_hash(pa.array(texts, pa.large_string())) == hashes).all()
    assert (id_hash(pa.chunked_array([texts[:4], texts[4:]])) == hashes).all()
    assert (id_hash(pa.array(texts).slice(3)) == hashes[3:]).all()
    numbers = id_hash(pa.array([1, 2, 3], pa.int32()))
    assert (numbers == id_hash(pa.array([1, 2, 3], pa.int64()))).all()
    assert len(set(id_hash(pa.array([f"id-{i}" for i in range(100_000)])).tolist())) == 100_000


def test_membership_counts_rows_and_flags_of_the_scope_only():
    with IdPartitions(3) as scope, IdPartitions(3, ("errored",)) as rows:
        scope.add(id_hash(pa.array(["a", "b", "c"])), 0)
        rows.add(id_hash(pa.array(["a", "b", "z", "y"])), 0, {"errored": [1, 0, 1, 1]})
        assert rows.count_in(scope) == {"rows": 2, "errored": 1}
        assert rows.count_in(None) == {"rows": 4, "errored": 3}


def test_output_counts_come_from_footers_and_find_duplicates(tmp_path, monkeypatch):
    monkeypatch.setattr(id_module, "PARTITION_ROWS", 2)
    out = tmp_path / "out"
    out.mkdir()
    pq.write_table(pa.table({"id": ["a", "b", "c"], "error": [None, "boom", None],
                             "input_truncated": [False, True, True]}), out / "0.parquet")
    pq.write_table(pa.table({"id": ["d", "a"], "error": [None, None],
                             "input_truncated": [False, False]}), out / "1.parquet")
    counts = output_counts(str(out), "id")
    assert counts == {"files": 2, "rows_out": 5, "rows_errored": 1, "rows_truncated": 2,
                      "ids_duplicated": 1}
    with IdPartitions(3) as scope:
        scope.add(id_hash(pa.array(["b", "c", "d"])), 0)
        scoped = output_counts(str(out), "id", scope)
    assert scoped["rows_out"] == 3 and scoped["rows_errored"] == 1
    assert scoped["rows_truncated"] == 2 and scoped["ids_duplicated"] == 1
