"""A Parquet row group larger than the reader's bound (pyarrow writes 1,048,576-row groups by
default) is read in slices, never held whole, with the same rows and ids as a whole read; a
damaged one is still skipped whole under skip_corrupt_files, or stops the job naming it."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpusmill.errors import JobError
from corpusmill.jobs.stores.corpus import open_corpus
from corpusmill.operators.readers import files
from tests.conftest import write_parquet
from tests.corpora import damage_pages, varied_texts

SCHEMA = pa.schema([("row_id", pa.string()), ("text", pa.string()), ("n", pa.int64())])


def rows_of(corpus, rows_per_block: int, skip_corrupt: bool = False) -> list[list[dict]]:
    """Each block the reader yields, as rows, file by file, group by group."""
    blocks = []
    for f in corpus.files:
        first = 0
        for group, count in enumerate(f.row_groups):
            blocks += [block.to_pylist() for block in files.read_row_group(
                corpus.fs, f, group, first, SCHEMA, None, rows_per_block,
                skip_corrupt=skip_corrupt)]
            first += count
    return blocks


@pytest.fixture
def corpus(tmp_path):
    """One file of two row groups (1,500 and 500 rows) of varied texts."""
    write_parquet(tmp_path / "corpus" / "big.parquet",
                  {"text": varied_texts(2000, seed=5), "n": list(range(2000))},
                  row_group_size=1500)
    return tmp_path / "corpus"


def test_a_large_row_group_is_read_in_slices_with_the_rows_and_ids_of_a_whole_read(
        corpus, monkeypatch):
    whole = rows_of(open_corpus(str(corpus)), 400)
    assert [len(b) for b in whole] == [400, 400, 400, 300, 400, 100]

    monkeypatch.setattr(files, "STREAM_GROUP_BYTES", 1000)  # every group is "large"

    def read_whole(*args, **kwargs):
        raise AssertionError("a large row group was read whole")

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", read_whole)
    sliced = rows_of(open_corpus(str(corpus)), 400)
    assert all(len(block) <= 400 for block in sliced)
    assert [row for block in sliced for row in block] == [row for block in whole for row in block]
    assert sliced[0][0]["row_id"] == "big.parquet:0" and sliced[-1][-1]["row_id"] == \
        "big.parquet:1999"


def test_a_damaged_large_row_group_is_skipped_whole_or_named(tmp_path, monkeypatch):
    bad = write_parquet(tmp_path / "corpus" / "bad.parquet",
                        {"text": varied_texts(900, seed=2), "n": list(range(900))},
                        row_group_size=300)
    damage_pages(bad, "text", row_group=1)
    monkeypatch.setattr(files, "STREAM_GROUP_BYTES", 1000)
    skipped = []
    monkeypatch.setattr(files, "report_corrupt",
                        lambda stats, name, group, rows, why: skipped.append((name, group, rows)))

    blocks = rows_of(open_corpus(str(tmp_path / "corpus")), 100, skip_corrupt=True)
    numbers = [row["n"] for block in blocks for row in block]
    assert numbers == list(range(300)) + list(range(600, 900))  # group 1: none of its rows
    assert skipped == [("bad.parquet", 1, 300)]

    with pytest.raises(JobError, match="cannot read row group 1 of Parquet file 'bad.parquet'.*"
                                       "skip_corrupt_files: true"):
        rows_of(open_corpus(str(tmp_path / "corpus")), 100)


def test_damage_past_the_first_slice_is_found_before_any_row_of_the_group_is_yielded(
        corpus, monkeypatch):
    monkeypatch.setattr(files, "STREAM_GROUP_BYTES", 1000)
    real = pq.ParquetFile.iter_batches

    def failing_at_the_second_slice(self, *args, **kwargs):  # a damaged page mid-group
        for number, batch in enumerate(real(self, *args, **kwargs)):
            if number == 1 and kwargs.get("row_groups") == [0]:
                raise pa.ArrowInvalid("Couldn't deserialize thrift: damaged page")
            yield batch

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", failing_at_the_second_slice)
    skipped = []
    monkeypatch.setattr(files, "report_corrupt",
                        lambda stats, name, group, rows, why: skipped.append((name, group, rows)))

    blocks = rows_of(open_corpus(str(corpus)), 400, skip_corrupt=True)
    assert [row["n"] for block in blocks for row in block] == list(range(1500, 2000))
    assert skipped == [("big.parquet", 0, 1500)]

    with pytest.raises(JobError, match="cannot read row group 0 of Parquet file 'big.parquet' "
                                       "after its first 400 rows: Couldn't deserialize"):
        rows_of(open_corpus(str(corpus)), 400)


def test_a_row_group_of_many_rows_is_sliced_even_when_its_file_bytes_are_few(corpus,
                                                                              monkeypatch):
    """Dictionary-encoded texts take few bytes in the file and many once decoded."""
    whole = rows_of(open_corpus(str(corpus)), 400)
    monkeypatch.setattr(files, "STREAM_GROUP_ROWS", 1000)  # the 1,500-row group only
    real = pq.ParquetFile.read_row_group
    read_whole = []
    monkeypatch.setattr(pq.ParquetFile, "read_row_group",
                        lambda self, group, **kw: read_whole.append(group) or real(self, group,
                                                                                   **kw))
    sliced = rows_of(open_corpus(str(corpus)), 400)
    assert read_whole == [1]
    assert [row for block in sliced for row in block] == [row for block in whole for row in block]
