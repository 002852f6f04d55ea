"""Inputs beyond Parquet, without Ray: Arrow IPC files (stream and file format, datasets'
save_to_disk folders), JSON Lines, and hub paths on a local stand-in. Each file kind yields
groups read in one piece, rows numbered from the start of the file (the ids), and a
fingerprint that changes with the content."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from corpusmill.errors import JobError
from corpusmill.jobs.stores import hub
from corpusmill.jobs.stores.corpus import open_corpus
from corpusmill.operators.readers.read import read_row_group
from corpusmill.operators.readers import read_jsonl
from tests.hub_standin import LocalHub, publish

TEXTS = [f"text {i}" for i in range(10)]


def write_stream(path: Path, table: pa.Table, batch_rows: int, file_format: bool = False):
    new = pa.ipc.new_file if file_format else pa.ipc.new_stream
    with pa.OSFile(str(path), "wb") as sink, new(sink, table.schema) as out:
        for batch in table.to_batches(max_chunksize=batch_rows):
            out.write_batch(batch)
    return path


def rows_read(corpus) -> list[dict]:
    """Every row as the reader yields it (ids generated), file by file, group by group."""
    schema = pa.schema([("row_id", pa.string()), ("text", pa.string()), ("n", pa.int64())])
    rows = []
    for f in corpus.files:
        first = 0
        for group, count in enumerate(f.row_groups):
            for block in read_row_group(corpus.fs, f, group, first, schema, None, 3):
                rows += block.to_pylist()
            first += count
    return rows


@pytest.mark.parametrize("file_format", [False, True], ids=["ipc-stream", "ipc-file"])
def test_arrow_files_read_by_record_batch_with_ids_per_file_row(tmp_path, file_format):
    table = pa.table({"text": TEXTS, "n": list(range(10))})
    write_stream(tmp_path / "a.arrow", table, batch_rows=4, file_format=file_format)
    corpus = open_corpus(str(tmp_path))
    (f,) = corpus.files
    assert (f.format, f.row_groups) == ("arrow", (4, 4, 2))
    rows = rows_read(corpus)
    assert [r["row_id"] for r in rows] == [f"a.arrow:{i}" for i in range(10)]
    assert [r["text"] for r in rows] == TEXTS


def test_jsonl_groups_skip_blank_lines_and_keep_row_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(read_jsonl, "GROUP_ROWS", 4)
    lines = [json.dumps({"text": t, "n": i}) for i, t in enumerate(TEXTS)]
    lines.insert(3, "")
    lines.insert(7, "   ")
    (tmp_path / "a.jsonl").write_text("\n".join(lines))  # no newline after the last line
    corpus = open_corpus(str(tmp_path / "a.jsonl"))
    assert corpus.files[0].row_groups == (4, 4, 2)
    rows = rows_read(corpus)
    assert [(r["row_id"], r["text"], r["n"]) for r in rows] == [
        (f"a.jsonl:{i}", t, i) for i, t in enumerate(TEXTS)]


def test_fingerprints_follow_content_for_every_kind(tmp_path):
    table = pa.table({"text": TEXTS})
    other = pa.table({"text": [t.replace("text", "word") for t in TEXTS]})  # same sizes
    write_stream(tmp_path / "a.arrow", table, 4)
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in TEXTS))
    before = open_corpus(str(tmp_path)).stamps()
    write_stream(tmp_path / "a.arrow", other, 4)
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in
                                                other.column("text").to_pylist()))
    after = open_corpus(str(tmp_path)).stamps()
    for name in ("a.arrow", "b.jsonl"):
        assert before[name]["size"] == after[name]["size"]
        assert before[name]["fingerprint"] != after[name]["fingerprint"]


def test_save_to_disk_folders_read_in_dataset_order_and_dataset_dicts_name_their_splits(
        tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"text": TEXTS, "n": list(range(10))})
    ds.save_to_disk(str(tmp_path / "saved"), num_shards=3)
    corpus = open_corpus(str(tmp_path / "saved"))
    assert [f.name for f in corpus.files] == [f"data-0000{i}-of-00003.arrow" for i in range(3)]
    assert [r["text"] for r in rows_read(corpus)] == TEXTS
    datasets.DatasetDict({"train": ds, "test": ds}).save_to_disk(str(tmp_path / "dict"))
    with pytest.raises(JobError, match=r"split\(s\) train, test; give one split's folder, "
                                       r"e\.g\. input: .*/dict/train"):
        open_corpus(str(tmp_path / "dict"))


def test_hub_paths_are_pinned_to_the_commit_their_revision_names(tmp_path, monkeypatch):
    source = write_stream(tmp_path / "rows.arrow", pa.table({"text": TEXTS}), 5)
    root = tmp_path / "hub"
    publish(root, "acme/reviews", "1111", {"data/rows.arrow": source})
    publish(root, "acme/reviews", "2222", {"data/rows.arrow": source, "data/more.arrow": source})
    publish(root, "acme/reviews", "1111", {}, branch="v1")
    monkeypatch.setattr(hub, "hub_filesystem", lambda: LocalHub(root))
    latest = open_corpus("hf://datasets/acme/reviews/data")
    assert latest.source["hub"] == {"repo": "acme/reviews", "repo_type": "dataset",
                                    "revision": "main", "commit": "2222"}
    assert sorted(f.name for f in latest.files) == ["more.arrow", "rows.arrow"]
    assert all("@2222/" in f.path for f in latest.files)
    tagged = open_corpus("hf://datasets/acme/reviews@v1/data")
    assert tagged.source["hub"]["commit"] == "1111"
    assert [f.name for f in tagged.files] == ["rows.arrow"]
    assert [r["row_id"] for r in rows_read(tagged)][:2] == ["rows.arrow:0", "rows.arrow:1"]
    with pytest.raises(JobError, match="no such repository or revision"):
        open_corpus("hf://datasets/acme/nothing/data")


def test_the_real_hub_filesystem_offline_fails_with_a_job_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(JobError, match="acme/reviews"):
        open_corpus("hf://datasets/acme/reviews/data")


def test_large_json_lines_fingerprints_sample_the_file_and_follow_its_time(tmp_path):
    """A fingerprint reads the head and tail, never the whole file: an edit in the middle is
    noticed through the modification time, and missed only when the time is put back
    (docs/guides/scale.md)."""
    import os

    from corpusmill.jobs.stores.corpus import SAMPLE_BYTES, same_content

    path = tmp_path / "big.jsonl"
    lines = [json.dumps({"text": f"line {i:06d} " + "x" * 80}) for i in range(5_000)]
    assert len("\n".join(lines)) > 4 * SAMPLE_BYTES
    path.write_text("\n".join(lines))
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    before = open_corpus(str(path)).stamps()["big.jsonl"]
    lines[2_500] = lines[2_500].replace("x", "y")  # same size, middle of the file
    path.write_text("\n".join(lines))
    now = open_corpus(str(path)).stamps()["big.jsonl"]
    assert now["size"] == before["size"] and not same_content(before, now)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))  # the time put back: not noticed
    assert same_content(before, open_corpus(str(path)).stamps()["big.jsonl"])
    lines[-1] = lines[-1].replace("x", "z")  # the tail changed, the time put back: noticed
    path.write_text("\n".join(lines))
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    assert not same_content(before, open_corpus(str(path)).stamps()["big.jsonl"])
    # a record of an older version (a whole-file hash) is compared by size and time
    older = {**before, "fingerprint": "0123456789abcdef0123456789abcdef"}
    assert same_content(older, {**before})


def test_small_arrow_and_json_lines_files_are_fingerprinted_by_their_whole_content(tmp_path):
    """A file within the two samples is read whole: a copy or a touch (new time, same bytes)
    is no change, an edit anywhere is one even with the time put back (a dataset republished
    at a new hub commit keeps its unchanged files)."""
    import os
    import shutil

    from corpusmill.jobs.stores.corpus import same_content

    write_stream(tmp_path / "a.arrow", pa.table({"text": TEXTS}), 4)
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in TEXTS))
    before = open_corpus(str(tmp_path)).stamps()
    for name in ("a.arrow", "b.jsonl"):
        shutil.copy(tmp_path / name, tmp_path / f"{name}.copy")
        os.replace(tmp_path / f"{name}.copy", tmp_path / name)
        os.utime(tmp_path / name, ns=(2_000_000_000, 2_000_000_000))
    touched = open_corpus(str(tmp_path)).stamps()
    assert all(same_content(before[n], touched[n]) for n in ("a.arrow", "b.jsonl"))
    edited = [t.replace("text", "txet") for t in TEXTS]  # same size
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in edited))
    os.utime(tmp_path / "b.jsonl", ns=(2_000_000_000, 2_000_000_000))
    assert not same_content(before["b.jsonl"], open_corpus(str(tmp_path)).stamps()["b.jsonl"])
