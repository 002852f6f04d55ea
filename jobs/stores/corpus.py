"""The input corpus, as the driver sees it before any Ray work: which Parquet files a job's
`input` names (a file, a folder searched recursively, a glob; local or object storage), what
each holds from its footer (row groups, schema, hive partition folders), a fingerprint of its
content, and one schema for all of them. operators/readers/read.py streams the rows inside Ray.
Files are inspected DISCOVERY_THREADS at a time (on an object store each read is a round
trip), with the modification time their listing gave; the first unreadable file in order
stops the job, named. A small Parquet file's footer read is the whole file: on an object
store `open_corpus(keep_contents=True)` keeps those bytes (`Corpus.contents`, bounded) for
the id check, which then asks the store nothing more. Nothing here holds every row id:
`iter_ids` streams them, `id_partitions` spills their hashes to local disk (jobs/stores/ids.py).

Fingerprints: the SHA-256 of a file's Parquet footer (schema, row groups, column chunk sizes
and statistics) plus its size. A file rewritten with other rows almost always changes it; a
file merely touched (new modification time, same bytes) does not. The manifest and the
incremental ledger record it for every file a run read, so a rerun notices changed input
(jobs/stores/output.py).

Beyond Parquet: Arrow IPC files (`*.arrow`, what `datasets.Dataset.save_to_disk` writes; a
save_to_disk folder is read in the order its `state.json` lists its files), JSON Lines
(`*.jsonl`, `*.ndjson`), and `hf://datasets/owner/name[@revision]/path` on the Hugging Face
hub (jobs/stores/hub.py: the revision is pinned to a commit for the whole run). Arrow and JSON Lines
files have no footer that summarises their content: their fingerprint is the SHA-256 of their
size, modification time, the store's version (ETag) where it has one, and their first and
last SAMPLE_BYTES (`sample_fingerprint`; what a change must look like to be noticed:
docs/guides/scale.md); a file no longer than those two samples, of its whole content. Their record batches / groups of lines play the part of row groups
(operators/readers/read_arrow.py, operators/readers/read_jsonl.py), indexed by one pass over the file."""
from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from corpusmill.errors import JobError, storage_error
from corpusmill.operators.readers.files import CorpusFile

_GLOB_CHARS = "*?["
# input file kinds by name: what a folder or glob picks up
FORMATS = {".parquet": "parquet", ".arrow": "arrow", ".jsonl": "jsonl", ".ndjson": "jsonl"}
SAVED_DATASET = ("state.json", "dataset_info.json")  # datasets.Dataset.save_to_disk
SAVED_DATASET_DICT = "dataset_dict.json"             # datasets.DatasetDict.save_to_disk
FOOTER_TAIL = 8  # a Parquet file ends with the footer's length (4 bytes) and "PAR1"


@dataclass(frozen=True)
class Corpus:
    fs: pafs.FileSystem
    files: list[CorpusFile]
    skipped_files: tuple[str, ...] = ()   # corrupt files left out under skip_corrupt_files
    gone: tuple[str, ...] = field(default=())  # files earlier runs read that are gone now
    source: dict = field(default_factory=dict)  # where it came from: the hub commit (jobs/stores/hub.py)
    # path -> whole content of small object-store files read whole at inspection, kept for the
    # id check (`open_corpus(keep_contents=True)`); dropped with `without_contents`
    contents: dict[str, bytes] = field(default_factory=dict, repr=False, compare=False)

    @property
    def num_rows(self) -> int:
        return sum(f.num_rows for f in self.files)

    def without_contents(self) -> "Corpus":
        """This corpus, holding no file's content (what a run keeps)."""
        return dataclasses.replace(self, contents={}) if self.contents else self

    def stamps(self) -> dict[str, dict]:
        """name -> {size, mtime_ns, fingerprint} of every file: what the manifest records."""
        return {f.name: stamp(f) for f in self.files}


def stamp(f: CorpusFile) -> dict:
    return {"size": f.size_bytes, "mtime_ns": f.mtime_ns, "fingerprint": f.fingerprint}


def same_content(before: dict, now: dict) -> bool:
    """Whether a file holds what it held when `before` was recorded: by fingerprint and size
    when both stamps have one of the same scheme (records of older versions have none, or a
    whole-file hash of an Arrow or JSON Lines file: size and time then)."""
    if before.get("fingerprint") and now.get("fingerprint") and (
            _scheme(before["fingerprint"]) == _scheme(now["fingerprint"])):
        return before["fingerprint"] == now["fingerprint"] and before.get("size") == now["size"]
    return (before.get("size"), before.get("mtime_ns")) == (now.get("size"), now.get("mtime_ns"))


SAMPLED = "sampled:"  # the prefix of sample fingerprints (Arrow, JSON Lines)


def _scheme(fingerprint: str) -> str:
    return SAMPLED if fingerprint.startswith(SAMPLED) else ""


def changed_files(files: list[CorpusFile], recorded: dict[str, dict]) -> list[str]:
    """Names of `files` that earlier runs read (in `recorded`) and that changed since."""
    return [f.name for f in files if f.name in recorded and not same_content(recorded[f.name],
                                                                             stamp(f))]


def footer_fingerprint(handle, size: int) -> str:
    """SHA-256 of the file's footer bytes (one ranged read)."""
    return _fingerprint_of(_footer_bytes(handle, size))


FOOTER_READ = 1 << 16  # bytes read from a Parquet file's end: the footer, usually whole


def _footer_bytes(handle, size: int) -> bytes:
    """The footer of the file `handle` reads (`_read_footer`)."""
    return _read_footer(handle, size)[0]


def _read_footer(handle, size: int) -> tuple[bytes, bytes | None]:
    """(footer, whole file or None). The footer (metadata, its length, "PAR1") comes in one
    ranged read when it fits in FOOTER_READ bytes (two otherwise); a file of at most
    FOOTER_READ bytes is that one read, and comes back whole beside its footer. A file too
    short to have a footer is returned whole as its footer, for the Parquet reader to
    refuse."""
    tail = handle.read_at(min(size, FOOTER_READ), size - min(size, FOOTER_READ))
    whole = tail if len(tail) == size else None
    if len(tail) < FOOTER_TAIL:
        return tail, whole
    length = int.from_bytes(tail[-FOOTER_TAIL:-4], "little")
    start = max(0, size - FOOTER_TAIL - length)
    if size - start > len(tail):
        return handle.read_at(size - start, start), whole
    return tail[len(tail) - (size - start):], whole


def _fingerprint_of(footer: bytes) -> str:
    return hashlib.sha256(footer).hexdigest()[:32]


def hive_partitions(name: str) -> tuple[tuple[str, str], ...]:
    """(key, value) of each `key=value` folder in a path relative to the input root."""
    folders = name.replace(os.sep, "/").split("/")[:-1]
    return tuple(tuple(part.split("=", 1)) for part in folders
                 if "=" in part and not part.startswith("="))


class Listed(NamedTuple):
    """A file as the listing that found it says: what inspecting it need not ask again."""
    path: str                # as the filesystem opens it
    name: str                # relative to the input root
    mtime_ns: int | None     # modification time; None: not listed (ask the store)
    size: int | None = None  # bytes; None: not listed


def find_files(input_path: str, opened: tuple[pafs.FileSystem, str, dict] | None = None
               ) -> tuple[pafs.FileSystem, list[Listed]]:
    """(filesystem, files as listed) for a Parquet file, folder (recursive) or glob (Arrow,
    JSON Lines and save_to_disk folders too). `opened`: `open_input(input_path)`'s answer,
    when the caller has it (a hub input is then not resolved twice).

    Raises JobError when nothing exists at the path, no Parquet file is found, or the store
    refuses (missing bucket, credentials, permissions), naming the path and the fix."""
    fs, root, _ = opened or open_input(input_path)
    try:
        return _find_files(fs, root, input_path)
    except OSError as e:
        e = _precise(fs, root, e) if "://" in input_path else e
        raise storage_error(input_path, e, "read") or JobError(
            f"input {input_path!r} cannot be listed: {e}") from None


def open_corpus(input_path: str, *, skip_corrupt: bool = False,
                keep_contents: bool = False) -> Corpus:
    """The corpus a job's `input` names: its files found and inspected (`find_files`,
    `inspect_files`), and where it came from (a hub input: the commit read).
    `keep_contents`: keep the small files that inspection read whole (`Corpus.contents`), so
    that reading their ids costs no second request."""
    opened = open_input(input_path)
    fs, listed = find_files(input_path, opened)
    contents: dict[str, bytes] | None = {} if keep_contents else None
    files, corrupt = inspect_files(fs, listed, skip_corrupt=skip_corrupt, contents=contents)
    return Corpus(fs, files, tuple(corrupt), source=opened[2], contents=contents or {})


def open_input(input_path: str) -> tuple[pafs.FileSystem, str, dict]:
    """(filesystem, root path in it, source record) for a local path, an object-store URI or
    a hub path (`hf://`, pinned to one commit: jobs/stores/hub.py)."""
    from corpusmill.jobs.stores.hub import is_hub_path, open_hub

    try:
        if is_hub_path(input_path):
            return open_hub(input_path)
        if "://" in input_path:
            fs, root = pafs.FileSystem.from_uri(input_path)
        else:
            fs, root = pafs.LocalFileSystem(), os.path.abspath(input_path)
    except (OSError, ValueError) as e:
        raise storage_error(input_path, e, "read") or JobError(
            f"input {input_path!r} cannot be opened: {e}") from None
    return fs, root, {}


def _precise(fs: pafs.FileSystem, root: str, error: OSError) -> OSError:
    """S3 answers a HEAD request it refuses with a bare 403, whatever the reason (bad keys, no
    grant); a listing's answer names the reason. Ask for one."""
    if "HeadObject" not in str(error):
        return error
    try:
        fs.get_file_info(pafs.FileSelector(root.split("/", 1)[0], allow_not_found=True))
    except OSError as listing:
        return listing
    return error


def _find_files(fs: pafs.FileSystem, root: str,
                input_path: str) -> tuple[pafs.FileSystem, list[Listed]]:
    if any(c in root for c in _GLOB_CHARS):
        base = _glob_base(root)
        infos = [i for i in _list(fs, base, input_path) if fnmatch.fnmatch(i.path, root)]
        kind = "glob"
    else:
        info = fs.get_file_info(root)
        if info.type == pafs.FileType.NotFound:
            _refuse_missing_bucket(fs, root, input_path)
            raise JobError(f"input {input_path!r} does not exist; give a Parquet file, a folder "
                           f"of Parquet files, or a glob such as 'data/*.parquet' (Arrow and "
                           f"JSON Lines files, and datasets' save_to_disk folders, work too)")
        if info.type == pafs.FileType.File:
            return fs, [Listed(info.path, os.path.basename(info.path), info.mtime_ns,
                               info.size)]
        saved = _saved_dataset_files(fs, root, input_path)
        if saved:
            return fs, saved
        base, infos, kind = root, _list(fs, root, input_path), "folder"
    files = sorted(Listed(i.path, _relative(i.path, base), i.mtime_ns, i.size) for i in infos
                   if i.type == pafs.FileType.File and file_format(i.path)
                   and not os.path.basename(i.path).startswith(("_", ".")))
    if not files:
        raise JobError(f"no Parquet files (*.parquet) found in {kind} {input_path!r}, nor "
                       f"Arrow (*.arrow) or JSON Lines (*.jsonl, *.ndjson) files")
    return fs, files


def _relative(path: str, base: str) -> str:
    """`path` relative to the folder `base` it was listed under (os.path.relpath's answer,
    without its cost per file for the usual case)."""
    prefix = base.rstrip("/") + "/"
    if path.startswith(prefix):
        rest = path[len(prefix):]
        if all(part not in ("", ".", "..") for part in rest.split("/")):  # nothing to normalise
            return rest if os.sep == "/" else rest.replace("/", os.sep)
    return os.path.relpath(path, base)


def file_format(path: str) -> str | None:
    """parquet, arrow or jsonl by the file's name; None for other files."""
    return FORMATS.get(os.path.splitext(path)[1].lower())


def _saved_dataset_files(fs: pafs.FileSystem, root: str, input_path: str) -> list[Listed]:
    """The Arrow files of a `datasets` save_to_disk folder, in the dataset's row order (as its
    state.json lists them); [] for any other folder. A DatasetDict folder is refused naming
    its splits: one job reads one split."""
    def read_json(name):
        try:
            with fs.open_input_stream(f"{root}/{name}") as f:
                return json.loads(f.read())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise JobError(f"input {input_path!r}: cannot read {name}: {e}") from None

    splits = read_json(SAVED_DATASET_DICT)
    if splits is not None:
        names = splits.get("splits", []) if isinstance(splits, dict) else []
        first = names[0] if names else "train"
        raise JobError(f"input {input_path!r} is a saved DatasetDict with split(s) "
                       f"{', '.join(names) or '(none)'}; give one split's folder, e.g. "
                       f"input: {input_path.rstrip('/')}/{first}")
    state = read_json(SAVED_DATASET[0])
    if state is None or read_json(SAVED_DATASET[1]) is None:
        return []
    names = [entry["filename"] for entry in state.get("_data_files", [])]
    if not names:
        raise JobError(f"input {input_path!r} is a saved dataset whose state.json lists no "
                       f"data files")
    return [Listed(f"{root}/{name}", name, None) for name in names]


def inspect_files(fs: pafs.FileSystem, files: list[Listed], *, skip_corrupt: bool = False,
                  contents: dict[str, bytes] | None = None
                  ) -> tuple[list[CorpusFile], list[str]]:
    """(readable files from their footers, names of corrupt files skipped). Files are opened
    DISCOVERY_THREADS at a time (an object store answers each request after a round trip),
    with the time their listing gave: a small Parquet file on S3 costs two requests (the HEAD
    that opening it makes, and one read of its tail, which is the whole file). The first file
    in order that is not readable stops the job, named, unless `skip_corrupt`.

    `contents`: filled with path -> whole content of the Parquet files read whole (at most
    FOOTER_READ bytes each, CONTENTS_BYTES in all, in listing order), on an object store or
    the hub only (a local file is as quickly read again)."""
    keep = _kept_whole(fs, files) if contents is not None else frozenset()
    corpus, corrupt = [], []
    workers = max(1, min(DISCOVERY_THREADS, len(files)))
    with ThreadPoolExecutor(workers, thread_name_prefix="corpusmill-inspect") as pool:
        outcomes = list(pool.map(lambda item: _inspect_or_error(fs, item, item.path in keep),
                                 files))
    for (path, name, *_), (found, whole, error) in zip(files, outcomes):
        if error is None:
            corpus.append(found)
            if whole is not None:
                contents[path] = whole
            continue
        if isinstance(error, JobError):
            raise error
        refused = storage_error(path, error, "read")
        if refused is not None:  # the store said no: not a corrupt file
            raise refused from None
        if skip_corrupt:
            corrupt.append(name)
            continue
        kind = file_format(path) or "parquet"
        raise JobError(f"cannot read {KIND_NAMES[kind]} file {name!r} ({path}): {error}. "
                       f"Remove or repair "
                       f"it, or set skip_corrupt_files: true to skip such files (they are "
                       f"listed in the run summary)") from None
    if not corpus:
        raise JobError(f"none of the {len(files)} input file(s) could be read; corrupt: "
                       f"{', '.join(corrupt[:10])}")
    return corpus, corrupt


DISCOVERY_THREADS = 32  # files inspected at a time: mostly waiting on the store
CONTENTS_BYTES = 64 << 20  # small files' contents kept from inspection for the id check


def _kept_whole(fs: pafs.FileSystem, files: list[Listed]) -> set[str]:
    """Paths of the Parquet files whose content inspection keeps (`inspect_files`)."""
    if isinstance(fs, pafs.LocalFileSystem):
        return set()
    kept, total = set(), 0
    for f in files:
        if (f.size is not None and f.size <= FOOTER_READ and total + f.size <= CONTENTS_BYTES
                and (file_format(f.path) or "parquet") == "parquet"):
            kept.add(f.path)
            total += f.size
    return kept


def _inspect_or_error(fs: pafs.FileSystem, listed: Listed, keep_whole: bool = False
                      ) -> tuple[CorpusFile | None, bytes | None, Exception | None]:
    try:
        return (*_inspect(fs, listed, keep_whole), None)
    except (OSError, pa.ArrowInvalid, EOFError, JobError) as e:
        return None, None, e


def _inspect(fs: pafs.FileSystem, listed: Listed,
             keep_whole: bool = False) -> tuple[CorpusFile, bytes | None]:
    """(one file from its footer or its layout, its whole content or None). Parquet: one
    ranged read of its tail (`_read_footer`); the content comes back when `keep_whole` and
    that read was the whole file. Arrow and JSON Lines: their layout (`_layout`). The
    modification time is the listing's (None: asked for)."""
    path, name = listed.path, listed.name
    kind = file_format(path) or "parquet"
    mtime = (fs.get_file_info(path).mtime_ns if listed.mtime_ns is None
             else listed.mtime_ns) or 0
    whole = None
    if kind == "parquet":
        with fs.open_input_file(path) as f:  # S3: a HEAD request (pyarrow's Python API
            size = f.size()                   # opens by path only), then one ranged read
            footer, whole = _read_footer(f, size)
        meta = pq.ParquetFile(pa.BufferReader(footer)).metadata
        schema = meta.schema.to_arrow_schema()
        groups = tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
        offsets, fingerprint = (), _fingerprint_of(footer)
    else:
        with fs.open_input_file(path) as f:
            size = f.size()
            schema, groups, offsets = _layout(f, kind)
            fingerprint = sample_fingerprint(f, size, mtime, store_version(f))
    partitions = hive_partitions(name)
    clash = [key for key, _ in partitions if key in schema.names]
    if clash:
        raise JobError(f"Parquet file {name!r} has column(s) {', '.join(map(repr, clash))} "
                       f"and also lies in a partition folder of the same name; rename the "
                       f"column or the folder")
    for key, _ in partitions:
        schema = schema.append(pa.field(key, pa.string()))
    return (CorpusFile(path, name, groups, schema, size, mtime, partitions, fingerprint,
                       format=kind, offsets=offsets), whole if keep_whole else None)


KIND_NAMES = {"parquet": "Parquet", "arrow": "Arrow", "jsonl": "JSON Lines"}


def _layout(handle, kind: str) -> tuple[pa.Schema, tuple[int, ...], tuple[int, ...]]:
    """(schema, rows per group, byte offset of each group) of an Arrow or JSON Lines file."""
    if kind == "arrow":
        from corpusmill.operators.readers.read_arrow import index_arrow

        layout = index_arrow(handle)
        return layout.schema, layout.batch_rows, layout.offsets
    from corpusmill.operators.readers.read_jsonl import index_jsonl

    layout = index_jsonl(handle)
    return layout.schema, layout.group_rows, layout.offsets


SAMPLE_BYTES = 1 << 16  # head and tail of an Arrow or JSON Lines file in its fingerprint
# what object stores say about an object's version, as pyarrow's S3 and GCS files report it
VERSION_KEYS = ("ETag", "VersionId", "x-goog-generation", "Generation", "etag")


def store_version(handle) -> str:
    """The store's own version of the object (S3 ETag or VersionId, a GCS generation) where
    the filesystem reports one; '' for local files."""
    try:
        metadata = handle.metadata()
    except (AttributeError, NotImplementedError, OSError):
        return ""
    found = {_text(k): _text(v) for k, v in (metadata or {}).items()}
    return "/".join(found[key] for key in VERSION_KEYS if key in found)


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def sample_fingerprint(handle, size: int, mtime_ns: int, version: str = "") -> str:
    """For formats without a footer that summarises the content (Arrow, JSON Lines): SHA-256
    of the size, the modification time, the store's version (ETag) where it has one, and the
    first and last SAMPLE_BYTES of the file. Two ranged reads, whatever the file's size. A
    change is noticed when it changes any of these; an edit in the middle that keeps the size
    and comes back with the same modification time (a restored mtime) on a store without
    versions is not (docs/guides/scale.md). A file no longer than the two samples is read
    whole, and its fingerprint is its content alone: copied or touched, it is the same file."""
    if size <= 2 * SAMPLE_BYTES:
        digest = hashlib.sha256(f"{size}:".encode())
        digest.update(handle.read_at(size, 0))
        return SAMPLED + digest.hexdigest()[:32]
    digest = hashlib.sha256(f"{size}:{mtime_ns}:{version}:".encode())
    digest.update(handle.read_at(SAMPLE_BYTES, 0))
    digest.update(handle.read_at(SAMPLE_BYTES, size - SAMPLE_BYTES))
    return SAMPLED + digest.hexdigest()[:32]


def iter_ids(fs: pafs.FileSystem, f: CorpusFile, id_column: str | None,
             id_type: pa.DataType = pa.string(), content: bytes | None = None):
    """The row ids of one file in order, as arrays of at most READ_BATCH_ROWS (about) ids of
    `id_type`: the id column's values, or (id_column None) the generated '<file>:<row>'.
    `content`: the file's whole content where the caller has it (`Corpus.contents`)."""
    import pyarrow.compute as pc

    from corpusmill.jobs.stores.ids import READ_BATCH_ROWS

    if id_column is None:
        for start in range(0, f.num_rows, READ_BATCH_ROWS):
            rows = pa.array(range(start, min(f.num_rows, start + READ_BATCH_ROWS)))
            yield pc.binary_join_element_wise(f"{f.name}:", rows.cast(pa.string()), "")
        return
    for column in iter_column(fs, f, id_column, READ_BATCH_ROWS, content):
        yield column.cast(id_type)


WHOLE_READ_BYTES = 1 << 20  # Parquet files this small are read in one request for a column


def iter_column(fs: pafs.FileSystem, f: CorpusFile, column: str, batch_rows: int,
                content: bytes | None = None):
    """One stored column of a whole file as arrays, never the whole column at once: Parquet
    in batches of `batch_rows` (a file of no more rows at once), Arrow and JSON Lines by
    their groups. `content`: the file's whole content, when the caller has it (nothing is
    read from the store then); a Parquet file of at most WHOLE_READ_BYTES is otherwise read
    whole in one ranged read."""
    from corpusmill.operators.readers.files import read_group

    if f.format == "parquet":
        with _parquet_source(fs, f, content) as source:
            parquet = pq.ParquetFile(source)
            if f.num_rows <= batch_rows:  # one read, cheaper than a batch iterator
                yield from parquet.read(columns=[column], use_threads=False).column(0).chunks
                return
            for batch in parquet.iter_batches(batch_size=batch_rows, columns=[column]):
                yield batch.column(0)
        return
    for group in range(len(f.row_groups)):
        yield from read_group(fs, f, group, [column]).column(0).chunks


def _parquet_source(fs: pafs.FileSystem, f: CorpusFile, content: bytes | None):
    """What a Parquet reader reads `f` from: its content in memory (given, or read whole in one
    request when it is small), or a handle on the store for a larger file."""
    if content is not None:
        return pa.BufferReader(content)
    handle = fs.open_input_file(f.path)
    if f.size_bytes > WHOLE_READ_BYTES:
        return handle
    with handle:
        return pa.BufferReader(handle.read_at(f.size_bytes, 0))


def id_partitions(fs: pafs.FileSystem, files: list[CorpusFile], id_column: str | None,
                  id_type: pa.DataType, expected_rows: int = 0, threads: int = 4):
    """Every row id of `files`, hashed and spilled by hash (jobs/stores/ids.py: IdPartitions), files
    read `threads` at a time; partitioned for the larger of their rows and `expected_rows`
    (the rows of what they will be compared with: the output)."""
    from corpusmill.jobs.stores.ids import IdPartitions, SpillBuffer, file_groups, partitions_for

    ids = IdPartitions(partitions_for(max(expected_rows, sum(f.num_rows for f in files))))

    def spill(group: range) -> None:
        with SpillBuffer(ids) as buffer:
            for source in group:
                for values in iter_ids(fs, files[source], id_column, id_type):
                    buffer.add(values, source)

    with ThreadPoolExecutor(max(1, min(threads, len(files)))) as pool:
        list(pool.map(spill, file_groups(len(files), threads)))
    return ids


def is_text(arrow_type: pa.DataType) -> bool:
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    return (pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
            or pa.types.is_string_view(arrow_type))


def is_bytes(arrow_type: pa.DataType) -> bool:
    """Binary columns are accepted as text input: each value is decoded as UTF-8 per row."""
    return (pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type)
            or pa.types.is_binary_view(arrow_type))



def _refuse_missing_bucket(fs: pafs.FileSystem, root: str, input_path: str) -> None:
    """On object storage a missing key may be a missing bucket: say which."""
    if "://" not in input_path:
        return
    bucket = root.split("/", 1)[0]
    if bucket and fs.get_file_info(bucket).type == pafs.FileType.NotFound:
        raise JobError(f"cannot read {input_path!r}: the bucket {bucket!r} does not exist: "
                       f"create it, or correct the path")


def _glob_base(pattern: str) -> str:
    parts = pattern.split("/")
    for i, part in enumerate(parts):
        if any(c in part for c in _GLOB_CHARS):
            return "/".join(parts[:i]) or "/"
    return pattern


def _list(fs: pafs.FileSystem, base: str, input_path: str) -> list[pafs.FileInfo]:
    try:
        return fs.get_file_info(pafs.FileSelector(base, recursive=True))
    except FileNotFoundError:
        raise JobError(f"input {input_path!r} does not exist") from None
