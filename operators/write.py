"""The output folder: preparing it (refuse or replace earlier output), writing Parquet through
Ray Data, and reading back what was written for the end-of-run summary.

Output folder contents: `*.parquet` files, each with the job's provenance in its schema
metadata, and `_corpusmill.json`, the manifest of the last run (spec, counts, timings)."""
from __future__ import annotations

import json
import os
import uuid

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from jobs.errors import JobError
from operators.plan import ERROR

MANIFEST = "_corpusmill.json"


def output_filesystem(output: str) -> tuple[pafs.FileSystem, str]:
    if "://" in output:
        return pafs.FileSystem.from_uri(output)
    return pafs.LocalFileSystem(), os.path.abspath(output)


def prepare_output(output: str, mode: str) -> None:
    """Refuse (mode `error`) or clear (mode `overwrite`) an output folder that holds files.
    Overwrite deletes only what corpusmill writes, and refuses a folder holding anything else."""
    fs, root = output_filesystem(output)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        return
    if info.type != pafs.FileType.Directory:
        raise JobError(f"output {output!r} exists and is not a folder")
    entries = fs.get_file_info(pafs.FileSelector(root))
    if not entries:
        return
    if mode == "error":
        raise JobError(f"output folder {output!r} already holds {len(entries)} file(s); choose "
                       f"an empty folder, or set output_mode: overwrite (or --set "
                       f"output_mode=overwrite) to replace them")
    foreign = [e.base_name for e in entries if not _ours(e)]
    if foreign:
        raise JobError(f"output folder {output!r} holds files corpusmill did not write "
                       f"({', '.join(sorted(foreign)[:5])}); refusing to overwrite it")
    for entry in entries:
        fs.delete_file(entry.path)


def _ours(entry: pafs.FileInfo) -> bool:
    return entry.type == pafs.FileType.File and (
        entry.base_name.endswith(".parquet") or entry.base_name == MANIFEST)


def write_empty(output: str, schema: pa.Schema) -> None:
    """A zero-row corpus still yields a valid output: one empty file with the output schema."""
    fs, root = output_filesystem(output)
    fs.create_dir(root, recursive=True)
    with fs.open_output_stream(f"{root}/empty-{uuid.uuid4().hex[:8]}.parquet") as f:
        pq.write_table(schema.empty_table(), f)


def output_counts(output: str) -> dict[str, int]:
    """Rows written and rows with an error, read back from the output files."""
    fs, root = output_filesystem(output)
    rows = errored = files = 0
    for entry in fs.get_file_info(pafs.FileSelector(root, allow_not_found=True)):
        if entry.type != pafs.FileType.File or not entry.base_name.endswith(".parquet"):
            continue
        with fs.open_input_file(entry.path) as f:
            errors = pq.read_table(f, columns=[ERROR]).column(ERROR)
        files += 1
        rows += len(errors)
        errored += pc.sum(pc.is_valid(errors).cast(pa.int64())).as_py() or 0
    return {"files": files, "rows_out": rows, "rows_errored": errored}


def output_preview(output: str, columns: list[str], rows: int = 5) -> list[dict]:
    """The first `rows` output rows, only `columns`, for the end-of-run summary."""
    fs, root = output_filesystem(output)
    preview: list[dict] = []
    for entry in sorted(fs.get_file_info(pafs.FileSelector(root, allow_not_found=True)),
                        key=lambda e: e.path):
        if len(preview) >= rows:
            break
        if entry.type == pafs.FileType.File and entry.base_name.endswith(".parquet"):
            with fs.open_input_file(entry.path) as f:
                table = pq.read_table(f, columns=columns)
            preview += table.slice(0, rows - len(preview)).to_pylist()
    return preview


def write_manifest(output: str, manifest: dict) -> None:
    fs, root = output_filesystem(output)
    fs.create_dir(root, recursive=True)
    with fs.open_output_stream(f"{root}/{MANIFEST}") as f:
        f.write(json.dumps(manifest, indent=2, sort_keys=True, default=str).encode())
