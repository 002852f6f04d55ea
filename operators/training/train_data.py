"""Training data as Arrow, never as a Python list of the corpus.

On the driver (`build_examples`): labelled rows stream from the Parquet files one row group at a
time (`operators/read.read_row_group`, the reader jobs use), in batches of `ROWS_PER_BATCH`;
rows with a null field are left out (counted); each row goes to validation or training
(`held_out`: a hash of its id, or a second input); the task encodes each batch into examples,
which are appended to Arrow IPC files in the training work folder:

    <work>/data/train.arrow            examples: token features, labels, `row`, `length`
    <work>/data/validation.arrow       the same, for validation
    <work>/data/validation_rows.arrow  the validation rows' training fields (what metrics read)

In the workers (`ExampleBatches`, `ExampleRows`): the files are memory-mapped (local) or read
once (object storage), and a batch is taken from Arrow when the data loader asks for it.
Training batches are cut by padded tokens: examples of similar length go together up to
`training.max_tokens` (`operators/batching.plan_microbatches`, as inference batches)."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from corpusmill.errors import JobError
from corpusmill.operators.batching import plan_microbatches
from corpusmill.operators.readers.files import CorpusFile, read_row_group
from corpusmill.pipelines.training.base import (
    LENGTH, ROW, TOKEN_FEATURES, TrainingDataError, TrainingTask,
)

ROWS_PER_BATCH = 1024        # rows read, encoded and written at a time
BATCH_POOL = 4096            # examples sorted by length together before batches are cut
TRAIN, VALIDATION, VALIDATION_ROWS = "train", "validation", "validation_rows"


def held_out(ids: list[str], fraction: float, seed: int) -> np.ndarray:
    """(rows,) bool: the rows a `split: fraction` holds out for validation. A row is held out
    when the hash of (seed, its id) falls below `fraction`, so a row's side depends on its id
    alone: not on row order, file layout or the rows added later."""
    out = np.empty(len(ids), dtype=bool)
    for i, row_id in enumerate(ids):
        digest = hashlib.sha256(f"{seed}\x00{row_id}".encode()).digest()
        out[i] = int.from_bytes(digest[:8], "big") / 2**64 < fraction
    return out


@dataclass
class Source:
    """One labelled input: its files, the columns read (id first, then a column per field)."""

    fs: pafs.FileSystem
    files: list[CorpusFile]
    schema: pa.Schema             # id column, then the fields' corpus columns
    id_column: str | None         # None: '<file>:<row>' ids are generated
    fields: dict[str, str]        # training field -> corpus column

    def batches(self) -> Iterator[tuple[list[str], pa.Table]]:
        """(row ids, table of the training fields named by field) per batch of rows."""
        for f in self.files:
            first_row = 0
            for group, rows in enumerate(f.row_groups):
                for table in read_row_group(self.fs, f, group, first_row, self.schema,
                                            self.id_column, ROWS_PER_BATCH):
                    ids = [str(v) for v in table.column(0).to_pylist()]
                    yield ids, pa.table({name: table.column(column)
                                         for name, column in self.fields.items()})
                first_row += rows


@dataclass
class SplitCounts:
    rows: int = 0          # rows used (with every field present)
    examples: int = 0      # model inputs made from them (windows of long rows count apart)
    tokens: int = 0        # tokens in those examples
    truncated: int = 0     # rows cut to max_length

    def add(self, rows: int, lengths: list[int], truncated: int) -> None:
        self.rows += rows
        self.examples += len(lengths)
        self.tokens += int(sum(lengths))
        self.truncated += truncated


@dataclass
class DataSummary:
    rows_read: int = 0
    rows_skipped: int = 0   # a training field was null (e.g. not labelled yet)
    splits: dict[str, SplitCounts] = field(default_factory=lambda: {
        TRAIN: SplitCounts(), VALIDATION: SplitCounts()})
    fingerprint: str = ""   # sha256 of the rows read (ids and fields), in read order

    def as_dict(self) -> dict:
        return {"rows_read": self.rows_read, "rows_skipped_null": self.rows_skipped,
                **{split: vars(counts) for split, counts in self.splits.items()},
                "fingerprint": self.fingerprint}


class _ArrowFile:
    """An Arrow IPC file written batch by batch; its schema comes from the first batch."""

    def __init__(self, fs: pafs.FileSystem, path: str, types: dict[str, pa.DataType]):
        self.fs, self.path, self.types = fs, path, types
        self.writer = None
        self.sink = None
        self.schema = None

    def write(self, columns: dict[str, list | pa.Array]) -> None:
        table = pa.table({name: values if isinstance(values, (pa.Array, pa.ChunkedArray))
                          else pa.array(values, self.types.get(name))
                          for name, values in columns.items()})
        if self.writer is None:
            self.schema = table.schema
            self.sink = self.fs.open_output_stream(self.path)
            self.writer = pa.ipc.new_file(self.sink, self.schema)
        self.writer.write_table(table.cast(self.schema))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.sink.close()


def scan_labels(task: TrainingTask, sources: list[Source]) -> set[str]:
    """Every label the sources' rows hold (label column only)."""
    found: set[str] = set()
    for source in sources:
        label_column = source.fields[task.label_field]
        for f in source.files:
            for group in range(len(f.row_groups)):
                schema = pa.schema([source.schema.field(label_column)])
                for table in read_row_group(source.fs, f, group, 0, schema, None, ROWS_PER_BATCH):
                    found |= task.label_values(table.column(0))
    return found


def build_examples(task: TrainingTask, tokenizer: Any, labels: list[str] | None,
                   options: Any, config: Any, max_length: int, train: Source,
                   validation: Source | None, split: tuple[float, int] | None,
                   fs: pafs.FileSystem, data_dir: str) -> DataSummary:
    """Encode the training (and validation) rows into Arrow example files in `data_dir`.
    `split`: (fraction, seed) to hold out part of `train`; `validation`: a second input."""
    fs.create_dir(data_dir, recursive=True)
    types = {**TOKEN_FEATURES, **task.label_feature_types(labels)}
    files = {name: _ArrowFile(fs, f"{data_dir}/{name}.arrow", types)
             for name in (TRAIN, VALIDATION, VALIDATION_ROWS)}
    summary = DataSummary()
    digest = hashlib.sha256()
    try:
        sources = [(train, split)] + ([(validation, None)] if validation is not None else [])
        for source, fraction in sources:
            for ids, table in source.batches():
                summary.rows_read += table.num_rows
                digest.update(_table_bytes(ids, table))
                complete = np.ones(table.num_rows, dtype=bool)
                for column in table.columns:
                    complete &= ~np.asarray(column.is_null().to_numpy(zero_copy_only=False))
                summary.rows_skipped += int((~complete).sum())
                if source is validation:
                    sides = {VALIDATION: complete}
                else:
                    out = (held_out(ids, *fraction) if fraction else
                           np.zeros(table.num_rows, dtype=bool))
                    sides = {TRAIN: complete & ~out, VALIDATION: complete & out}
                for name, mask in sides.items():
                    if mask.any():
                        _encode_part(task, tokenizer, labels, options, config, max_length,
                                     table.filter(pa.array(mask)),
                                     [i for i, keep in zip(ids, mask) if keep],
                                     summary.splits[name], files[name],
                                     files[VALIDATION_ROWS] if name == VALIDATION else None,
                                     source)
    finally:
        for f in files.values():
            f.close()
    summary.fingerprint = digest.hexdigest()
    return summary


def _encode_part(task, tokenizer, labels, options, config, max_length, table: pa.Table,
                 ids: list[str], counts: SplitCounts, examples_file: _ArrowFile,
                 rows_file: _ArrowFile | None, source: Source) -> None:
    rows = table.to_pydict()  # one bounded batch of rows, for the tokenizer
    try:
        examples = task.encode(tokenizer, rows, labels, options, config, max_length)
    except TrainingDataError as e:
        where = f"row {ids[e.row]!r}" if source.id_column else f"row {ids[e.row]}"
        raise JobError(f"{where}: {e}") from None
    except ValueError as e:
        raise JobError(f"{task.name} training: {e}") from None
    first_row = counts.rows
    columns = dict(examples.columns)
    columns[ROW] = [first_row + r for r in examples.rows]
    if examples.rows:
        examples_file.write(columns)
    if rows_file is not None:
        rows_file.write({name: table.column(name) for name in table.column_names})
    counts.add(table.num_rows, examples.columns[LENGTH], examples.truncated)


def _table_bytes(ids: list[str], table: pa.Table) -> bytes:
    data = table.append_column("_id", pa.array(ids, pa.string()))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, data.schema) as writer:
        writer.write_table(data)
    return sink.getvalue().to_pybytes()


# ---- the workers' side ------------------------------------------------------------------------

def open_arrow(fs: pafs.FileSystem, path: str) -> pa.Table | None:
    """An example file as a table (memory-mapped when local), or None when it was never
    written (no rows in that split)."""
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    if isinstance(fs, pafs.LocalFileSystem):
        return pa.ipc.open_file(pa.memory_map(path)).read_all()
    with fs.open_input_file(path) as f:
        return pa.ipc.open_file(f).read_all()


def token_budget_batches(lengths: np.ndarray, max_tokens: int, seed: int) -> list[np.ndarray]:
    """Example indices cut into batches of padded size (examples x longest) <= max_tokens: the
    examples are shuffled with `seed`, and each pool of BATCH_POOL is sorted by length and cut,
    so batches hold examples of similar length. Every example is in exactly one batch; the
    order of batches is shuffled each epoch by the trainer."""
    order = np.random.default_rng(seed).permutation(len(lengths))
    batches = []
    for start in range(0, len(order), BATCH_POOL):
        pool = order[start:start + BATCH_POOL]
        batches += [pool[b] for b in plan_microbatches(lengths[pool], max_tokens)]
    return batches


class ExampleRows:
    """Map-style dataset: example i as a dict of the features the model takes."""

    def __init__(self, table: pa.Table, features: list[str]):
        self.table = table.select([n for n in table.column_names if n in features])

    def __len__(self) -> int:
        return self.table.num_rows

    def __getitem__(self, i: int) -> dict:
        return self.table.slice(int(i), 1).to_pylist()[0]

    def __getitems__(self, indices: list[int]) -> list[dict]:
        return self.table.take(pa.array(indices, pa.int64())).to_pylist()


class ExampleBatches:
    """Map-style dataset whose item k is a whole training batch (a list of example dicts), cut
    by token budget; the trainer's sampler shuffles and shards the batches."""

    def __init__(self, table: pa.Table, features: list[str], max_tokens: int, seed: int):
        self.rows = ExampleRows(table, features)
        self.batches = token_budget_batches(table.column(LENGTH).to_numpy(), max_tokens, seed)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> list[dict]:
        return self.rows.__getitems__(self.batches[k].tolist())


class BatchCollator:
    """The trainer's collator: a training item is a pre-cut batch (a list of examples),
    validation items are single examples batched by the trainer."""

    def __init__(self, train_collator, eval_collator):
        self.train, self.eval = train_collator, eval_collator

    def __call__(self, items: list):
        if items and isinstance(items[0], list):
            return self.train([example for batch in items for example in batch])
        return self.eval(items)


def data_paths(work: str) -> dict[str, str]:
    data_dir = f"{work.rstrip('/')}/data"
    return {"dir": data_dir, **{name: f"{data_dir}/{name}.arrow"
                                for name in (TRAIN, VALIDATION, VALIDATION_ROWS)}}


def storage(path: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) of a local folder or an object-storage URI."""
    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), os.path.abspath(path)
